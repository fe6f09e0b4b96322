"""The story world's SDXL-shaped model, built from the host's own classes.

- UNet: ``comfy.model_base.SDXL`` with ``comfy.supported_models.SDXL(UNET_CONFIG)``: SDXL's
  block layout (3 levels, attention at the two lower-resolution ones, transformer depth
  [0, 0, 1, 1, 2, 2], middle 2), small channels (32, 64, 64; the host fixes dim_head at 64,
  so 1 head). Latents 4 x 32 x 32 (``latent_map``); attention grids 16x16 and 8x8. EPS
  prediction on the host's discrete SDXL schedule, so the stock samplers sample it.
- Text encoder: a tiny CLIP-L + CLIP-G pair (hidden 32 each, 3 layers; configs in
  ``configs/``) behind the host's real SDXL tokenizers, with FROZEN random weights drawn
  from ``TEXT_SEED`` per parameter name. It is not stored: the loader rebuilds it and checks
  it against a fingerprint (its output for ``PROBE_PROMPT``) saved with the UNet.

Needs the host on sys.path (``consistory_run.host.Host.start()``).
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parent / "configs"
WEIGHTS = Path(__file__).resolve().parent / "weights" / "story_world.safetensors"
TEXT_SEED = 20240501
TEXT_WIDTH = 32  # each tiny CLIP; the context is both concatenated
PIXELS = 256  # the "pixel" size the host reports for 32 x 32 latents (latent side x 8)
PROBE_PROMPT = "a photo of a small creature on the left in a snowy field"
FORMAT = "consistory-story-world/1"

UNET_CONFIG = dict(
    use_checkpoint=False, image_size=32, in_channels=4, out_channels=4,
    use_spatial_transformer=True, legacy=False, num_classes="sequential",
    adm_in_channels=TEXT_WIDTH + 6 * 256, model_channels=32, num_res_blocks=[2, 2, 2],
    channel_mult=[1, 2, 2], transformer_depth=[0, 0, 1, 1, 2, 2], transformer_depth_middle=2,
    transformer_depth_output=[0, 0, 0, 1, 1, 1, 2, 2, 2], use_linear_in_transformer=True,
    context_dim=2 * TEXT_WIDTH, use_temporal_attention=False, use_temporal_resblock=False,
)


def build_sdxl():
    """A host ``model_base.SDXL`` with UNET_CONFIG; weights uninitialised (fill or load them)."""
    import comfy.model_base
    import comfy.supported_models
    config = comfy.supported_models.SDXL(dict(UNET_CONFIG))  # the host mutates the dict
    return comfy.model_base.SDXL(config, device=torch.device("cpu"))


def patcher(model):
    """The host's ModelPatcher around a model (what MODEL outputs carry)."""
    import comfy.model_management
    import comfy.model_patcher
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device,
                                            offload_device=comfy.model_management.unet_offload_device())


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)


def init_unet(unet: torch.nn.Module, seed: int) -> None:
    """Training init: weights ~ N(0, 1/fan_in), biases 0, norms identity; the last layer of
    every residual branch (ResBlock out conv, transformer proj_out) and the output conv at 0."""
    with torch.no_grad():
        for name, p in unet.named_parameters():
            module = unet.get_submodule(name.rsplit(".", 1)[0])
            zero = name.startswith("out.2.") or ".out_layers.3." in name or ".proj_out." in name
            if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif zero or p.dim() == 1:
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=_generator(seed, name)) / p[0].numel() ** 0.5)


def _fill_text(module: torch.nn.Module, seed: int) -> None:
    """Frozen random text weights, each parameter drawn from a generator keyed by its name
    (so they do not depend on parameter order): norms identity, matrices ~ N(0, 1/fan_in),
    vectors ~ N(0, 0.02)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            owner = module.get_submodule(name.rsplit(".", 1)[0])
            gen = _generator(seed, name)
            if isinstance(owner, torch.nn.LayerNorm):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            p.requires_grad_(False)


def build_text_encoder(seed: int = TEXT_SEED):
    """A host ``comfy.sd.CLIP``: tiny CLIP-L + CLIP-G with frozen random weights behind the
    real SDXL tokenizer. encode_from_tokens gives (1, 77k, 64) context and (1, 32) pooled."""
    from .text_encoder import sdxl_clip_from
    clip = sdxl_clip_from(CONFIGS)
    _fill_text(clip.cond_stage_model, seed)
    return clip


def encode_text(clip, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(context (1, 77, 64), pooled (1, 32)) of a prompt, as the host's CLIPTextEncode makes them."""
    with torch.no_grad():
        cond, pooled = clip.encode_from_tokens(clip.tokenize(prompt), return_pooled=True)
    return cond.float(), pooled.float()


def size_conditioning(model, pooled: torch.Tensor) -> torch.Tensor:
    """SDXL's ``y`` for pooled text (B, 32) at PIXELS x PIXELS, exactly as the host's
    ``SDXL.encode_adm`` builds it when sampling 32 x 32 latents: (B, 32 + 6 * 256)."""
    return model.encode_adm(pooled_output=pooled, width=PIXELS, height=PIXELS)


def _latent_scale() -> str:
    from .latent_map import SCALE
    return json.dumps([round(float(v), 6) for v in SCALE])


def save_weights(path: Path, unet: torch.nn.Module, clip, info: dict) -> None:
    """UNet weights in fp16 plus the text fingerprint; ``info`` goes into the metadata."""
    from safetensors.torch import save_file
    tensors = {f"unet.{k}": v.detach().to(torch.float16).contiguous() for k, v in unet.state_dict().items()}
    tensors["text_fingerprint"] = encode_text(clip, PROBE_PROMPT)[0][0, :24].contiguous()
    meta = {"format": FORMAT, "unet_config": json.dumps(UNET_CONFIG), "text_seed": str(TEXT_SEED),
            "probe_prompt": PROBE_PROMPT, "latent_scale": _latent_scale(),
            **{k: str(v) for k, v in info.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_story_world(path: Path = WEIGHTS):
    """(ModelPatcher, CLIP) from a weights file; raises if the file is not a story-world file
    or the rebuilt text encoder does not match the one it was trained with."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"story-world weights not found: {path} (train them with "
                                f"python -m story_world.train --out {path})")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a story-world weights file (format {meta.get('format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if json.loads(meta["unet_config"]) != json.loads(json.dumps(UNET_CONFIG)):
        raise ValueError(f"{path} was trained with another UNet config: {meta['unet_config']}")
    if meta.get("latent_scale") != _latent_scale():
        raise ValueError(f"{path} was trained with another latent map scale: {meta.get('latent_scale')}")
    clip = build_text_encoder(int(meta["text_seed"]))
    probe = encode_text(clip, meta["probe_prompt"])[0][0, :24]
    # the 2024 and 2025 hosts agree to ~2e-3 (their attention differs); other weights differ by ~1
    if not torch.allclose(probe, tensors["text_fingerprint"].float(), atol=2e-2, rtol=0):
        raise RuntimeError("the rebuilt frozen text encoder differs from the one the story-world "
                           "UNet was trained with (host CLIP or torch RNG changed)")
    model = build_sdxl()
    state = {k[len("unet."):]: v.float() for k, v in tensors.items() if k.startswith("unet.")}
    model.diffusion_model.load_state_dict(state)
    model.eval()
    return patcher(model), clip
