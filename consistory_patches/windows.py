"""Where in the schedule a part of the method acts (SDSA, Query Blend, Feature Injection).

Each window is given as start/end percents of the schedule. Where the host passes the whole
schedule to the model (today's ComfyUI: ``sample_sigmas``), a window is a range of steps by
the paper's rule (``consistory_core.schedule.window_steps``: at 50 steps blending at steps
1-5, injection at 5-16). Where it does not (the 2024 host), or where the sampler runs only a
part of a schedule (a KSamplerAdvanced split, denoise below 1), the percents become sigma
thresholds on the model's own sampling (the host's ``percent_to_sigma``, as ControlNet's
percents), which can miss a boundary step by one.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..consistory_core.schedule import window_steps


@dataclass(frozen=True)
class Window:
    """start/end: fractions of the schedule; sigma_start >= sigma_end: the sigmas they map to
    on the patched model's sampling."""
    start: float
    end: float
    sigma_start: float
    sigma_end: float

    @classmethod
    def of(cls, start: float, end: float, model_sampling) -> "Window":
        return cls(start, end, float(model_sampling.percent_to_sigma(start)), float(model_sampling.percent_to_sigma(end)))

    def steps(self, count: int) -> range:
        return window_steps(count, self.start, self.end)

    def contains(self, sigma: float, position: tuple | None) -> bool:
        """position: (step, steps) in the whole schedule, or None (sigma thresholds)."""
        if position is None:
            return self.sigma_end <= sigma <= self.sigma_start
        step, count = position
        return step in self.steps(count)

    def progress(self, sigma: float, position: tuple | None, percent_of) -> float:
        """0 at the schedule's start to 1 at the window's last step (by sigma percent, via
        ``percent_of(sigma)``, where the schedule is not known)."""
        if position is None:
            return min(percent_of(sigma) / self.end, 1.0) if self.end > 0 else 0.0
        step, count = position
        steps = self.steps(count)
        last = steps[-1] if len(steps) else 0
        return min(step / last, 1.0) if last > 0 else 0.0
