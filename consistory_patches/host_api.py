"""Where the 2024 snapshot and today's ComfyUI differ, in one place.

- Attention: today's ``optimized_attention`` takes ``attn_precision``; the 2024 one does not.
- The clone's own noise schedule: today's ``get_model_object``; the 2024 ``object_patches``.
- UNet wrappers: today's ModelPatcher has keyed wrappers (``add_wrapper_with_key``,
  ``WrappersMP.APPLY_MODEL``) that compose with any other pack's; the 2024 one has a single
  ``model_function_wrapper`` slot, which ours chains (it calls the wrapper it found there).

The host is imported lazily, so the runtime imports without a host (the fast tests).
"""
from __future__ import annotations

from ..consistory_core.bank_file import FINGERPRINT_OF

WRAPPER_KEY = "consistory"
_WRAPPER_MARK = "consistory_unet_wrapper"


def host_version() -> str:
    """The running ComfyUI's version ("0.3.75"), or "version unknown" (the 2024 snapshot has no
    comfyui_version module)."""
    try:
        from comfyui_version import __version__
    except ImportError:
        return "version unknown"
    return str(__version__)


def host_attention(q, k, v, extra):
    """q, k, v (B, P, heads*d) -> (B, P, heads*d) through the host's optimized attention,
    for layers where shared attention is inactive, so they give what the unpatched model gives."""
    from comfy.ldm.modules.attention import optimized_attention
    kwargs = {"attn_precision": extra["attn_precision"]} if "attn_precision" in extra else {}
    return optimized_attention(q, k, v, extra["n_heads"], **kwargs)


def _keyed_wrappers():
    """today's host: (WrappersMP) of comfy.patcher_extension; None on the 2024 host."""
    try:
        from comfy.patcher_extension import WrappersMP
    except ImportError:
        return None
    return WrappersMP if hasattr(WrappersMP, "APPLY_MODEL") else None


def install_unet_wrapper(m, wrapper) -> None:
    """Puts ``wrapper(call, args) -> output`` around the model's UNet calls on clone ``m``,
    once. ``args`` = {"input", "timestep" (sigmas), "c" (kwargs of apply_model, with
    transformer_options), "cond_or_uncond"}; ``call(args)`` runs the rest of the chain."""
    wrappers = _keyed_wrappers()
    if wrappers is not None and hasattr(m, "add_wrapper_with_key"):
        if not m.get_wrappers(wrappers.APPLY_MODEL, WRAPPER_KEY):
            m.add_wrapper_with_key(wrappers.APPLY_MODEL, WRAPPER_KEY, _keyed(wrapper))
        return
    previous = m.model_options.get("model_function_wrapper")
    if getattr(previous, _WRAPPER_MARK, False):
        return

    def slot(apply_model, args):
        if previous is None:
            return wrapper(lambda a: apply_model(a["input"], a["timestep"], **a["c"]), args)
        return wrapper(lambda a: previous(apply_model, a), args)

    setattr(slot, _WRAPPER_MARK, True)
    m.set_model_unet_function_wrapper(slot)


def _keyed(wrapper):
    """An APPLY_MODEL wrapper (executor, x, t, **c) around a wrapper(call, args)."""
    def apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None,
                            transformer_options=None, **kwargs):
        c = {"c_concat": c_concat, "c_crossattn": c_crossattn, "control": control,
             "transformer_options": transformer_options if transformer_options is not None else {}, **kwargs}
        args = {"input": x, "timestep": t, "c": c,
                "cond_or_uncond": c["transformer_options"].get("cond_or_uncond", [0])}
        return wrapper(lambda a: executor(a["input"], a["timestep"], **a["c"]), args)
    return apply_model_wrapper


def model_sampling(m):
    """The noise schedule the clone ``m`` samples with: its own object patch (the stock
    ModelSamplingDiscrete / ModelSamplingContinuousEDM nodes put one there), else the model's.
    Not ``m.model.model_sampling``: that is whatever the last sampled clone patched in."""
    if hasattr(m, "get_model_object"):
        return m.get_model_object("model_sampling")
    return m.object_patches.get("model_sampling", m.model.model_sampling)


def model_facts(model) -> dict:
    """What a bank records of the model it was made with: family, text context width, and a
    fingerprint of its weights and weight patches (LoRAs and their strengths)."""
    config = model.model.model_config
    fingerprint, patches = model_fingerprint(model)
    return {"model_family": type(config).__name__,
            "context_dim": int(config.unet_config.get("context_dim") or 0),
            "model_fingerprint": fingerprint, "model_patches": patches, "fingerprint_of": FINGERPRINT_OF}


def weights_sample(t, values: int = 4096) -> bytes:
    """Up to ``values`` evenly spaced values of a tensor, as bytes (cheap even for SDXL's weights)."""
    flat = t.detach().reshape(-1)
    return flat[::max(1, flat.numel() // values)][:values].float().cpu().numpy().tobytes()


def hash_weights(h, module, every: int = 1, values: int = 4096, originals: dict | None = None) -> None:
    """Adds to the hash ``h`` the name and ``values`` sampled values of every ``every``-th
    tensor of ``module``'s state dict (the weights as they are now, patches applied), or of the
    tensor ``originals`` holds under that name."""
    originals = originals or {}
    for i, (name, tensor) in enumerate(module.state_dict().items()):
        if i % every == 0:
            h.update(name.encode())
            h.update(weights_sample(originals.get(name, tensor), values))


def patch_kinds(options: dict) -> str:
    """The attention and block patches in a call's transformer_options, by place and function
    name (not identity: the host's clone() copies them), as one line."""
    found = []
    for table in ("patches", "patches_replace"):
        for place, entries in sorted((options.get(table) or {}).items()):
            items = entries.items() if isinstance(entries, dict) else enumerate(entries)
            for key, patch in sorted(((str(k), p) for k, p in items), key=lambda kp: kp[0]):
                found.append(f"{table}.{place}.{key}:{getattr(patch, '__qualname__', type(patch).__name__)}")
    return ";".join(found)


def _first_tensor(value):
    import torch
    if torch.is_tensor(value):
        return value
    items = value if isinstance(value, (list, tuple)) else getattr(value, "weights", ())
    for item in items if isinstance(items, (list, tuple)) else ():
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


def hash_base_weights(h, model, every: int = 50, values: int = 4096) -> None:
    """Adds to the hash ``h`` a sample of every ``every``-th tensor of a ModelPatcher's UNet as
    the checkpoint has it, whatever the patcher did with its weight patches: written into the
    weights (a full load: the originals are in ``model.backup``) or applied per layer as it runs
    (a partial load's weight functions; ComfyUI 0.38's dynamic VRAM), so the weights are the
    checkpoint's."""
    prefix = "diffusion_model."
    originals = {key[len(prefix):]: getattr(kept, "weight", kept)
                 for key, kept in (getattr(model, "backup", None) or {}).items() if key.startswith(prefix)}
    hash_weights(h, model.model.diffusion_model, every, values, originals)


def model_fingerprint(model) -> tuple:
    """(fingerprint, summary) of a ModelPatcher's UNet: a hash of a sample of its checkpoint
    weights (a few values of every 50th tensor, hash_base_weights) and of the patcher's record
    of its weight patches (LoRAs: key, strengths and a sample of the patch), so it is the same
    with the LoRAs written into the weights and applied per layer; and a line for people
    ("none", "264 weights patched, strengths 0.8")."""
    import hashlib
    h = hashlib.sha1()
    hash_base_weights(h, model)
    strengths = set()
    patches = getattr(model, "patches", {}) or {}
    for key in sorted(patches):
        for patch in patches[key]:
            strengths.add(round(float(patch[0]), 4))
            h.update(f"{key}|{patch[0]}|{patch[2] if len(patch) > 2 else ''}".encode())
            tensor = _first_tensor(patch[1])
            if tensor is not None:
                h.update(weights_sample(tensor))
    summary = "none" if not patches else \
        f"{len(patches)} weights patched, strengths {', '.join(map(str, sorted(strengths)))}"
    return h.hexdigest()[:16], summary


def sampled_model_fingerprint(base_model, diffusion_model) -> str:
    """The fingerprint of the model a sampler is running now: of the ModelPatcher the host
    points its model object ``base_model`` at before it samples (``current_patcher``, ComfyUI
    0.3.x and 0.38), else (the 2024 host, or no model object) of ``diffusion_model``'s weights
    as they are (the 2024 host writes its LoRAs into them)."""
    patcher = getattr(base_model, "current_patcher", None)
    if patcher is not None:
        return model_fingerprint(patcher)[0]
    import hashlib
    h = hashlib.sha1()
    hash_weights(h, diffusion_model, values=64)
    return h.hexdigest()[:16]


def sampler_sigmas(m, sampler_name: str, scheduler: str, steps: int):
    """The schedule (steps + 1,) the stock KSampler samples the clone ``m`` with (uni_pc's and
    dpm_2's dropped penultimate sigma included), on either host."""
    import comfy.samplers
    if hasattr(m, "get_model_object"):
        return comfy.samplers.KSampler(m, steps, "cpu", sampler_name, scheduler, 1.0).sigmas.cpu()
    from types import SimpleNamespace  # the 2024 host reads model.model_sampling
    shim = SimpleNamespace(model_sampling=model_sampling(m))
    return comfy.samplers.KSampler(shim, steps, "cpu", sampler_name, scheduler, 1.0).sigmas.cpu()


def sampler_names() -> tuple:
    """(samplers, schedulers) of the host's KSampler."""
    import comfy.samplers
    return tuple(comfy.samplers.KSampler.SAMPLERS), tuple(comfy.samplers.KSampler.SCHEDULERS)


def sample_with(m, sampler_function, sigmas, positive, negative, latent, cfg: float):
    """Runs the host's sampling of ``m`` (conditioning, CFG, model patches and wrappers, model
    loading) with a sampler function of our own, k-diffusion style:
    ``sampler_function(model, x, sigmas, extra_args, callback, disable)`` where ``model(x,
    sigma, **extra_args)`` is the CFG-combined denoiser and ``x`` the latent in model space
    (the noise given is zero). Returns its result as a LATENT's samples; a progress bar counts
    the steps."""
    import comfy.sample
    import comfy.samplers
    import comfy.utils
    import torch
    bar = comfy.utils.ProgressBar(len(sigmas) - 1)
    return comfy.sample.sample_custom(m, torch.zeros_like(latent), cfg, comfy.samplers.KSAMPLER(sampler_function),
                                      sigmas, positive, negative, latent,
                                      callback=lambda step, x0, x, total: bar.update_absolute(step + 1, total),
                                      disable_pbar=True, seed=0)
