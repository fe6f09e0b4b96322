"""DIFT correspondence features (§4.3), as an output-block patch.

The features are the input of output block ``dift_block``: the first up block's output
after its upsampler (3 in SDXL), cond chunk only, as that block takes it in: after every
output block patch of that block. FreeU scales the first half of its channels in place
there, and the reference implementation reads its features after that scaling (it keeps a
view of the tensor that FreeU then scales), so a view is held until the host has moved
past the block and copied then. They are kept from a DIFT pass (one-pass injection), and
on the sampler's own passes at the two steps around ``dift_sigma`` (the paper's t = 261),
so Collect Features can hand the closer one to a second run.
"""
from __future__ import annotations

import math

from .chunks import COND
from .passes import PassKind, pass_of
from .run_state import StoryRun


def dift_sigma(sampling, timestep: int) -> float:
    """The noise level at the paper's DIFT timestep (of 1000) on the model's own schedule,
    taken as a position in the schedule: the host's percent_to_sigma(1 - t/999). On the
    discrete schedules (epsilon, v-prediction, zero-SNR) that is their sigma(t); on the
    continuous EDM ones (CosXL, Playground v2.5), where sigma(261) overflows, a finite sigma
    at the same place."""
    return float(sampling.percent_to_sigma(1.0 - timestep / 999.0))


class DiftCapture:
    def __init__(self, run: StoryRun, dift_block: int, dift_sigma: float | None):
        self.run = run
        self.dift_block, self.dift_sigma = dift_block, dift_sigma
        self.pass_features = None  # (N, C, h, w) of the last DIFT pass
        self._reset()
        run.on_new_run(self._reset)

    def __deepcopy__(self, memo):
        return self

    def _reset(self) -> None:
        self._held = None  # (view of h's cond rows, the call's options) at the DIFT block
        if self.run.runs > 1:  # keep the finished run's features for Collect Features
            self.run.kept(self.run.runs - 1)["dift"] = self.recorded_features()
        self._above = self._below = None  # (sigma, cond features) just above / below dift_sigma
        self.pass_features = None

    def capture(self, h, hsp, extra):
        """output_block_patch: h (B, C, h, w), hsp the skip connection; both unchanged."""
        self.settle()
        if extra["block"] != ("output", self.dift_block) or h.shape[0] != extra["original_shape"][0]:
            return h, hsp
        rows = self.run.patch_chunks(h.shape[0], extra).cond_rows
        if rows is not None:
            self._held = (h[rows], dict(extra))  # a view: the block's later patches may scale h in place
        return h, hsp

    def settle(self) -> None:
        """Keeps a copy of the features held at the DIFT block (once the host is past it)."""
        if self._held is not None:
            view, extra = self._held
            self._held = None
            self.keep(view.clone, extra)

    def keep(self, features, extra: dict) -> None:
        """Keeps the features of a call where they are wanted: ``features()`` gives the cond
        chunk's (N, C, h, w), a copy; ``extra``: the call's transformer_options."""
        p = pass_of(extra)
        cached = p.anchor_rows  # replayed anchors' features from an anchor cache
        if p.kind is PassKind.DIFT:
            found = features() if cached is None else cached.rows("features", None, COND, features())
            if cached is None or not cached.recording:  # (a call on the anchors alone only keeps theirs)
                self.pass_features = found
        elif p.kind is PassKind.SAMPLER and self.dift_sigma is not None and cached is None:
            # (with an anchor cache the anchors have no features here: such a run gives Collect Features none)
            sigma = self.run.sync_patch(extra)
            if sigma >= self.dift_sigma:
                self._above = (sigma, features())
            elif self._below is None:
                self._below = (sigma, features())

    def recorded_features(self):
        """(sigma, features (N, C, h, w)) of the run's step closest to dift_sigma, or None."""
        self.settle()
        found = [x for x in (self._above, self._below) if x is not None]
        if not found:
            return None
        target = math.log(self.dift_sigma)
        return min(found, key=lambda x: abs(math.log(x[0]) - target))
