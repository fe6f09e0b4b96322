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
from ..consistory_core.schedule import schedule_step
from ..consistory_core.settings import SharingSettings
from .chunks import Chunks
from .passes import pass_of
from .values import StorySubject
from .windows import Window


def is_whole_schedule(sample_sigmas, model_sampling=None) -> bool:
    """An n-step schedule that ends at 0, whatever its first sigma (diffusers' "leading" DDIM
    spacing starts well below the model's top noise level at 19 or 30 steps). Whether it is
    the tail of a schedule whose first part another sampler ran (a KSamplerAdvanced split)
    is for the run to tell (``StoryRun.follow``). ``model_sampling`` is accepted and not
    needed (callers of the earlier rule, such as the reference harness, pass it)."""
    return len(sample_sigmas) >= 2 and float(sample_sigmas[-1]) == 0.0


def continues(part, sample_sigmas, last_sigma) -> bool:
    """``sample_sigmas`` go on where the schedule ``part`` stopped: ``part`` did not end at 0,
    the run's last call (at ``last_sigma``) reached its last steps, and ``sample_sigmas``
    start at its last sigma (the second KSamplerAdvanced of a split)."""
    if part is None or last_sigma is None or float(part[-1]) <= 0.0:
        return False
    end, start = float(part[-1]), float(sample_sigmas[0])
    return abs(start - end) <= 1e-5 * end and last_sigma >= start * (1 - 1e-5)


def enclosing_schedule(part: torch.Tensor):
    """The whole schedule that ``part`` (not ending at 0) was sliced from, where the host hands
    it over as a slice: KSamplerAdvanced's first part is a slice of the whole schedule, and so
    are SplitSigmas' parts on the device their schedule was made on. Read from the memory the
    slice shares with it (the host samples in inference mode, where a slice does not name its
    base); None where that memory is not a whole schedule holding ``part``."""
    if part.dim() != 1 or part.stride(0) != 1:
        return None
    storage = part.untyped_storage()
    whole = torch.empty(0, dtype=part.dtype, device=part.device).set_(storage, 0, (storage.nbytes() // part.element_size(),))
    start = part.storage_offset()
    if len(whole) <= len(part) or not is_whole_schedule(whole) or bool((whole[1:] > whole[:-1]).any()):
        return None
    return whole if torch.equal(whole[start:start + len(part)], part) else None


KEPT_RUNS = 4  # finished runs whose state a later node may still ask for


class StoryRun:
    """subject: the story's prompts (anchors replayed from a bank first); share (N, N) bool:
    share[i, j] = image i sees image j's subject patches; replayed: how many leading images
    are anchors replayed from a bank rather than rows of the sampler's latent batch;
    window: where sharing is on; given_masks (k, H, W): the subject masks of the first
    k images where a user gave them (photo anchors), replacing the cross-attention masks."""

    def __init__(self, subject: StorySubject, sharing: SharingSettings, share: torch.Tensor,
                 window: Window, replayed: int = 0, given_masks=None):
        self.subject = subject
        self.given_masks = given_masks
        self.sharing = sharing
        self.share = share
        self.replayed = replayed
        self.window = window
        self.schedule = None  # the whole schedule being sampled, where the host passes it
        self._restart = False
        self._followed = None  # the sample_sigmas last given to follow()
        self._part = None  # the run's schedule so far where it does not end at 0 (a split's first part)
        self.clock = StepClock()
        self.runs = 0  # how many runs this model has started
        self.outputs: dict = {}  # run -> the sampler's latest CFG-combined denoised batch (model space)
        self.archive: dict = {}  # run -> what the modules kept of that finished run ("maps", "dift", ...)
        self._new_run_listeners: list = []
        self._sigmas_seen = None
        self._warned = None
        self.tracker = self._new_tracker()

    def __deepcopy__(self, memo):
        return self

    def _new_tracker(self) -> SubjectMaskTracker:
        masks = self.sharing.masks
        return SubjectMaskTracker(self.subject.word_subject, masks.window, masks.threshold_scale, self.given_masks)

    def on_new_run(self, reset) -> None:
        """Call ``reset()`` whenever a new sampling run starts on this model."""
        self._new_run_listeners.append(reset)

    # -- steps -------------------------------------------------------------------------
    def follow(self, sample_sigmas) -> None:
        """The sampler's schedule for the coming call (None where the host does not pass it).
        A schedule that ends at 0 is a whole one, and so is one that ends a run whose earlier
        parts other samplers ran (a KSamplerAdvanced split: the parts joined); a part that
        does not end at 0 is counted in the whole schedule it is a slice of, where the host
        hands it over as one, and kept to be joined. Every UNet call of a sampling passes the
        same tensor, so only a new one is looked at."""
        if sample_sigmas is self._followed:
            return
        self._followed = sample_sigmas
        self.check_schedule(sample_sigmas)
        if sample_sigmas is None:
            self.schedule = self._part = None
            return
        joined = sample_sigmas
        if continues(self._part, sample_sigmas, self.clock.sigma):
            joined = torch.cat([self._part[:-1].to(sample_sigmas), sample_sigmas])
        else:
            self._restart = True  # a new sampling, whatever sigma the last one stopped at
        whole = is_whole_schedule(joined)
        self._part = None if whole else joined.detach()
        self.schedule = joined if whole else enclosing_schedule(joined)

    def position(self) -> tuple | None:
        """(step, steps) of the current call in the whole schedule, or None where unknown."""
        if self.schedule is None or self.clock.sigma is None:
            return None
        return self.clock.step, len(self.schedule) - 1

    def sync(self, sigmas) -> float:
        """Follow the schedule from the sigmas (B,) of a sampler's call; returns the sigma."""
        if sigmas is not self._sigmas_seen:
            self._sigmas_seen = sigmas
            sigma = float(sigmas[0])
            step = schedule_step(self.schedule, sigma) if self.schedule is not None else None
            if step == 0 and self.clock.step > 0 and sigma >= float(self.schedule[0]) * (1 - 1e-5):
                self._restart = True  # back at the top of the same schedule: a second sampling with it
            if self._restart:
                self._restart = False
                self.clock = StepClock()
            event = self.clock.observe(sigma, step, rise_starts_run=self.schedule is None)
            if event is StepEvent.NEW_RUN:
                if self.runs:
                    self.kept(self.runs)["maps"] = self.tracker.snapshot()
                self.runs += 1
                self.tracker = self._new_tracker()
                for reset in self._new_run_listeners:
                    reset()
            if event is not StepEvent.SAME_STEP:
                self.tracker.next_step()
        return self.clock.sigma

    # -- which run made a sampler's output (one patched model may feed several samplers) ----
    def kept(self, run: int) -> dict:
        """The archive of a finished run (the last KEPT_RUNS are kept); modules add to it when
        the next run starts."""
        for old in [r for r in self.archive if r <= run - KEPT_RUNS]:
            del self.archive[old]
        return self.archive.setdefault(run, {})

    def note_output(self, denoised: torch.Tensor) -> None:
        """sampler_post_cfg_function: the sampler's denoised batch of this evaluation."""
        self.outputs[self.runs] = denoised.detach()
        for old in [r for r in self.outputs if r <= self.runs - KEPT_RUNS]:
            del self.outputs[old]

    def run_of(self, latent: torch.Tensor) -> int:
        """The run whose sampler made ``latent`` (model space, (B, C, h, w)): the one whose last
        denoised batch it equals (a sampler's last step lands on it), else the latest run."""
        latent = latent.float().cpu()
        scale = latent.norm().clamp_min(1e-8)
        distance = {run: float((out.float().cpu() - latent).norm() / scale) if out.shape == latent.shape
                    else float("inf") for run, out in self.outputs.items()}
        if not distance:
            return self.runs
        best = min(distance, key=distance.get)
        return best if distance[best] < 1e-3 and distance.get(self.runs, float("inf")) > 1e-3 else self.runs

    def state_of(self, run: int, name: str, current):
        """``current`` for the latest run, else what the module ``name`` kept of ``run``."""
        if run == self.runs:
            return current
        if name not in self.archive.get(run, {}):
            raise ValueError(f"the sampler run that made these samples is no longer kept (only the last "
                             f"{KEPT_RUNS} runs of a patched model are)")
        return self.archive[run][name]

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
                and self.window.contains(sigma, self.position()))

    def check_schedule(self, sample_sigmas) -> None:
        """Warns once per schedule when it has one step: the masks come from the first step,
        so nothing is shared (today's host gives the whole schedule; the 2024 host does not)."""
        if sample_sigmas is None or len(sample_sigmas) != 2 or self._warned is sample_sigmas:
            return
        self._warned = sample_sigmas
        logging.warning("ConsiStory: a 1-step schedule: the subject masks come from the first step, so "
                        "nothing is shared and the images are plain samples; use 2 or more steps")

    # -- rows ---------------------------------------------------------------------------
    def patch_chunks(self, rows: int, extra: dict) -> Chunks:
        """The layout of a patch's call (``extra``: its transformer_options): replayed anchors
        in front of each chunk, unless an anchor cache gives their parts instead (the call
        holds the new images) or records them (the call holds the anchors alone)."""
        slot = pass_of(extra).anchor_rows
        if slot is not None and slot.recording:
            return Chunks(tuple(extra["cond_or_uncond"]), self.replayed, self.replayed)
        return self.chunks(rows, extra["cond_or_uncond"], outer=slot is not None)

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
