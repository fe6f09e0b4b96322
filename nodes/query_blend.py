"""ConsiStory Query Blend: vanilla-query blending (paper §4.2).

While shared attention is on during the first part of the schedule, an extra UNet
forward on the same latents runs with sharing off; its up-block self-attention queries
are kept (its output is discarded) and the sampler's pass uses
``q = s*q_vanilla + (1-s)*q``, s falling linearly from start to end strength.
"""
from __future__ import annotations

from .story_run import BLEND_KEY, PHASE_KEY, VANILLA_QUERIES_KEY
from .unet_wrappers import chained, phase_of, story_run, with_options


def schedule_percent(model_sampling, sigma: float) -> float:
    """Where ``sigma`` sits in the schedule, as the host's percent (inverse of percent_to_sigma)."""
    lo, hi = 0.0, 1.0
    for _ in range(40):  # percent_to_sigma falls as the percent grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if model_sampling.percent_to_sigma(mid) > sigma else (lo, mid)
    return (lo + hi) / 2


class QueryBlend:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A model patched by ConsiStory SDSA."}),
            "start_strength": ("FLOAT", {"default": 0.9, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                               "Weight of the vanilla queries at the start of the schedule."}),
            "end_strength": ("FLOAT", {"default": 0.82, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                             "Weight of the vanilla queries at end_percent (linear in between)."}),
            "end_percent": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                            "Blending (and its extra UNet pass per step) stops here."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "ConsiStory"
    DESCRIPTION = ("Keeps layouts varied: early steps blend the queries of a pass without "
                   "shared attention into the shared pass (one extra UNet call per early step).")

    def patch(self, model, start_strength, end_strength, end_percent):
        run = story_run(model, "ConsiStory Query Blend")
        m = model.clone()
        sampling = m.model.model_sampling
        end_sigma = sampling.percent_to_sigma(end_percent)
        previous = chained(m.model_options)

        def strength(sigma: float) -> float:
            if end_percent <= 0:
                return start_strength
            p = min(schedule_percent(sampling, sigma) / end_percent, 1.0)
            return start_strength + (end_strength - start_strength) * p

        def wrapper(apply_model, args):
            if phase_of(args) is not None:
                return previous(apply_model, args)
            sigma = run.sync(args["timestep"])
            if sigma < end_sigma or not run.active(sigma):
                return previous(apply_model, args)
            queries = {}
            previous(apply_model, with_options(args, **{PHASE_KEY: "vanilla", VANILLA_QUERIES_KEY: queries}))
            return previous(apply_model, with_options(args, **{VANILLA_QUERIES_KEY: queries,
                                                               BLEND_KEY: strength(sigma)}))

        m.set_model_unet_function_wrapper(wrapper)
        return (m,)
