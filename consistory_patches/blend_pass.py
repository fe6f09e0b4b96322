"""Vanilla-query blending (§4.2), as a wrapper stage.

While shared attention is on in the first part of the schedule, each sampler call is
preceded by a VANILLA pass on the same latents (sharing off; its up-block self-attention
queries are kept, its output discarded), and the sampler's pass blends them in:
``q = s*q_vanilla + (1-s)*q`` (SharedAttention), s going linearly from the start strength
at the schedule's start to the end strength at end_percent.
"""
from __future__ import annotations

from ..consistory_core.settings import BlendSettings
from .passes import Pass, PassKind, args_pass, with_pass
from .run_state import StoryRun
from .windows import Window


def schedule_percent(model_sampling, sigma: float) -> float:
    """Where ``sigma`` sits in the schedule, as the host's percent (inverse of percent_to_sigma)."""
    lo, hi = 0.0, 1.0
    for _ in range(40):  # percent_to_sigma falls as the percent grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if model_sampling.percent_to_sigma(mid) > sigma else (lo, mid)
    return (lo + hi) / 2


class QueryBlendPass:
    def __init__(self, run: StoryRun, settings: BlendSettings, model_sampling):
        self.run, self.settings, self.sampling = run, settings, model_sampling
        self.window = Window.of(0.0, settings.end_percent, model_sampling)

    def __deepcopy__(self, memo):
        return self

    def strength(self, sigma: float) -> float:
        """Linear from the start strength at the schedule's start to the end strength at the
        window's last step (the paper's linspace(0.9, 0.818, 6) at steps 0-5 of 50)."""
        s = self.settings
        p = self.window.progress(sigma, self.run.position(), lambda x: schedule_percent(self.sampling, x))
        return s.start_strength + (s.end_strength - s.start_strength) * p

    def acts_at(self, sigma: float) -> bool:
        """Whether the sampler's calls at ``sigma`` are blended (inside the window, sharing on)."""
        return self.window.contains(sigma, self.run.position()) and self.run.sharing_at(sigma)

    def __call__(self, call, args):
        if not args_pass(args).is_sampler:
            return call(args)
        sigma = self.run.sync(args["timestep"])
        if not self.acts_at(sigma):
            return call(args)
        queries = {}
        call(with_pass(args, Pass(PassKind.VANILLA, queries=queries)))
        return call(with_pass(args, Pass(PassKind.SAMPLER, queries=queries, blend=self.strength(sigma))))
