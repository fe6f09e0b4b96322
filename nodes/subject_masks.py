"""ConsiStory Subject Masks: how subject masks are found from cross-attention (paper §4.1)."""
from __future__ import annotations

from ..consistory_core.settings import MaskSettings
from .sockets import STORY, MaskSettingsSocket, io, schema


class SubjectMaskSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStorySubjectMasks", display_name="ConsiStory Subject Masks", category=STORY,
            description="Settings of the automatic subject masks, for the ConsiStory SDSA node.",
            search_aliases=["subject mask settings", "otsu threshold"],
            inputs=[
                io.Int.Input("window", default=20, min=1, max=1000, tooltip=
                             "Average the subject's cross-attention over this many recent steps."),
                io.Combo.Input("resolution", options=list(MaskSettings.RESOLUTIONS), default="low (latent/4)",
                               tooltip="Which cross-attention layers give the maps: the paper uses the "
                               "low-resolution ones (latent/4, 32x32 at 1024px). Flux has one resolution (its "
                               "image tokens, latent/2): its maps come from the double-stream blocks whatever this "
                               "says."),
                io.Float.Input("threshold_scale", default=1.0, min=0.1, max=3.0, step=0.05,
                               tooltip="Multiplies the Otsu threshold: above 1 gives tighter "
                               "masks, below 1 looser ones."),
            ],
            outputs=[MaskSettingsSocket.Output("mask_settings", display_name="mask_settings")])

    @classmethod
    def execute(cls, window, resolution, threshold_scale):
        if resolution not in MaskSettings.RESOLUTIONS:  # ComfyUI 0.3.75 does not check a V3 combo's value
            raise ValueError(f"ConsiStory Subject Masks: resolution {resolution!r} is not one of "
                             f"{list(MaskSettings.RESOLUTIONS)}")
        return io.NodeOutput(MaskSettings(window=window, resolution=resolution, threshold_scale=threshold_scale))
