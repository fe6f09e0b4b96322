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
    """MODEL -> MODEL: records ``len(cond_or_uncond)`` of every UNet forward into ``calls``.

    It also puts a wrapper in the single model_function_wrapper slot, as other packs do
    (chaining any wrapper already there). On the 2024 host that wrapper counts; on a host
    with keyed wrappers the count is taken by a DIFFUSION_MODEL wrapper, which runs inside
    every APPLY_MODEL wrapper (the pack's among them), so every extra pass is counted."""
    calls: list = []

    def patch(self, model):
        m = model.clone()
        previous = m.model_options.get("model_function_wrapper")
        keyed = _keyed_wrappers(m)

        def wrapper(apply_model, args):
            if keyed is None:
                ChunkRecorder.calls.append(len(args["cond_or_uncond"]))
            if previous is not None:
                return previous(apply_model, args)
            return apply_model(args["input"], args["timestep"], **args["c"])

        def count(executor, *args, transformer_options=None, **kwargs):
            options = transformer_options if transformer_options is not None else args[-1]
            ChunkRecorder.calls.append(len(options["cond_or_uncond"]))
            if transformer_options is not None:
                kwargs["transformer_options"] = transformer_options
            return executor(*args, **kwargs)

        m.set_model_unet_function_wrapper(wrapper)
        if keyed is not None:
            m.add_wrapper_with_key(keyed.DIFFUSION_MODEL, "consistory_chunk_recorder", count)
        return (m,)


def _keyed_wrappers(m):
    """WrappersMP where the host has keyed wrappers, else None."""
    try:
        from comfy.patcher_extension import WrappersMP
    except ImportError:
        return None
    return WrappersMP if hasattr(m, "add_wrapper_with_key") else None


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


class Attn1InputProbe(_ModelProbe):
    """MODEL -> MODEL: another pack's style of attn1 input patch (as reference-image packs
    put there) that changes self-attention's keys and values: it scales their input by
    1.05. Put after ConsiStory's, the inputs the pack saw are not what k came from."""

    def patch(self, model):
        m = model.clone()

        def scale(n, context, value, extra):
            return n, context * 1.05, value * 1.05

        m.set_model_attn1_patch(scale)
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


class StepProbe(_ModelProbe):
    """MODEL -> MODEL: an attn1 patch (it runs in every UNet pass, the pack's extra passes
    too) that records, per self-attention call, (sigma, pass kind, injection on, step, run) into
    ``calls``: the pass kind is the pack's "consistory_pass" option ("SAMPLER" where none);
    injection on is asked of the one-pass injection stage of the model's story, if any; step
    and run are the story's step clock and run count."""
    calls: list = []

    def patch(self, model):
        m = model.clone()

        def record(q, k, v, extra):
            passing = extra.get("consistory_pass")
            sigma = float(extra["sigmas"][0])
            story = extra.get("consistory_story")
            one_pass = getattr(story, "one_pass", None)
            StepProbe.calls.append((sigma, passing.kind.name if passing is not None else "SAMPLER",
                                    bool(one_pass and one_pass.injector.active(sigma)),
                                    story.run.clock.step if story is not None else None,
                                    story.run.runs if story is not None else None))
            return q, k, v

        m.set_model_attn1_patch(record)
        return (m,)


class AttentionOverrideProbe(_ModelProbe):
    """MODEL -> MODEL: another pack's attention override (today's host), the way such packs set
    it: it chains the one it found, counts its calls in ``calls`` and scales the output by 1.1."""
    calls = 0

    def patch(self, model):
        m = model.clone()
        options = m.model_options.setdefault("transformer_options", {})
        previous = options.get("optimized_attention_override")

        def override(func, *args, **kwargs):
            AttentionOverrideProbe.calls += 1
            out = previous(func, *args, **kwargs) if previous is not None else func(*args, **kwargs)
            return out * 1.1

        options["optimized_attention_override"] = override
        return (m,)


class AttentionBackendProbe(_ModelProbe):
    """MODEL -> MODEL: what ComfyUI 0.38's Model Attention Backend node does (its ModelPatcher's
    ``set_model_optimized_attention``): the override key set to a function that calls the chosen
    attention and ignores whatever override was there. Counts its calls in ``calls``."""
    calls = 0

    def patch(self, model):
        from comfy.ldm.modules.attention import optimized_attention
        m = model.clone()

        def override(_, *args, **kwargs):
            AttentionBackendProbe.calls += 1
            return optimized_attention(*args, **kwargs)

        m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
        return (m,)


class UnnamedFluxBlocksProbe(_ModelProbe):
    """MODEL -> MODEL: a Flux whose blocks reach the attention without their names, as on
    ComfyUI before 0.3.75 ("block_type"/"block_index" absent from transformer_options), through
    the host's block replace patches, which call each block with the options they pass."""

    def patch(self, model):
        m = model.clone()
        net = m.model.diffusion_model

        def unnamed(args, extra):
            options = {k: v for k, v in args["transformer_options"].items() if k not in ("block_type", "block_index")}
            return extra["original_block"]({**args, "transformer_options": options})

        for kind, blocks in (("double_block", net.double_blocks), ("single_block", net.single_blocks)):
            for i in range(len(blocks)):
                m.set_model_patch_replace(unnamed, "dit", kind, i)
        return (m,)


class DropHookProbe:
    """MODEL -> MODEL: the model as a host (or a node after ConsiStory's) that lacks one hook
    would run it: a patch list taken out, the APPLY_MODEL wrappers taken out, or a
    DIFFUSION_MODEL wrapper that hands the UNet transformer_options without the pass that
    ConsiStory's wrapper marked ("consistory_pass"). For the no-silent-no-op tests."""
    PATCHES = {"attn2 patch": "attn2_patch", "attn1 output patch": "attn1_output_patch",
               "output block patch": "output_block_patch"}
    HOOKS = (*PATCHES, "UNet wrapper", "pass handed through")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "hook": (list(cls.HOOKS),)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "ConsiStory/testing"

    def patch(self, model, hook):
        from comfy.patcher_extension import WrappersMP
        m = model.clone()
        if hook in self.PATCHES:
            patches = m.model_options["transformer_options"].get("patches", {})
            assert patches.pop(self.PATCHES[hook], None), f"the model has no {hook} to take out"
        elif hook == "UNet wrapper":
            assert m.wrappers.pop(WrappersMP.APPLY_MODEL, None), "the model has no APPLY_MODEL wrapper"
        else:
            def without_pass(executor, *args, **kwargs):
                drop = lambda a: {k: v for k, v in a.items() if k != "consistory_pass"} if isinstance(a, dict) else a
                return executor(*map(drop, args), **{k: drop(v) for k, v in kwargs.items()})
            m.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "consistory_test_drop_pass", without_pass)
        return (m,)


class LeadingSigmas:
    """MODEL, steps -> SIGMAS: diffusers' DDIM schedule with "leading" spacing and offset 1 (the
    reference implementation's: timesteps (n-1, ..., 0) * (1000 // n) + 1), on the model's own
    discrete noise levels, then 0. At 19 or 30 steps it starts well below the top noise level."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "steps": ("INT", {"default": 30, "min": 1, "max": 1000})}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "sigmas"
    CATEGORY = "ConsiStory/testing"

    def sigmas(self, model, steps):
        import torch
        sampling = (model.get_model_object("model_sampling") if hasattr(model, "get_model_object")
                    else model.model.model_sampling)
        timesteps = torch.arange(steps - 1, -1, -1, dtype=torch.float32) * (1000 // steps) + 1
        return (torch.cat([sampling.sigma(timesteps).float(), torch.zeros(1)]),)


NODE_CLASS_MAPPINGS = {"ConsiStoryAttn1ReplaceProbe": Attn1ReplaceProbe, "ConsiStoryAttn1InputProbe": Attn1InputProbe,
                       "ConsiStoryAttentionOverrideProbe": AttentionOverrideProbe,
                       "ConsiStoryAttentionBackendProbe": AttentionBackendProbe,
                       "ConsiStoryUnnamedFluxBlocksProbe": UnnamedFluxBlocksProbe,
                       "ConsiStoryAttn2ReplaceProbe": Attn2ReplaceProbe,
                       "ConsiStoryLatentCapture": LatentCapture, "ConsiStoryMaskCapture": MaskCapture,
                       "ConsiStoryImageCapture": ImageCapture,
                       "ConsiStoryChunkRecorder": ChunkRecorder, "ConsiStoryStepProbe": StepProbe,
                       "ConsiStoryLeadingSigmas": LeadingSigmas, "ConsiStoryDropHookProbe": DropHookProbe}
