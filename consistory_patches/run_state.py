"""The bottom of the runtime: the state of one patched story across sampling runs.

One ``StoryRun`` is made per execution of ConsiStory SDSA (or Use Anchors) and shared by
every clone of its model (``__deepcopy__`` returns it, so the host's ``clone()`` does not
copy it). It holds the story (subject, share map, replayed anchors, sharing settings),
the step clock and the subject-mask tracker. The modules above it (mask recorder, shared
attention, DIFT capture, injection, anchor record/replay) keep their own state and ask to
be told when a new run starts. Steps are seen only through the sigmas of the sampler's
calls (consistory_core.schedule), so the host may batch cond and uncond or not.
"""
from __future__ import annotations

import logging

import torch

from ..consistory_core import StepClock, StepEvent, SubjectMaskTracker
from ..consistory_core.settings import SharingSettings
from .chunks import Chunks
from .passes import pass_of
from .values import StorySubject


class StoryRun:
    """subject: the story's prompts (anchors replayed from a bank first); share (N, N) bool:
    share[i, j] = image i sees image j's subject patches; replayed: how many leading images
    are anchors replayed from a bank rather than rows of the sampler's latent batch;
    sigma_range: (sigma where sharing starts, sigma where it ends)."""

    def __init__(self, subject: StorySubject, sharing: SharingSettings, share: torch.Tensor,
                 sigma_range: tuple, replayed: int = 0):
        self.subject = subject
        self.sharing = sharing
        self.share = share
        self.replayed = replayed
        self.sigma_start, self.sigma_end = sigma_range
        self.clock = StepClock()
        self.runs = 0  # how many runs this model has started
        self._new_run_listeners: list = []
        self._sigmas_seen = None
        self._warned = None
        self.tracker = self._new_tracker()

    def __deepcopy__(self, memo):
        return self

    def _new_tracker(self) -> SubjectMaskTracker:
        masks = self.sharing.masks
        return SubjectMaskTracker(self.subject.word_subject, masks.window, masks.threshold_scale)

    def on_new_run(self, reset) -> None:
        """Call ``reset()`` whenever a new sampling run starts on this model."""
        self._new_run_listeners.append(reset)

    # -- steps -------------------------------------------------------------------------
    def sync(self, sigmas) -> float:
        """Follow the schedule from the sigmas (B,) of a sampler's call; returns the sigma."""
        if sigmas is not self._sigmas_seen:
            self._sigmas_seen = sigmas
            event = self.clock.observe(float(sigmas[0]))
            if event is StepEvent.NEW_RUN:
                self.runs += 1
                self.tracker = self._new_tracker()
                for reset in self._new_run_listeners:
                    reset()
            if event is not StepEvent.SAME_STEP:
                self.tracker.next_step()
        return self.clock.sigma

    def sync_patch(self, extra: dict) -> float:
        """Patches follow the schedule on the sampler's passes; the extra passes (vanilla
        queries, DIFT features) run at the current step or off-schedule and leave it alone."""
        return self.sync(extra["sigmas"]) if pass_of(extra).is_sampler else self.clock.sigma

    @property
    def step_key(self) -> tuple:
        """(run, step): changes at every new step of every run."""
        return self.runs, self.clock.step

    def sharing_at(self, sigma: float) -> bool:
        """Shared attention is on: several images, masks from one step, inside the window."""
        return (self.subject.images > 1 and self.tracker.ready
                and self.sigma_end <= sigma <= self.sigma_start)

    def check_schedule(self, sample_sigmas) -> None:
        """Warns once per schedule when it has one step: the masks come from the first step,
        so nothing is shared (today's host gives the whole schedule; the 2024 host does not)."""
        if sample_sigmas is None or len(sample_sigmas) != 2 or self._warned is sample_sigmas:
            return
        self._warned = sample_sigmas
        logging.warning("ConsiStory: a 1-step schedule: the subject masks come from the first step, so "
                        "nothing is shared and the images are plain samples; use 2 or more steps")

    # -- rows ---------------------------------------------------------------------------
    def chunks(self, rows: int, order, outer: bool = False) -> Chunks:
        """The layout of a call with ``rows`` rows: inside the pack's wrapper (anchors
        replayed in front of each chunk) or, ``outer``, as the sampler makes it."""
        chunks = Chunks.of(rows, order, anchors=0 if outer else self.replayed)
        expected = self.subject.images - (self.replayed if outer else 0)
        if chunks.images != expected:
            raise ValueError(
                f"ConsiStory: the latent batch has {chunks.images - chunks.anchors} images but the story has "
                f"{self.subject.images - self.replayed} prompts; set the latent batch size to the number of scenes")
        return chunks
