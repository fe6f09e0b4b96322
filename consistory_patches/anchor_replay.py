"""Reusing a bank's anchors for new prompts (§4.4), as a wrapper stage.

Every UNet call gets the anchors' rows put in front of each chunk: their input latents at
the call's sigma from the bank (for a DIFT pass: their last clean-image estimate re-noised
with the pass's seed, as one batch would), their conditioning, zero ControlNet residuals.
The output drops those rows again. So the new images attend to [self ; anchors] exactly as
in one batch with the anchors. With an anchor cache (consistory_patches.anchor_cache) every
call runs on the new images only and the patches take the anchors' parts from the cache;
where an evaluation is not kept yet, a call on the anchors alone (their inputs and
conditioning as above) keeps them first.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from ..consistory_core import repeated_positions
from ..consistory_core.bank_file import AnchorBank, BankError
from ..consistory_core.correspondence import image_noise
from .anchor_cache import AnchorCache, cache_identity, registered
from .chunks import CHUNK_NAMES, COND, Chunks
from .host_api import sampled_model_fingerprint
from .passes import PassKind, args_pass, args_story, with_pass
from .values import StorySubject


def story_with_anchors(bank: AnchorBank, subject: StorySubject) -> StorySubject:
    """The story of [anchors ; new prompts] (the same subject words are required)."""
    d = bank.description
    words, bank_words = [list(w) for _, w in subject.subjects], [list(w) for _, w in d.subjects]
    if words != bank_words:
        raise BankError(f"the bank's subject words are {bank_words}, the new prompts' are {words}; use the "
                        "same subject words")
    own, new = d.token_length, subject.token_length
    length = math.lcm(own, new)
    anchors = tuple(tuple(tuple(repeated_positions(p, own, length)) for p in w) for w in d.positions)
    news = tuple(tuple(tuple(repeated_positions(p, new, length)) for p in w) for w in subject.positions)
    return StorySubject(prompts=tuple(d.prompts) + subject.prompts, subjects=subject.subjects,
                        positions=anchors + news, word_subject=subject.word_subject, token_length=length)


def reuse_mapping(anchors: int, new: int, share_new: bool) -> torch.Tensor:
    """(N, N) share map: anchors see each other; new images see the anchors (and each other if share_new)."""
    n = anchors + new
    share = torch.zeros(n, n, dtype=torch.bool)
    share[:anchors, :anchors] = True
    share[anchors:, :anchors] = True
    if share_new:
        share[anchors:, anchors:] = True
    share.fill_diagonal_(False)
    return share


def _repeat_tokens(t: torch.Tensor, length: int) -> torch.Tensor:
    return t.repeat(1, length // t.shape[1], 1)


class AnchorReplay:
    """cache: where the anchors' parts are kept after the first run (None: replayed at every
    call; each run takes the registry's cache of its bank and place, which an eviction may
    have replaced); cache_file: the file beside the bank of a "file" cache, or None;
    budget_gb: the run's budget for caches in memory (anchor_cache_budget)."""

    def __init__(self, bank: AnchorBank, cache: AnchorCache | None = None, cache_file: str | None = None,
                 base_model=None, budget_gb: float = 0.0):
        self.bank, self.cache, self.cache_file, self.budget_gb = bank, cache, cache_file, budget_gb
        self.base_model = base_model  # the host's model object (model.model), whose current_patcher samples
        self.last_x0 = None  # (evaluation, the anchors' denoised prediction (k, C, h, w), cond chunk)
        self._index = None   # the place in ``_order`` of the bank's evaluation the sampler is at
        self._seen = None    # (sigma, first new image's input) of that evaluation
        self._order = bank.evaluations(None)  # the bank's evaluations of the run's pass
        self._anchor_queries: dict = {}  # the vanilla queries of the anchors alone (recording a Query Blend step)

    def follow_evaluations(self, sigma: float, new_input: torch.Tensor) -> int:
        """The bank's evaluation of this call. The sampler must make the bank's evaluations in
        the bank's order from the first: a call at the current evaluation's sigma with the
        same inputs is that evaluation again (cond and uncond in separate calls, a vanilla
        pass); anything else is the next one, which must be at the bank's next sigma; a
        rise to the bank's first sigma starts a new run. Being on the schedule is not enough:
        every sigma of a 4-step schedule is on the 8-step one, and heun evaluates twice where
        euler evaluates once."""
        seen = self._seen
        if seen is not None and seen[0] == sigma and torch.equal(seen[1], new_input.to(seen[1])):
            return self._order[self._index]
        restart = seen is None or sigma > seen[0]
        place = 0 if restart else self._index + 1
        index = self._order[place] if place < len(self._order) else len(self.bank.sigmas)
        if not self.bank.is_at(index, sigma):
            raise self.bank.mismatch(index, sigma, place)
        self._index, self._seen = place, (sigma, new_input.detach().clone())
        return index

    def start_run(self, story, options: dict | None = None) -> None:
        """A run starts: the pass it is (a two-pass bank: the first pass has no injection), its
        Query Blend / Feature Injection settings against the bank's, and the anchor cache
        (options: the call's transformer_options, whose patches it depends on)."""
        method = story.method() if story is not None else None
        second = None if self.bank.passes is None or method is None else method.get("injection") is not None
        self._order = self.bank.evaluations(second)
        if method is not None:
            self.bank.check_method(method, first_pass=second is False)
        if self.cache is not None and story is not None:
            self._use_cache(story, options)

    def _use_cache(self, story, options: dict) -> None:
        """The cache holds the parts of this bank, model and settings (read from its file
        where it is a file's and the file was made for them)."""
        weights = sampled_model_fingerprint(self.base_model, story.masks.diffusion_model)
        self.cache = registered(self.cache, self.budget_gb)
        self.cache.use(cache_identity(self.cache.bank_key, story.method(), weights, options), self.cache_file)

    def __deepcopy__(self, memo):
        return self

    def __call__(self, call, args):
        bank, k = self.bank, self.bank.anchors
        x, p = args["input"], args_pass(args)
        sigma = float(args["timestep"][0])
        outer = Chunks.of(x.shape[0], args["cond_or_uncond"])
        inner = outer.with_anchors(k)
        if p.kind is PassKind.DIFT:  # belongs to the evaluation last followed
            evaluation = self._order[self._index]
        else:
            bank.check_latent(tuple(x.shape[1:]))
            if self._seen is None or sigma > self._seen[0]:  # a run starts
                self.start_run(args_story(args), args["c"].get("transformer_options", {}))
            evaluation = self.follow_evaluations(sigma, x[:1])
        conds = [self._conditioning(kind) for kind in outer.order]
        c = dict(args["c"])
        for key, value in c.items():
            if key in ("c_crossattn", "y", "guidance", "transformer_options", "control") or not torch.is_tensor(value):
                continue
            if value.shape[0] == x.shape[0]:
                raise BankError(f"Use Anchors cannot replay the anchors with the conditioning {key!r}")
        context = c["c_crossattn"]
        length = math.lcm(context.shape[1], *[cd["context"].shape[1] for cd in conds])
        if self.cache is None:
            return inner.drop_anchors(self._with_anchors(call, args, c, inner, evaluation, p, conds, length))
        played = self._played(call, args, c, evaluation, p, length, outer, conds)
        c["c_crossattn"] = _repeat_tokens(context, length)  # the new images alone, the anchors' parts cached
        return call(with_pass({**args, "c": c}, dataclasses.replace(p, anchor_rows=played)))

    def _with_anchors(self, call, args, c: dict, layout: Chunks, evaluation: int, p, conds: list, length: int):
        """The output of one UNet call (pass ``p``) with the anchors' rows in front of each chunk
        of ``layout`` (alone where it holds only them); keeps their cond rows' denoised estimate."""
        x = args["input"]
        anchors_x = self._anchor_inputs(evaluation, p, x, float(args["timestep"][0]))
        x_ext = layout.join(lambda i: anchors_x, x)
        ext = {**args, "input": x_ext, "timestep": args["timestep"][:1].expand(x_ext.shape[0]).contiguous(),
               "c": self._with_anchor_conditioning(c, layout, conds, length)}
        out = call(with_pass(ext, p))
        if p.is_sampler and layout.cond is not None:
            self.last_x0 = (evaluation, out[layout.head(layout.cond, layout.anchors)].detach())
        return out

    def _anchor_inputs(self, evaluation: int, p, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """The anchors' input latents (k, C, h, w) at this call's sigma: the bank's, or for a
        DIFT pass their last clean-image estimate re-noised with the pass's seed."""
        if p.kind is PassKind.DIFT:
            noise = image_noise(p.noise_seed, tuple(x.shape[1:]), self.bank.anchors).to(x)
            return self._last_x0(evaluation) + sigma * noise
        return self.bank.inputs[evaluation].to(x)

    def _with_anchor_conditioning(self, c: dict, layout: Chunks, conds: list, length: int) -> dict:
        """The call's conditioning with the anchors' in front of each chunk of ``layout`` (a
        layout of the anchors alone keeps only theirs)."""
        c = dict(c)
        k = self.bank.anchors
        join = layout.join
        context = c["c_crossattn"]
        c["c_crossattn"] = join(lambda i: _repeat_tokens(conds[i]["context"].to(context), length),
                                _repeat_tokens(context, length))
        for key in ("y", "guidance"):  # pooled text; Flux.1 dev's guidance strength
            if torch.is_tensor(c.get(key)):
                if any(key not in cd for cd in conds):
                    raise BankError(f"the bank has no {key!r} conditioning for its anchors but this model needs "
                                    "it: make the bank with this model")
                c[key] = join(lambda i, key=key: conds[i][key].to(c[key]), c[key])
        if c.get("control") is not None:
            zeros = lambda t: (lambda i: torch.zeros_like(t[:1]).expand(k, *t.shape[1:]))
            c["control"] = {part: [None if t is None else join(zeros(t), t) for t in tensors]
                            for part, tensors in c["control"].items()}
        return c

    def _played(self, call, args, c: dict, evaluation: int, p, length: int, outer: Chunks, conds: list):
        """The cache access of a call on the new images; where this evaluation's parts are not
        all kept yet, a call on the anchors alone keeps them first (its output only gives the
        anchors' denoised estimate). A vanilla (Query Blend) pass keeps nothing itself but is
        recorded with its sampler pass, whose blended queries it gives."""
        kind = p.kind.value
        needs = PassKind.SAMPLER.value if p.kind is PassKind.VANILLA else kind
        if not self.cache.kept(evaluation, needs, length, outer.order):
            k = self.bank.anchors
            self.cache.begin(evaluation, len(self._order) - self._index, args["input"].device)
            alone = Chunks(outer.order, k, k)
            recording = self.cache.slot(evaluation, kind, length, recording=True)
            if p.kind is PassKind.VANILLA:
                self._anchor_queries = {}
            queries = self._anchor_queries if p.queries is not None else None
            self._with_anchors(call, args, c, alone, evaluation,
                               dataclasses.replace(p, anchor_rows=recording, queries=queries), conds, length)
            if p.is_sampler and alone.cond is not None:
                recording.keep("x0", None, COND, self.last_x0[1])
            self._recorded(recording, outer.order)
        return self.cache.slot(evaluation, kind, length, recording=False)

    def _recorded(self, cached, chunks) -> None:
        """A call on the anchors alone kept their parts; at the bank's last evaluation the
        cache is whole (its size is logged, its file finished)."""
        self.cache.done(cached, chunks)
        if cached.kind == PassKind.SAMPLER.value and cached.evaluation == self._order[-1]:
            self.cache.finish()

    def _last_x0(self, evaluation: int) -> torch.Tensor:
        """The anchors' denoised estimate at ``evaluation`` (a DIFT pass re-noises it)."""
        if self.last_x0 is not None and self.last_x0[0] == evaluation:
            return self.last_x0[1]
        kept = self.cache.take_x0(evaluation) if self.cache is not None else None
        if kept is None:
            raise BankError("Use Anchors: the anchors' last estimate is missing for the DIFT pass; "
                            "this is a bug, please report it")
        return kept

    def _conditioning(self, kind: int) -> dict:
        name = CHUNK_NAMES.get(kind)
        if name not in self.bank.conditioning:
            raise BankError(f"the bank has no {name} conditioning (made with CFG 1?); sample with the "
                            "bank's CFG setting")
        return self.bank.conditioning[name]
