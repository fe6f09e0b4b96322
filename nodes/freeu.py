"""ConsiStory FreeU: FreeU as the reference implementation applies it, by up block
(consistory_core.freeu; runtime: consistory_patches.freeu)."""
from __future__ import annotations

from ..consistory_patches.freeu import UnsupportedFreeU, patch_freeu
from .sockets import REFINE, io, schema


def _factor(name, default, maximum, tooltip):
    return io.Float.Input(name, default=default, min=0.0, max=maximum, step=0.01, tooltip=tooltip)


class BlockFreeU(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryFreeU", display_name="ConsiStory FreeU (by up block)", category=REFINE,
            description=("FreeU in the first two up blocks, chosen by block as the reference ConsiStory (diffusers) "
                         "does; ComfyUI's FreeU node chooses by channel count and also scales the first block of "
                         "the second and third up blocks. Put it before ConsiStory SDSA for the paper's look."),
            search_aliases=["FreeU"],
            inputs=[
                io.Model.Input("model", tooltip="An SDXL or SD 1.x / 2.x model; it is cloned, not changed."),
                _factor("b1", 1.1, 10.0, "Backbone scale of the first up block (the paper's 1.1)."),
                _factor("b2", 1.2, 10.0, "Backbone scale of the second up block (the paper's 1.2)."),
                _factor("s1", 0.6, 10.0, "Skip connection low-frequency scale of the first up block (the paper's 0.6)."),
                _factor("s2", 0.4, 10.0, "Skip connection low-frequency scale of the second up block (the paper's 0.4)."),
            ],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model, b1, b2, s1, s2):
        try:
            return io.NodeOutput(patch_freeu(model, b1, b2, s1, s2))
        except UnsupportedFreeU as e:
            raise ValueError(f"ConsiStory FreeU: {e}") from None
