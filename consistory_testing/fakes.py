"""Plain fakes of the host for the fast runtime tests: a ModelPatcher with one wrapper slot
(as the 2024 host has) and the host's way of calling the UNet through it."""
from __future__ import annotations


class FakePatcher:
    """The parts of a host ModelPatcher the runtime's wrapper helper uses (2024 host: one slot)."""

    def __init__(self, model_options=None):
        self.model_options = model_options or {"transformer_options": {}}

    def clone(self):
        import copy
        return FakePatcher(copy.deepcopy(self.model_options))

    def set_model_unet_function_wrapper(self, f):
        self.model_options["model_function_wrapper"] = f


def host_call(m, x, sigma, order, attention_patch=True, **c):
    """Calls the model's UNet the way the 2024 host's calc_cond_uncond_batch does; the
    "UNet" returns its input times 2 and logs (transformer_options, input) of each call.
    attention_patch: ConsiStory's attention patch runs in it (counts itself in, as the real one
    does), else another node's took its place."""
    from .pack import runtime
    count = runtime("consistory_patches.engagement").count
    story_key = runtime("consistory_patches.passes").STORY_KEY
    log = []

    def apply_model(x_in, t, **kw):
        log.append((kw["transformer_options"], x_in))
        if attention_patch and story_key in kw["transformer_options"]:  # the patches of a ConsiStory model
            count(kw["transformer_options"])           # its self-attention patch
            count(kw["transformer_options"], "masks")  # its cross-attention (mask) patch
        return x_in * 2

    options = {**m.model_options["transformer_options"], "cond_or_uncond": list(order), "sigmas": sigma}
    args = {"input": x, "timestep": sigma, "c": {**c, "transformer_options": options}, "cond_or_uncond": list(order)}
    wrapper = m.model_options.get("model_function_wrapper")
    out = wrapper(apply_model, args) if wrapper else apply_model(x, sigma, **args["c"])
    return out, log
