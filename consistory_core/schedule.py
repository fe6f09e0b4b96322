"""Which denoising step the UNet is at, and which steps a window of the schedule covers.

The host calls the UNet one or more times per step (cond and uncond may be split, some
samplers evaluate twice at one sigma, or at a mid-point between two steps) with the
schedule's sigma. A call at a new, lower sigma starts a new step; a call at a higher sigma
than the last one starts a new run (a new sampling, or a restart). Two samplers sharing one
schedule in sequence (KSamplerAdvanced start/end steps) continue the same run. Where the
host passes the whole schedule (``sample_sigmas``), a call's step is its place in it, so a
mid-point evaluation belongs to the step it is part of.

Windows (Query Blend's, Feature Injection's, SDSA's) are given as fractions of the
schedule, as the paper gives them for its 50 steps: blending at steps 1-5 (``n // 10``),
injection at steps 5-16 (``n // 10`` to ``n // 3``). Step k of n is inside [start, end]
when ``floor(start * n) <= k <= floor(end * n)``, each percent read as the simplest
fraction less than half a hundredth from it (the widgets step by 0.01: 0.33 is the paper's
third, 0.1 a tenth), so the windows land on the paper's steps for every step count.
"""
from __future__ import annotations

import math
from enum import Enum
from fractions import Fraction
from functools import lru_cache

PERCENT_SLACK = Fraction(1, 200)  # half of the widgets' 0.01 step


class StepEvent(Enum):
    SAME_STEP = 0
    NEW_STEP = 1
    NEW_RUN = 2


class StepClock:
    """Counts steps of the current run from successive sigma values (and, where the schedule
    is known, the step each sigma belongs to)."""

    def __init__(self) -> None:
        self.sigma: float | None = None
        self.step = -1

    def observe(self, sigma: float, step: int | None = None, rise_starts_run: bool = True) -> StepEvent:
        """``step``: the sigma's step in the schedule, where known (a mid-point evaluation
        below the step's sigma is then the same step). ``rise_starts_run``: False where new
        runs are told otherwise (a new schedule), so a sampler that goes back up within its
        schedule (dpm_adaptive rejecting a step) stays in its run."""
        if self.sigma is not None and sigma == self.sigma:
            return StepEvent.SAME_STEP
        new_run = self.sigma is None or (rise_starts_run and sigma > self.sigma)
        self.sigma = sigma
        if not new_run and step is not None and step == self.step:
            return StepEvent.SAME_STEP
        if new_run:
            self.step = 0 if step is None else step
            return StepEvent.NEW_RUN
        self.step = self.step + 1 if step is None else step
        return StepEvent.NEW_STEP


def schedule_step(sample_sigmas, sigma: float) -> int:
    """The step (0 .. n-1) of an n-step schedule ``sample_sigmas`` (n + 1 falling values) that
    ``sigma`` belongs to: the last step whose sigma is at or above it."""
    values = [float(s) for s in sample_sigmas]
    tolerance = 1e-5 * max(abs(sigma), 1e-8)
    at_or_above = sum(1 for s in values[:-1] if s >= sigma - tolerance)
    return min(max(at_or_above - 1, 0), len(values) - 2)


def as_fraction(percent: float) -> Fraction:
    """The simplest fraction with a denominator up to 12 less than half a hundredth from
    ``percent`` (0.33 -> 1/3, 0.1 -> 1/10, 0.67 -> 2/3), else the percent itself (0.37)."""
    exact = Fraction(percent).limit_denominator(10**6)
    for denominator in range(1, 13):
        candidate = Fraction(round(exact * denominator), denominator)
        if abs(candidate - exact) < PERCENT_SLACK:
            return candidate
    return exact


@lru_cache(maxsize=256)  # asked by every shared-attention layer at every call
def window_steps(steps: int, start: float, end: float) -> range:
    """The steps (0-based) of an n-step schedule inside the window [start, end] (fractions)."""
    first = 0 if start <= 0 else math.floor(as_fraction(start) * steps)
    last = steps - 1 if end >= 1 else min(steps - 1, math.floor(as_fraction(end) * steps))
    return range(first, last + 1)
