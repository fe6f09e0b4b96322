"""The host's own attention call, for layers where shared attention is inactive, so those
layers give exactly what the unpatched model gives."""
from __future__ import annotations

from comfy.ldm.modules import attention as host_attention_module


def host_attention(q, k, v, extra):
    """q, k, v (B, P, heads*d) -> (B, P, heads*d) through the host's optimized attention."""
    kwargs = {"attn_precision": extra["attn_precision"]} if "attn_precision" in extra else {}
    return host_attention_module.optimized_attention(q, k, v, extra["n_heads"], **kwargs)
