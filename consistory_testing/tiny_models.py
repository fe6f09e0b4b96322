"""A tiny SDXL-shaped checkpoint built from the host's own classes, with random weights.

The UNet is the host's SDXL model with tiny channels and the same block layout (so the
attention positions input 4/5/7/8, middle 0, output 0-5 exist); the text encoder is a
tiny CLIP-L + CLIP-G pair that uses the host's real SDXL tokenizers, so subject token
positions are real; the VAE is the host's TAESD with random weights. Nothing is
downloaded. Used by the tests and by the headless runner when no checkpoint is given.
"""
from __future__ import annotations

from pathlib import Path

import torch

from story_world.text_encoder import _accepts, sdxl_clip_from

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


# SD 1.5 and SD 2.x: the host's block layout (attention at latent/1, /2, /4 in the down and
# up blocks, none at latent/8) with tiny channels.
TINY_SD1 = dict(
    use_checkpoint=False, image_size=32, in_channels=4, out_channels=4, use_spatial_transformer=True,
    legacy=False, adm_in_channels=None, model_channels=32, num_res_blocks=[2, 2, 2, 2],
    channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
    transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], use_linear_in_transformer=False,
    context_dim=TEXT_WIDTH, use_temporal_attention=False, use_temporal_resblock=False,
)
TINY_SD2 = dict(TINY_SD1, model_channels=64, use_linear_in_transformer=True, num_head_channels=64)


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


def tiny_sd1_unet(seed: int = 0, version: str = "1.5"):
    """A ModelPatcher around the host's SD 1.5 (or SD 2.x, v-prediction) model with tiny channels."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    cpu = torch.device("cpu")
    if version == "1.5":
        model_config = comfy.supported_models.SD15(dict(TINY_SD1))
        model_type = comfy.model_base.ModelType.EPS
    else:
        model_config = comfy.supported_models.SD20(dict(TINY_SD2))
        model_type = comfy.model_base.ModelType.V_PREDICTION
    model = comfy.model_base.BaseModel(model_config, model_type=model_type, device=cpu)
    fill_weights(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def tiny_sd1_clip(seed: int = 0, version: str = "1.5"):
    """A host CLIP object for SD 1.5 (CLIP-L, the real SD1 tokenizer) or SD 2.x (OpenCLIP-H's
    place, the real SD2 tokenizer), with a tiny text model."""
    import comfy.sd
    import comfy.sd1_clip
    try:
        from comfy import sd2_clip
    except ImportError:  # today's host keeps it with the other text encoders
        from comfy.text_encoders import sd2_clip
    name, tokenizer = ("l", comfy.sd1_clip.SD1Tokenizer) if version == "1.5" else ("h", sd2_clip.SD2Tokenizer)
    special = {} if version == "1.5" else {"special_tokens": {"start": 49406, "end": 49407, "pad": 0}}

    class TinyClipModel(comfy.sd1_clip.SD1ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options=None, **_):
            torch.nn.Module.__init__(self)
            extra = {}
            if model_options is not None and _accepts(comfy.sd1_clip.SDClipModel.__init__, "model_options"):
                extra["model_options"] = model_options
            self.clip_name, self.clip = name, "clip_" + name
            setattr(self, self.clip, comfy.sd1_clip.SDClipModel(
                device=device, dtype=dtype, textmodel_json_config=str(CONFIGS / "clip_l.json"), **special, **extra))
            self.dtypes = {dtype}

    class Target:
        params: dict = {}
        clip = TinyClipModel

    Target.tokenizer = tokenizer
    with torch.no_grad():
        clip = comfy.sd.CLIP(target=Target())
    fill_weights(clip.cond_stage_model, seed + 1)
    return clip


def tiny_stable_cascade():
    """A ModelPatcher around the host's Stable Cascade Stage C with tiny widths, only built
    (never sampled): a model the pack does not patch."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    config = comfy.supported_models.Stable_Cascade_C(dict(
        stable_cascade_stage="c", c_hidden=[32, 32], nhead=[2, 2], blocks=[[1, 1], [1, 1]], c_cond=32,
        c_r=16, c_clip_text=32, c_clip_text_pooled=32, c_clip_img=32))
    model = comfy.model_base.StableCascade_C(config, device=torch.device("cpu"))
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


# Flux.1: the host's Flux class with its block layout (double-stream blocks, then single-stream
# ones over the joint [text ; image] sequence, RoPE on 3 axes) at tiny widths.
TINY_FLUX = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=TEXT_WIDTH, context_in_dim=32,
                 hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12],
                 theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)


def tiny_flux(seed: int = 0, schnell: bool = False, config: dict | None = None):
    """A ModelPatcher around the host's Flux.1 model (dev: guidance-distilled; ``schnell``:
    no guidance input) with tiny widths, or with ``config``'s (the benchmark's full width)."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    cpu = torch.device("cpu")
    unet = dict(config or TINY_FLUX, guidance_embed=not schnell)
    model_config = (comfy.supported_models.FluxSchnell if schnell else comfy.supported_models.Flux)(unet)
    model = model_config.get_model({}, device=cpu)
    fill_weights(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def tiny_flux_clip(seed: int = 0):
    """A host CLIP object for Flux: tiny CLIP-L (pooled) + tiny T5 (the context) behind the
    host's real Flux tokenizers, so the subject words' T5 token positions are real."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.text_encoders.flux as flux
    import comfy.text_encoders.t5

    class TinyFluxClipModel(flux.FluxClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}, **_):
            torch.nn.Module.__init__(self)
            self.clip_l = comfy.sd1_clip.SDClipModel(device=device, dtype=dtype, return_projected_pooled=False,
                                                     textmodel_json_config=str(CONFIGS / "clip_l.json"),
                                                     model_options=model_options)
            self.t5xxl = comfy.sd1_clip.SDClipModel(
                device=device, layer="last", layer_idx=None, textmodel_json_config=str(CONFIGS / "t5_tiny.json"),
                dtype=dtype, special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                enable_attention_masks=False, return_attention_masks=False,
                model_options={**model_options, "model_name": "t5xxl"})
            self.dtypes = {dtype}

    class Target:
        params: dict = {}
        clip = TinyFluxClipModel
        tokenizer = flux.FluxTokenizer

    with torch.no_grad():
        clip = comfy.sd.CLIP(target=Target())
    fill_weights(clip.cond_stage_model, seed + 1)
    return clip


def tiny_flux_vae(seed: int = 0):
    """The host's TAESD with Flux's 16 latent channels, random weights."""
    import comfy.sd
    import comfy.taesd.taesd
    taesd = comfy.taesd.taesd.TAESD(latent_channels=16)
    fill_weights(taesd, seed + 2)
    return comfy.sd.VAE(sd=taesd.state_dict())


def tiny_sdxl_clip(seed: int = 0):
    """A host CLIP object: tiny CLIP-L + CLIP-G text models behind the real SDXL tokenizer."""
    clip = sdxl_clip_from(CONFIGS)
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


class TinySD1CheckpointLoader:
    """Test/offline node: a tiny random-weight SD 1.5 or SD 2.x (v-prediction) MODEL, CLIP and VAE."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"weight_seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1}),
                             "version": (["1.5", "2.x"],)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "ConsiStory/testing"

    def load(self, weight_seed, version):
        return tiny_sd1_unet(weight_seed, version), tiny_sd1_clip(weight_seed, version), tiny_vae(weight_seed)


class TinyFluxCheckpointLoader:
    """Test/offline node: a tiny random-weight Flux.1 (dev or schnell) MODEL, CLIP and VAE (today's host)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"weight_seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1}),
                             "version": (["dev", "schnell"],)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "ConsiStory/testing"

    def load(self, weight_seed, version):
        return tiny_flux(weight_seed, version == "schnell"), tiny_flux_clip(weight_seed), tiny_flux_vae(weight_seed)


class TinyFluxCLIPLoader:
    """Test/offline node: the tiny Flux's CLIP alone (stands for DualCLIPLoader type flux)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"weight_seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "ConsiStory/testing"

    def load(self, weight_seed):
        return (tiny_flux_clip(weight_seed),)


class TinyFluxVAELoader(TinyFluxCLIPLoader):
    """Test/offline node: the tiny Flux's VAE alone (stands for VAELoader)."""
    RETURN_TYPES = ("VAE",)

    def load(self, weight_seed):
        return (tiny_flux_vae(weight_seed),)


NODE_CLASS_MAPPINGS = {"ConsiStoryTinySDXLCheckpoint": TinySDXLCheckpointLoader,
                       "ConsiStoryTinyFluxCheckpoint": TinyFluxCheckpointLoader,
                       "ConsiStoryTinyFluxCLIP": TinyFluxCLIPLoader, "ConsiStoryTinyFluxVAE": TinyFluxVAELoader,
                       "ConsiStoryTinySD1Checkpoint": TinySD1CheckpointLoader,
                       "ConsiStoryTinyControlNet": TinyControlNetLoader}
