"""A tiny SDXL text encoder pair as a host CLIP object: CLIP-L + CLIP-G text models built
from JSON configs, behind the host's real SDXL tokenizer (the story world's frozen encoder,
and the tiny test models')."""
from __future__ import annotations

import inspect
from pathlib import Path

import torch


def _accepts(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def sdxl_clip_from(configs: Path):
    """A host CLIP object: CLIP-L + CLIP-G text models built from ``configs``/clip_l.json and
    clip_g.json (weights as initialised) behind the real SDXL tokenizer."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.sdxl_clip

    class TinySDXLClipModel(comfy.sdxl_clip.SDXLClipModel):
        def __init__(self, device="cpu", dtype=None, model_options=None, **_):
            torch.nn.Module.__init__(self)
            extra = {}
            if model_options is not None and _accepts(comfy.sd1_clip.SDClipModel.__init__, "model_options"):
                extra["model_options"] = model_options
            common = dict(layer="hidden", layer_idx=-2, device=device, dtype=dtype, layer_norm_hidden_state=False,
                          **extra)
            self.clip_l = comfy.sd1_clip.SDClipModel(textmodel_json_config=str(configs / "clip_l.json"), **common)
            self.clip_g = comfy.sd1_clip.SDClipModel(textmodel_json_config=str(configs / "clip_g.json"),
                                                     special_tokens={"start": 49406, "end": 49407, "pad": 0},
                                                     **common)
            self.dtypes = {dtype}  # the new host reads it

    class Target:
        params: dict = {}
        clip = TinySDXLClipModel
        tokenizer = comfy.sdxl_clip.SDXLTokenizer

    with torch.no_grad():
        return comfy.sd.CLIP(target=Target())
