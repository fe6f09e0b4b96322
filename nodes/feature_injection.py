"""ConsiStory Feature Injection: DIFT correspondence feature injection (paper §4.3).

In the high-resolution self-attention layers of the down and up blocks, cond half only,
between start and end percent, the output of target subject patches is pulled toward the
output of their nearest subject patch in the images they are mapped to.

Features come from a first run (``features`` input: the paper's exact two passes), or,
without it, from one extra UNet forward when injection starts: the previous step's
prediction of the clean image, re-noised to the DIFT timestep (one pass in all).
"""
from __future__ import annotations

import torch

from ..consistory_core import downscale_of, masks_from_maps, token_grid
from ..consistory_core.correspondence import gaussian_smooth, image_noise, inject, plan_injection
from .story_run import DIFT_NOISE_SEED_KEY, PHASE_KEY
from .story_types import FEATURES_TYPE
from .unet_wrappers import chained, phase_of, story_run, with_options

INJECTION_DOWNSCALE = 2  # the high-resolution attention layers (latent/2)


class Injector:
    """Injection state of one model across runs: the plan of the current run."""

    def __init__(self, run, alpha, sigma_range, features=None):
        self.run, self.alpha, self.features = run, alpha, features
        self.sigma_start, self.sigma_end = sigma_range
        self.fast_features = None  # (run index, features) from the one-pass mode
        self.last_x0 = None        # (run index, cond rows of the previous denoised output)
        self._plan = None          # (run index, plan)

    def active(self, sigma: float) -> bool:
        return self.sigma_end <= sigma <= self.sigma_start and self.run.subject.images > 1

    def plan(self, grid):
        if self._plan is not None and self._plan[0] == self.run.runs:
            return self._plan[1]
        if self.features is not None:
            features, maps = self.features.features, self.features.mask_maps
        elif self.fast_features is not None and self.fast_features[0] == self.run.runs:
            features, maps = self.fast_features[1], self.run.tracker.snapshot()
        else:
            return None
        if tuple(features.shape[2:]) != tuple(grid):
            raise ValueError(f"ConsiStory Feature Injection: features of a {tuple(features.shape[2:])} "
                             f"grid, but this run's high-resolution grid is {tuple(grid)} (other size?)")
        subject = masks_from_maps(maps, grid, self.run.tracker.word_subject,
                                  self.run.tracker.threshold_scale).any(1)
        plan = plan_injection(features.flatten(2), subject.to(features.device), self.run.share)
        self._plan = (self.run.runs, plan)
        return plan

    def output_patch(self, n, extra):
        """attn1_output_patch: n (B_total, P, C) after to_out."""
        if extra.get(PHASE_KEY) or extra["block"][0] == "middle" or n.shape[0] != extra["original_shape"][0]:
            return n
        sigma = self.run.sync_patch(extra)
        latent_hw = tuple(extra["original_shape"][2:])
        if downscale_of(latent_hw, n.shape[1]) != INJECTION_DOWNSCALE or not self.active(sigma):
            return n
        rows = self.run.cond_rows(n.shape[0], extra)
        plan = self.plan(token_grid(latent_hw, n.shape[1])) if rows is not None else None
        if plan is None:
            return n
        out = n.clone()
        out[rows] = inject(n[rows], plan, self.alpha)
        return out


class FeatureInjection:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A model patched by ConsiStory SDSA (and Query Blend)."}),
            "alpha": ("FLOAT", {"default": 0.8, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                      "How far a subject patch's output moves to its match in another image (0 = off)."}),
            "start_percent": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "Injection starts here in the schedule."}),
            "end_percent": ("FLOAT", {"default": 0.33, "min": 0.0, "max": 1.0, "step": 0.01,
                            "tooltip": "Injection ends here."}),
            "dift_timestep": ("INT", {"default": 261, "min": 1, "max": 999, "tooltip":
                              "One-pass mode: the timestep (of 1000) at which correspondence features are read."}),
            "dift_noise_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip":
                           "One-pass mode: seed of the noise added to reach the DIFT timestep."}),
        }, "optional": {
            "features": (FEATURES_TYPE, {"tooltip": "From ConsiStory Collect Features after a first run with the "
                         "same seed (exact, two passes). Without it: one pass."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "ConsiStory"
    DESCRIPTION = "Pulls fine subject details together across the batch by DIFT correspondence."

    def patch(self, model, alpha, start_percent, end_percent, dift_timestep, dift_noise_seed, features=None):
        run = story_run(model, "ConsiStory Feature Injection")
        if start_percent > end_percent:
            raise ValueError(f"ConsiStory Feature Injection: start_percent {start_percent} is after "
                             f"end_percent {end_percent}")
        if alpha == 0:
            return (model,)
        m = model.clone()
        sampling = m.model.model_sampling
        injector = Injector(run, alpha, (sampling.percent_to_sigma(start_percent),
                                         sampling.percent_to_sigma(end_percent)), features)
        m.set_model_attn1_output_patch(lambda n, extra: injector.output_patch(n, extra))
        if features is None:
            dift_sigma = float(sampling.sigma(torch.tensor(float(dift_timestep))))
            m.set_model_unet_function_wrapper(one_pass_wrapper(injector, chained(m.model_options),
                                                               dift_sigma, dift_noise_seed))
        return (m,)


def one_pass_wrapper(injector: Injector, previous, dift_sigma: float, noise_seed: int):
    """Keeps the cond half's denoised prediction of every step; when injection starts, runs
    one forward on it re-noised to ``dift_sigma`` to read the DIFT features."""
    run = injector.run

    def wrapper(apply_model, args):
        if phase_of(args) is not None:
            return previous(apply_model, args)
        sigma = run.sync(args["timestep"])
        rows = run.cond_rows(args["input"].shape[0], {"cond_or_uncond": args["cond_or_uncond"]}, outer=True)
        have = injector.fast_features is not None and injector.fast_features[0] == run.runs
        if rows is not None and injector.active(sigma) and not have and injector.last_x0 is not None \
                and injector.last_x0[0] == run.runs:
            x0 = injector.last_x0[1]
            noise = image_noise(noise_seed, tuple(x0.shape[1:]), x0.shape[0], offset=run.replayed)
            x = x0 + dift_sigma * noise.to(x0.device, x0.dtype)
            c = {k: (v[rows] if torch.is_tensor(v) and v.shape[0] == args["input"].shape[0] else v)
                 for k, v in args["c"].items() if k != "control"}
            dift_args = {"input": x, "timestep": torch.full((x.shape[0],), dift_sigma, device=x.device,
                                                            dtype=args["timestep"].dtype),
                         "c": c, "cond_or_uncond": [0]}
            dift_args = with_options(dift_args, **{PHASE_KEY: "dift", "cond_or_uncond": [0],
                                                   "sigmas": dift_args["timestep"],
                                                   DIFT_NOISE_SEED_KEY: noise_seed})
            previous(apply_model, dift_args)
            injector.fast_features = (run.runs, gaussian_smooth(run.phase_features.float()))
        out = previous(apply_model, args)
        if rows is not None:
            injector.last_x0 = (run.runs, out[rows].detach())
        return out

    return wrapper
