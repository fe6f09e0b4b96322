"""Recording the anchors of a run for a bank (§4.4), as a wrapper stage.

On the sampler's own calls the first k images of the batch are the anchors: their UNet
input latents at every model evaluation (a new sigma, or new inputs at the same sigma, as
heun's correction makes) and their conditioning per chunk are kept, and ``bank()`` packs
them, with the story and settings, as an AnchorBank.
"""
from __future__ import annotations

import torch

from ..consistory_core.bank_file import AnchorBank, BankDescription
from .chunks import CHUNK_NAMES, Chunks
from .passes import args_pass, args_story
from .run_state import StoryRun


class AnchorRecorder:
    def __init__(self, run: StoryRun, anchors: int):
        self.run, self.anchors = run, anchors
        self._reset()
        run.on_new_run(self._reset)

    def __deepcopy__(self, memo):
        return self

    def _reset(self) -> None:
        if getattr(self, "sigmas", None) and self.run.runs > 1:  # kept for Anchor Bank (and two-pass banks)
            self.run.kept(self.run.runs - 1)["anchors"] = (self.sigmas, self.inputs, self.conditioning, self.method)
        self.sigmas: list = []        # per model evaluation, in the sampler's order
        self.inputs: list = []        # anchors' input latents (k, C, h, w) per evaluation
        self.conditioning: dict = {}  # "cond"/"uncond" -> {"c_crossattn": (k, L, D), "y": (k, A), Flux's "guidance": (k,)}
        self.method = None            # Story.method() of the model this run sampled with

    def __call__(self, call, args):
        if args_pass(args).is_sampler:
            sigma = self.run.sync(args["timestep"])
            if self.method is None:
                story = args_story(args)
                self.method = story.method() if story is not None else {}
            x = args["input"]
            chunks = Chunks.of(x.shape[0], args["cond_or_uncond"])
            anchors = x[:self.anchors]
            same = self.sigmas and self.sigmas[-1] == sigma and torch.equal(self.inputs[-1], anchors.to(self.inputs[-1]))
            if not same:  # cond and uncond in separate calls are one evaluation: same sigma, same inputs
                self.sigmas.append(sigma)
                self.inputs.append(anchors.detach().clone())
            for c, kind in enumerate(chunks.order):
                name = CHUNK_NAMES.get(kind)
                if name and name not in self.conditioning:
                    rows = chunks.head(c, self.anchors)
                    self.conditioning[name] = {key: args["c"][key][rows].detach().clone()
                                               for key in ("c_crossattn", "y", "guidance")
                                               if torch.is_tensor(args["c"].get(key))}
        return call(args)

    def recorded(self, run: int) -> tuple:
        """(sigmas, inputs, conditioning, method) of a run (the latest, or a kept one)."""
        return self.run.state_of(run, "anchors", (self.sigmas, self.inputs, self.conditioning, self.method))

    def bank(self, facts: dict, two_passes: bool = False, run: int | None = None) -> AnchorBank:
        """The anchors of ``run`` (default: the latest; ``two_passes``: with the run before it,
        the first pass's evaluations first); ``facts``: the model's (model_facts) and "method"."""
        run = self.run.runs if run is None else run
        sigmas, inputs, conditioning, method = self.recorded(run)
        if not inputs or "cond" not in conditioning:
            raise ValueError("nothing recorded; connect the output of a sampler that used this model")
        passes = None
        if two_passes:
            previous = self.run.archive.get(run - 1, {}).get("anchors")
            if previous is None or (previous[3] or {}).get("injection") is not None:
                raise ValueError("two-pass injection needs its first pass (SDSA, Query Blend, no injection) "
                                 "sampled just before on this model; run the whole two-pass graph")
            passes = torch.tensor([0] * len(previous[0]) + [1] * len(sigmas))
            sigmas, inputs = previous[0] + sigmas, previous[1] + inputs
            facts = {**facts, "method": {**facts["method"], "first_pass": previous[3]}}
        subject, k = self.run.subject, self.anchors
        steps = len(set(sigmas))
        description = BankDescription(
            prompts=subject.prompts[:k], subjects=subject.subjects, positions=subject.positions[:k],
            word_subject=subject.word_subject, token_length=subject.token_length, sharing=self.run.sharing,
            schedule=f"{len(sigmas)} model evaluations at {steps} sigmas from {sigmas[0]:.6g} to {sigmas[-1]:.6g}",
            **facts)
        conditioning = {name: {"context" if key == "c_crossattn" else key: t.cpu() for key, t in c.items()}
                        for name, c in conditioning.items()}
        return AnchorBank(torch.tensor(sigmas, dtype=torch.float64), torch.stack([t.cpu() for t in inputs]),
                          conditioning, description, passes)
