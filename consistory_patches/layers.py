"""Where the attention layers of a host UNet are, in the host's own naming.

A position is (block name, block id, block index) as the host's ``extra_options`` and
``set_model_attn1_replace(fn, name, id, index)`` use them.
"""
from __future__ import annotations


def _transformer(block):
    for module in block:
        if hasattr(module, "transformer_blocks"):
            return module
    return None


def _blocks(diffusion_model):
    for i, block in enumerate(diffusion_model.input_blocks):
        yield "input", i, block
    yield "middle", 0, diffusion_model.middle_block
    for i, block in enumerate(diffusion_model.output_blocks):
        yield "output", i, block


def attention_positions(diffusion_model, groups=("input", "middle", "output")):
    """[(name, id, index)] of every transformer block in the given block groups."""
    found = []
    for name, i, block in _blocks(diffusion_model):
        transformer = _transformer(block) if name in groups else None
        if transformer is not None:
            found += [(name, i, j) for j in range(len(transformer.transformer_blocks))]
    return found


def transformer_block(diffusion_model, name: str, block_id: int, index: int):
    """The BasicTransformerBlock at a position (its .attn1 / .attn2 are the attention modules)."""
    block = dict(((n, i), b) for n, i, b in _blocks(diffusion_model))[(name, block_id)]
    return _transformer(block).transformer_blocks[index]


def is_unet(diffusion_model) -> bool:
    """A UNet with the host's block layout (SDXL, SD 1.5, SD 2.x), whose layers the pack patches."""
    return all(hasattr(diffusion_model, name) for name in ("input_blocks", "middle_block", "output_blocks"))


def dift_block(diffusion_model) -> int:
    """Id of the output block whose input is the up path's first feature map at latent/2:
    the block after the upsampler that reaches latent/2, where DIFT features are read and
    injection's latent/2 grid lives (3 in SDXL, after its first upsampler; 6 in SD 1.5 and
    2.x, after their second)."""
    downsamplers = sum(type(m).__name__ == "Downsample" for block in diffusion_model.input_blocks for m in block)
    wanted, seen = downsamplers - 1, 0  # latent/2^d -> latent/2 takes d - 1 upsamplers
    for i, block in enumerate(diffusion_model.output_blocks):
        seen += any(type(m).__name__ == "Upsample" for m in block)
        if seen == wanted and wanted > 0:
            return i + 1
    raise ValueError("the UNet has no up block at latent/2")
