"""Where the 2024 snapshot and today's ComfyUI differ, in one place.

- Attention: today's ``optimized_attention`` takes ``attn_precision``; the 2024 one does not.
- The clone's own noise schedule: today's ``get_model_object``; the 2024 ``object_patches``.
- UNet wrappers: today's ModelPatcher has keyed wrappers (``add_wrapper_with_key``,
  ``WrappersMP.APPLY_MODEL``) that compose with any other pack's; the 2024 one has a single
  ``model_function_wrapper`` slot, which ours chains (it calls the wrapper it found there).

The host is imported lazily, so the runtime imports without a host (the fast tests).
"""
from __future__ import annotations

WRAPPER_KEY = "consistory"
_WRAPPER_MARK = "consistory_unet_wrapper"


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
    """What a bank records of the model it was made with: family and text context width."""
    config = model.model.model_config
    return {"model_family": type(config).__name__,
            "context_dim": int(config.unet_config.get("context_dim") or 0)}
