"""ConsiStory Subject Masks: how subject masks are found from cross-attention (paper §4.1)."""
from __future__ import annotations

from ..consistory_core.settings import MaskSettings
from .sockets import MASK_SETTINGS_TYPE, STORY


class SubjectMaskSettings:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "window": ("INT", {"default": 20, "min": 1, "max": 1000, "tooltip":
                       "Average the subject's cross-attention over this many recent steps."}),
            "resolution": (list(MaskSettings.RESOLUTIONS), {"default": "low (latent/4)", "tooltip":
                           "Which cross-attention layers give the maps: the paper uses the "
                           "low-resolution ones (latent/4, 32x32 at 1024px). Flux has one resolution (its "
                           "image tokens, latent/2): its maps come from the double-stream blocks whatever this says."}),
            "threshold_scale": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 3.0, "step": 0.05,
                                "tooltip": "Multiplies the Otsu threshold: above 1 gives tighter "
                                "masks, below 1 looser ones."}),
        }}

    RETURN_TYPES = (MASK_SETTINGS_TYPE,)
    RETURN_NAMES = ("mask_settings",)
    FUNCTION = "settings"
    CATEGORY = STORY
    DESCRIPTION = "Settings of the automatic subject masks, for the ConsiStory SDSA node."

    def settings(self, window, resolution, threshold_scale):
        return (MaskSettings(window=window, resolution=resolution, threshold_scale=threshold_scale),)
