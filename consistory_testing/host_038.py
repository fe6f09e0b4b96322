"""Stand-ins for what ComfyUI 0.38 does differently, where the tests cannot install it: written
from reading its sources (comfy/ldm/modules/attention.py, comfy/ldm/flux/math.py)."""


class TensorContainer:
    """0.38's attention tensor container: q, k or v handed to the attention by one owner, who
    takes it out once."""

    def __init__(self, tensor):
        self.tensor = tensor

    def take(self):
        tensor, self.tensor = self.tensor, None
        if tensor is None:
            raise RuntimeError("attention tensor container taken twice")
        return tensor


def flux_attention_038(attention):
    """Flux's call of ``attention`` (this host's wrapped optimized attention) as 0.38 makes it:
    q, k, v in containers; an override in transformer_options without a ``container_function``
    gets them unwrapped, one with it gets the containers; no override: the attention itself."""
    inner = attention.__wrapped__

    def call(q, k, v, heads, **kwargs):
        held = [TensorContainer(t) for t in (q, k, v)]
        kwargs = {**kwargs, "_inside_attn_wrapper": True}
        override = (kwargs.get("transformer_options") or {}).get("optimized_attention_override")
        if override is not None and hasattr(override, "container_function"):
            return override.container_function(*held, heads, **kwargs)
        tensors = [c.take() for c in held]
        if override is not None:
            return override(inner, *tensors, heads, **kwargs)
        return inner(*tensors, heads, **kwargs)

    return call
