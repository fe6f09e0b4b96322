"""How long a run will take, said early where it is long (SDXL at 1024² on a CPU: hours)."""
from __future__ import annotations

import time

LONG = 120.0  # seconds to go from which the estimate is worth a line


class StepEstimate:
    """A progress-bar hook for the host's samplers: after the second step of a sampler, the
    time of that step times the steps left (in this sampler and in ``more_steps`` of samplers
    still to come) is the estimate; it is said once, when it is longer than ``LONG``.
    ``note``, if any, is said at the first step: once the models have loaded, so that a run
    that fails on its inputs says only what failed."""

    def __init__(self, more_steps: int = 0, say=print, clock=time.monotonic, hint: str = "", note: str = ""):
        self.more_steps, self.say, self.clock, self.hint, self.note = more_steps, say, clock, hint, note
        self.last = None
        self.said = False

    def __call__(self, value, total, preview=None, node_id=None):
        now = self.clock()
        if self.note:
            self.say(self.note, flush=True)
            self.note = ""
        if value == 1:
            self.last = now
        elif value == 2 and self.last is not None and not self.said:
            step = now - self.last
            left = step * (total - 2 + self.more_steps)
            if left > LONG:
                self.said = True
                self.say(f"      a step takes {step:.0f} s here: about {left / 60:.0f} min to go{self.hint}", flush=True)
