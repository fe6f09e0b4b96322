"""ConsiStory FreeU: FreeU as the reference implementation applies it, by up block
(consistory_core.freeu; runtime: consistory_patches.freeu)."""
from __future__ import annotations

from ..consistory_patches.freeu import UnsupportedFreeU, patch_freeu
from .sockets import REFINE


def _factor(default, maximum, tooltip):
    return ("FLOAT", {"default": default, "min": 0.0, "max": maximum, "step": 0.01, "tooltip": tooltip})


class BlockFreeU:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SDXL or SD 1.x / 2.x model; it is cloned, not changed."}),
            "b1": _factor(1.1, 10.0, "Backbone scale of the first up block (the paper's 1.1)."),
            "b2": _factor(1.2, 10.0, "Backbone scale of the second up block (the paper's 1.2)."),
            "s1": _factor(0.6, 10.0, "Skip connection low-frequency scale of the first up block (the paper's 0.6)."),
            "s2": _factor(0.4, 10.0, "Skip connection low-frequency scale of the second up block (the paper's 0.4)."),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = REFINE
    DESCRIPTION = ("FreeU in the first two up blocks, chosen by block as the reference ConsiStory (diffusers) "
                   "does; ComfyUI's FreeU node chooses by channel count and also scales the first block of "
                   "the second and third up blocks. Put it before ConsiStory SDSA for the paper's look.")

    def patch(self, model, b1, b2, s1, s2):
        try:
            return (patch_freeu(model, b1, b2, s1, s2),)
        except UnsupportedFreeU as e:
            raise ValueError(f"ConsiStory FreeU: {e}") from None
