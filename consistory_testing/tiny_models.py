"""A tiny SDXL-shaped checkpoint built from the host's own classes, with random weights.

The UNet is the host's SDXL model with tiny channels and the same block layout (so the
attention positions input 4/5/7/8, middle 0, output 0-5 exist); the text encoder is a
tiny CLIP-L + CLIP-G pair that uses the host's real SDXL tokenizers, so subject token
positions are real; the VAE is the host's TAESD with random weights. Nothing is
downloaded. Used by the tests and by the headless runner when no checkpoint is given.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parent / "tiny_configs"
TEXT_WIDTH = 32  # hidden size of each tiny CLIP; context = both concatenated
POOLED_WIDTH = 32

TINY_UNET = dict(
    use_checkpoint=False, image_size=32, in_channels=4, out_channels=4,
    use_spatial_transformer=True, legacy=False, num_classes="sequential",
    adm_in_channels=POOLED_WIDTH + 6 * 256, model_channels=32, num_res_blocks=[2, 2, 2],
    channel_mult=[1, 2, 4], transformer_depth=[0, 0, 1, 1, 2, 2], transformer_depth_middle=2,
    transformer_depth_output=[0, 0, 0, 1, 1, 1, 2, 2, 2], use_linear_in_transformer=True,
    context_dim=2 * TEXT_WIDTH, use_temporal_attention=False, use_temporal_resblock=False,
)


def fill_weights(module: torch.nn.Module, seed: int) -> None:
    """Deterministic random weights: norms at identity, others ~ N(0, 1/fan_in)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            if isinstance(owner, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            p.requires_grad_(False)


def tiny_sdxl_unet(seed: int = 0, config: dict | None = None):
    """A ModelPatcher around a host SDXL model with the given UNet config (tiny by default)."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    cpu = torch.device("cpu")
    model_config = comfy.supported_models.SDXL(dict(config or TINY_UNET))  # the host mutates it
    model = comfy.model_base.SDXL(model_config, device=cpu)
    fill_weights(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def _accepts(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def tiny_sdxl_clip(seed: int = 0):
    """A host CLIP object: tiny CLIP-L + CLIP-G text models behind the real SDXL tokenizer."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.sdxl_clip

    class TinySDXLClipModel(comfy.sdxl_clip.SDXLClipModel):
        def __init__(self, device="cpu", dtype=None, model_options=None, **_):
            torch.nn.Module.__init__(self)
            extra = {}
            if model_options is not None and _accepts(comfy.sd1_clip.SDClipModel.__init__, "model_options"):
                extra["model_options"] = model_options
            self.clip_l = comfy.sd1_clip.SDClipModel(
                layer="hidden", layer_idx=-2, device=device, dtype=dtype, layer_norm_hidden_state=False,
                textmodel_json_config=str(CONFIGS / "clip_l.json"), **extra)
            self.clip_g = comfy.sd1_clip.SDClipModel(
                layer="hidden", layer_idx=-2, device=device, dtype=dtype, layer_norm_hidden_state=False,
                textmodel_json_config=str(CONFIGS / "clip_g.json"),
                special_tokens={"start": 49406, "end": 49407, "pad": 0}, **extra)
            self.dtypes = {dtype}  # the new host reads it

    class Target:
        params: dict = {}
        clip = TinySDXLClipModel
        tokenizer = comfy.sdxl_clip.SDXLTokenizer

    with torch.no_grad():
        clip = comfy.sd.CLIP(target=Target())
    fill_weights(clip.cond_stage_model, seed + 1)
    return clip


def tiny_vae(seed: int = 0):
    """The host's TAESD VAE with random weights."""
    import comfy.sd
    import comfy.taesd.taesd
    taesd = comfy.taesd.taesd.TAESD()
    fill_weights(taesd, seed + 2)
    return comfy.sd.VAE(sd=taesd.state_dict())


def tiny_controlnet(seed: int = 0):
    """A host ControlNet (the host's cldm.ControlNet class) shaped like the tiny UNet."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.ops
    config = {k: v for k, v in TINY_UNET.items()
              if k not in ("out_channels", "use_temporal_attention", "use_temporal_resblock")}
    config.update(hint_channels=3, num_head_channels=64, device=torch.device("cpu"), dtype=torch.float32,
                  operations=comfy.ops.disable_weight_init)
    model = comfy.cldm.cldm.ControlNet(**config)
    fill_weights(model, seed + 3)
    return comfy.controlnet.ControlNet(model, load_device=torch.device("cpu"), manual_cast_dtype=None)


class TinyControlNetLoader:
    """Test/offline node: a tiny random-weight ControlNet for the tiny SDXL-shaped model."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"weight_seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})}}

    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load"
    CATEGORY = "ConsiStory/testing"

    def load(self, weight_seed):
        return (tiny_controlnet(weight_seed),)


class TinySDXLCheckpointLoader:
    """Test/offline node: a tiny random-weight SDXL-shaped MODEL, CLIP and VAE."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"weight_seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                                                      "tooltip": "Seed of the random weights."})}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "ConsiStory/testing"

    def load(self, weight_seed):
        return tiny_sdxl_unet(weight_seed), tiny_sdxl_clip(weight_seed), tiny_vae(weight_seed)


NODE_CLASS_MAPPINGS = {"ConsiStoryTinySDXLCheckpoint": TinySDXLCheckpointLoader,
                       "ConsiStoryTinyControlNet": TinyControlNetLoader}
