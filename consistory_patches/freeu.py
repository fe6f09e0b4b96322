"""FreeU by up block (consistory_core.freeu), as an output block patch on a model clone."""
from __future__ import annotations

from ..consistory_core.freeu import fourier_filter, scale_backbone, up_block_of


class UnsupportedFreeU(ValueError):
    pass


class BlockFreeU:
    """output_block_patch: (h, hsp, transformer_options) -> (h, hsp); factors (b, s) of up
    blocks 0 and 1, none elsewhere."""

    def __init__(self, num_res_blocks: list, b1: float, b2: float, s1: float, s2: float):
        self.num_res_blocks = list(num_res_blocks)
        self.factors = {0: (b1, s1), 1: (b2, s2)}

    def __call__(self, h, hsp, transformer_options):
        factors = self.factors.get(up_block_of(transformer_options["block"][1], self.num_res_blocks))
        if factors is None:
            return h, hsp
        b, s = factors
        try:
            skip = fourier_filter(hsp, threshold=1, scale=s)
        except RuntimeError:  # a device without FFT: on the CPU, as the host's FreeU does
            skip = fourier_filter(hsp.cpu(), threshold=1, scale=s).to(hsp.device)
        return scale_backbone(h, b), skip


def patch_freeu(model, b1: float, b2: float, s1: float, s2: float):
    """A clone of the UNet model ``model`` with FreeU by up block."""
    unet = model.model.diffusion_model
    blocks = getattr(unet, "num_res_blocks", None)  # a UNet's, per level (the host's UNetModel)
    if not isinstance(blocks, (list, tuple)) or not hasattr(unet, "output_blocks"):
        raise UnsupportedFreeU(f"FreeU acts on a UNet's up blocks (SDXL, SD 1.x / 2.x); this model "
                               f"({type(model.model).__name__}) has none")
    m = model.clone()
    m.set_model_output_block_patch(BlockFreeU(blocks, b1, b2, s1, s2))
    return m
