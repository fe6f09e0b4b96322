"""Nodes that look into a graph from outside, for tests and offline runs: they capture
latents and record how the host batches UNet calls. Registered like any node pack."""
from __future__ import annotations


class LatentCapture:
    """Output node: keeps a copy of a LATENT in ``LatentCapture.store[key]`` (the store of
    every capture node)."""
    store: dict = {}
    SOCKET, INPUT = "LATENT", "samples"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {cls.INPUT: (cls.SOCKET,), "key": ("STRING", {"default": cls.INPUT})}}

    RETURN_TYPES = ()
    FUNCTION = "capture"
    OUTPUT_NODE = True
    CATEGORY = "ConsiStory/testing"

    def capture(self, key, **value):
        (value,) = value.values()
        value = value["samples"] if isinstance(value, dict) else value
        LatentCapture.store[key] = value.detach().clone()
        return {}


class MaskCapture(LatentCapture):
    """Output node: keeps a copy of a MASK."""
    SOCKET, INPUT = "MASK", "mask"


class ImageCapture(LatentCapture):
    """Output node: keeps a copy of an IMAGE."""
    SOCKET, INPUT = "IMAGE", "image"


class _ModelProbe:
    """A MODEL -> MODEL test node."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "ConsiStory/testing"


def _attention_positions(net, groups=("input", "middle", "output")):
    """(name, id, index) of every transformer block, walked the way another pack would."""
    blocks = [("input", i, b) for i, b in enumerate(net.input_blocks)] + [("middle", 0, net.middle_block)] + \
             [("output", i, b) for i, b in enumerate(net.output_blocks)]
    return [(name, i, j) for name, i, block in blocks if name in groups for module in block
            for j in range(len(getattr(module, "transformer_blocks", [])))]


class ChunkRecorder(_ModelProbe):
    """MODEL -> MODEL: records ``len(cond_or_uncond)`` of every UNet call into ``calls``
    (chaining any wrapper already on the model)."""
    calls: list = []

    def patch(self, model):
        m = model.clone()
        previous = m.model_options.get("model_function_wrapper")

        def wrapper(apply_model, args):
            ChunkRecorder.calls.append(len(args["cond_or_uncond"]))
            if previous is not None:
                return previous(apply_model, args)
            return apply_model(args["input"], args["timestep"], **args["c"])

        m.set_model_unet_function_wrapper(wrapper)
        return (m,)


class Attn1ReplaceProbe(_ModelProbe):
    """MODEL -> MODEL: another pack's style of attn1 replace on every output-block layer.

    It runs the host's attention and records (query tokens, key tokens) of each call in
    ``calls``, so a test sees whether it was chained and which keys it was given.
    """
    calls: list = []

    def patch(self, model):
        from comfy.ldm.modules.attention import optimized_attention
        m = model.clone()

        def replace(q, k, v, extra):
            Attn1ReplaceProbe.calls.append((q.shape[1], k.shape[1]))
            return optimized_attention(q, k, v, extra["n_heads"])

        for position in _attention_positions(m.model.diffusion_model, ("output",)):
            m.set_model_attn1_replace(replace, *position)
        return (m,)


class _Attn2Object:
    """An attn2 replace the way IPAdapter-style packs add them: a callable object with
    set_new_condition() and to(); it scales the host's cross-attention output by 1.1."""

    def __init__(self):
        self.conditions = 1

    def set_new_condition(self, **kwargs):
        self.conditions += 1

    def to(self, device):
        return self

    def __call__(self, q, k, v, extra):
        from comfy.ldm.modules.attention import optimized_attention
        Attn2ReplaceProbe.calls += 1
        return optimized_attention(q, k, v, extra["n_heads"]) * 1.1


class Attn2ReplaceProbe(_ModelProbe):
    """MODEL -> MODEL: an IPAdapter-style attn2 replace object on every attention position."""
    calls = 0

    def patch(self, model):
        m = model.clone()
        for position in _attention_positions(m.model.diffusion_model):
            m.set_model_attn2_replace(_Attn2Object(), *position)
        return (m,)


NODE_CLASS_MAPPINGS = {"ConsiStoryAttn1ReplaceProbe": Attn1ReplaceProbe,
                       "ConsiStoryAttn2ReplaceProbe": Attn2ReplaceProbe,
                       "ConsiStoryLatentCapture": LatentCapture, "ConsiStoryMaskCapture": MaskCapture,
                       "ConsiStoryImageCapture": ImageCapture,
                       "ConsiStoryChunkRecorder": ChunkRecorder}
