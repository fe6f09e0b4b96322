"""Which denoising step the UNet is at, seen only from the sigmas it is called with.

The host calls the UNet one or more times per step (cond and uncond may be split, some
samplers evaluate twice at one sigma) with the schedule's sigma. A call at a new, lower
sigma starts a new step; a call at a higher sigma than the last one starts a new run
(a new sampling, or a restart). Two samplers sharing one schedule in sequence
(KSamplerAdvanced start/end steps) continue the same run.
"""
from __future__ import annotations

from enum import Enum


class StepEvent(Enum):
    SAME_STEP = 0
    NEW_STEP = 1
    NEW_RUN = 2


class StepClock:
    """Counts steps of the current run from successive sigma values."""

    def __init__(self) -> None:
        self.sigma: float | None = None
        self.step = -1

    def observe(self, sigma: float) -> StepEvent:
        if self.sigma is not None and sigma == self.sigma:
            return StepEvent.SAME_STEP
        new_run = self.sigma is None or sigma > self.sigma
        self.sigma = sigma
        self.step = 0 if new_run else self.step + 1
        return StepEvent.NEW_RUN if new_run else StepEvent.NEW_STEP
