"""DIFT feature injection (§4.3): an attn1 output patch, and the one-pass feature stage.

In the high-resolution self-attention layers (latent/2) of the down and up blocks, cond
chunk only, between start and end percent, the output of each target subject patch is
pulled toward the output of its nearest subject patch in the images it is mapped to.
The correspondence comes from DIFT features: of a first run (Collect Features, the paper's
two passes), or of one extra UNet call when injection starts (``OnePassFeatures``): the
previous step's clean-image estimate re-noised to the DIFT sigma.
"""
from __future__ import annotations

import torch

from ..consistory_core import downscale_of, token_grid
from ..consistory_core.correspondence import gaussian_smooth, image_noise, inject, plan_injection
from .chunks import COND
from .dift_capture import DiftCapture
from .engagement import NotEngaged, count
from .host_api import host_version
from .passes import Pass, PassKind, args_pass, pass_of, with_pass
from .run_state import StoryRun
from .values import CorrespondenceFeatures
from .windows import Window

INJECTION_DOWNSCALE = 2  # the high-resolution attention layers (latent/2)


class Injector:
    """The injection of one patched model: its settings and the current run's plan.
    features: from a first run (two passes), or None for one pass."""

    def __init__(self, run: StoryRun, alpha: float, window: Window,
                 features: CorrespondenceFeatures | None = None):
        self.run, self.alpha, self.features = run, alpha, features
        self.window = window
        self.fast_features = None  # (run index, features (N, C, h, w)) from the one-pass stage
        self._plan = None          # (run index, InjectionPlan, subject patches (N, P) bool)

    def __deepcopy__(self, memo):
        return self

    def active(self, sigma: float) -> bool:
        return self.run.subject.images > 1 and self.window.contains(sigma, self.run.position())

    def plan(self, grid):
        run = self.run
        if self._plan is not None and self._plan[0] == run.runs:
            return self._plan[1]
        if self.features is not None:
            features, maps = self.features.features, self.features.mask_maps
        elif self.fast_features is not None and self.fast_features[0] == run.runs:
            # the masks of the finished steps: the same wherever in a call the plan is first asked
            # (a DiT's maps of the open step come from blocks before the first injecting one, and a
            # call on the anchors alone of an anchor cache adds none of them)
            features, maps = self.fast_features[1], run.tracker.finished()
        else:
            return None
        if maps is None:
            return None
        if tuple(features.shape[2:]) != tuple(grid):
            raise ValueError(f"ConsiStory Feature Injection: features of a {tuple(features.shape[2:])} "
                             f"grid, but this run's high-resolution grid is {tuple(grid)} (other size?)")
        subject = run.tracker.masks_of(maps, grid).any(1)
        plan = plan_injection(features.flatten(2), subject.to(features.device), run.share)
        self._plan = (run.runs, plan, subject)
        return plan

    def output_patch(self, n, extra):
        """attn1_output_patch: n (B_total, P, C) after to_out."""
        if pass_of(extra).is_sampler:
            count(extra, "output_patch")
        if not pass_of(extra).is_sampler or extra["block"][0] == "middle" or n.shape[0] != extra["original_shape"][0]:
            return n
        sigma = self.run.sync_patch(extra)
        latent_hw = tuple(extra["original_shape"][2:])
        if downscale_of(latent_hw, n.shape[1]) != INJECTION_DOWNSCALE or not self.active(sigma):
            return n
        rows = self.run.patch_chunks(n.shape[0], extra).cond_rows
        if rows is None:
            return n
        out = n.clone()
        out[rows] = self.injected(n[rows], token_grid(latent_hw, n.shape[1]), (*extra["block"], extra["block_index"]),
                                  pass_of(extra).anchor_rows)
        return out

    def injected(self, n: torch.Tensor, grid: tuple, layer: tuple, cached=None) -> torch.Tensor:
        """n (images of the call, P, C): the cond chunk's attention outputs at ``grid``, pulled
        toward their matches (as they are where the run has no features yet); cached: the
        call's anchor cache access, or None. Recording (n: the anchors alone), their injected
        outputs at their subject patches (the only ones injection takes from them) are kept;
        playing (n: the new images), those are put in front, and the new images injected after."""
        plan = self.plan(grid)
        if plan is None:
            return n
        if cached is None:
            return inject(n, plan, self.alpha)
        sources = self._plan[2][:cached.anchors].to(n.device)
        if cached.recording:
            out = inject(n, plan, self.alpha)
            cached.keep("inject", layer, COND, out[:cached.anchors][sources])
            return out
        anchors = n.new_zeros(cached.anchors, *n.shape[1:])
        anchors[sources] = cached.take("inject", layer, COND, n)
        return inject(torch.cat([anchors, n]), plan, self.alpha, first=cached.anchors)[cached.anchors:]


class OnePassFeatures:
    """Wrapper stage of one-pass injection: keeps the cond chunk's denoised prediction of
    every step; when injection starts, runs one DIFT pass on it re-noised to ``dift_sigma``
    (noise per image from ``noise_seed``) and hands the smoothed features to the injector."""

    def __init__(self, injector: Injector, dift: DiftCapture, dift_sigma: float, noise_seed: int):
        self.injector, self.dift = injector, dift
        self.dift_sigma, self.noise_seed = dift_sigma, noise_seed
        self.last_x0 = None  # (run index, cond rows of the previous denoised output (N, C, h, w))

    def __deepcopy__(self, memo):
        return self

    def __call__(self, call, args):
        if not args_pass(args).is_sampler:
            return call(args)
        injector, run = self.injector, self.injector.run
        sigma = run.sync(args["timestep"])
        rows = run.chunks(args["input"].shape[0], args["cond_or_uncond"], outer=True).cond_rows
        have = injector.fast_features is not None and injector.fast_features[0] == run.runs
        if rows is not None and injector.active(sigma) and not have and self.last_x0 is not None \
                and self.last_x0[0] == run.runs:
            self._read_features(call, args, rows, self.last_x0[1])
        out = call(args)
        if rows is not None:
            self.last_x0 = (run.runs, out[rows].detach())
        return out

    def _read_features(self, call, args, rows: slice, x0: torch.Tensor) -> None:
        run = self.injector.run
        noise = image_noise(self.noise_seed, tuple(x0.shape[1:]), x0.shape[0], offset=run.replayed)
        x = x0 + self.dift_sigma * noise.to(x0.device, x0.dtype)
        c = {k: (v[rows] if torch.is_tensor(v) and v.shape[0] == args["input"].shape[0] else v)
             for k, v in args["c"].items() if k != "control"}
        timestep = torch.full((x.shape[0],), self.dift_sigma, device=x.device, dtype=args["timestep"].dtype)
        dift_args = with_pass({"input": x, "timestep": timestep, "c": c, "cond_or_uncond": [0]},
                              Pass(PassKind.DIFT, noise_seed=self.noise_seed),
                              cond_or_uncond=[0], sigmas=timestep)
        self.dift.pass_features = None
        call(dift_args)
        self.dift.settle()
        if self.dift.pass_features is None:
            raise NotEngaged(f"ConsiStory Feature Injection: this ComfyUI ({host_version()}) did not call the output "
                             "block patch that reads the DIFT features, or a node after the ConsiStory nodes removed "
                             "it, so nothing would be injected; connect Collect Features (two passes) or put that "
                             "node before the ConsiStory nodes")
        self.injector.fast_features = (run.runs, gaussian_smooth(self.dift.pass_features.float()))
