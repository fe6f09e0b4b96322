"""The state of one patched model across sampling runs, and the patches that use it.

One ``StoryRun`` is made per execution of the SDSA node and reached from its patches'
closures and from ``transformer_options["consistory_run"]`` (``__deepcopy__`` returns the
same object, so the host's ``clone()`` shares it instead of copying it). It sees steps
only through the sigmas the UNet is called with (consistory_core.schedule), so the host
may run cond and uncond in one call or in two.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange

from ..consistory_core import (StepClock, StepEvent, SubjectMaskTracker, downscale_of,
                               image_keys, keep_draw, plan_shared_keys, repeated_positions,
                               shared_self_attention, subject_token_maps, token_grid, token_weights)
from .host_attention import host_attention
from .story_types import MaskSettings, StorySubject
from .unet_layers import transformer_block

RUN_KEY = "consistory_run"
# Per-call keys in transformer_options, set by the pack's wrappers on their extra passes.
PHASE_KEY = "consistory_phase"          # None (the sampler's own pass), "vanilla" or "dift"
VANILLA_QUERIES_KEY = "consistory_vanilla_queries"  # layer -> q of the vanilla pass
BLEND_KEY = "consistory_query_blend"     # s: q = s*q_vanilla + (1-s)*q
DIFT_NOISE_SEED_KEY = "consistory_dift_noise_seed"  # seed of a "dift" pass's re-noising


class StoryRun:
    def __init__(self, subject: StorySubject, masks: MaskSettings, diffusion_model,
                 dropout: float, dropout_seed: int, share: torch.Tensor, sigma_range: tuple,
                 dift_block: int | None = None, dift_sigma: float | None = None, replayed: int = 0):
        self.subject = subject
        self.settings = masks
        self.diffusion_model = diffusion_model
        self.dropout = dropout
        self.dropout_seed = dropout_seed
        self.share = share  # (N, N): share[i, j] = image i sees image j's subject patches
        self.replayed = replayed  # leading images replayed from an anchor bank (not in the latent batch)
        self.config: dict = {}
        self.sigma_start, self.sigma_end = sigma_range
        self.dift_block, self.dift_sigma = dift_block, dift_sigma
        self.clock = StepClock()
        self.runs = 0  # how many runs this model has started; a new run resets the state below
        self._reset_run()
        self._sigmas_seen = None
        self._plans: dict = {}
        self._weights: dict = {}
        self._attn2: dict = {}  # layer -> its cross-attention module (the UNet's, never changes)

    def __deepcopy__(self, memo):
        return self

    def _reset_run(self) -> None:
        self.tracker = SubjectMaskTracker(self.subject.word_subject, self.settings.window,
                                          self.settings.threshold_scale)
        self._dift_above = self._dift_below = None  # (sigma, cond features) around dift_sigma
        self.phase_features = None  # DIFT features of the last "dift" pass
        self._keys: dict = {}       # layer -> (text context, its cross-attention keys)
        self.anchor_inputs: dict = {}        # sigma -> anchors' input latents (k, C, h, w)
        self.anchor_conditioning: dict = {}  # "cond"/"uncond" -> {"context", "y"} of the anchors

    # -- steps -------------------------------------------------------------------------
    def sync(self, sigmas) -> float:
        """Follow the schedule from the sigmas (B,) of a sampler's call; returns the sigma."""
        if sigmas is not self._sigmas_seen:
            self._sigmas_seen = sigmas
            event = self.clock.observe(float(sigmas[0]))
            if event is StepEvent.NEW_RUN:
                self.runs += 1
                self._reset_run()
            if event is not StepEvent.SAME_STEP:
                self.tracker.next_step()
                self._plans.clear()
        return self.clock.sigma

    def sync_patch(self, extra: dict) -> float:
        """Patches follow the schedule on the sampler's passes; extra passes (vanilla
        queries, DIFT features) run at the current step or off-schedule and leave it alone."""
        return self.clock.sigma if extra.get(PHASE_KEY) else self.sync(extra["sigmas"])

    def cond_rows(self, rows: int, extra: dict, outer: bool = False):
        """Rows of the (first) cond chunk in a call, or None when the call has none.
        outer: a call as the sampler makes it, without replayed anchors."""
        order = list(extra["cond_or_uncond"])
        if 0 not in order:
            return None
        images = self.images_in(rows, extra, outer)
        return slice(order.index(0) * images, (order.index(0) + 1) * images)

    def images_in(self, rows: int, extra: dict, outer: bool = False) -> int:
        chunks = len(extra["cond_or_uncond"])
        images = rows // chunks
        expected = self.subject.images - (self.replayed if outer else 0)
        if images != expected:
            raise ValueError(
                f"ConsiStory: the latent batch has {images - self.replayed * (not outer)} images but the "
                f"story has {self.subject.images - self.replayed} prompts; set the latent batch size to "
                "the number of scenes")
        return images

    # -- subject masks (attn2 patch) --------------------------------------------------------
    def record(self, n, context, value, extra):
        """attn2 patch: record the cond chunk's subject maps on the mask layers."""
        self.sync_patch(extra)
        latent_hw = tuple(extra["original_shape"][2:])
        if (extra.get(PHASE_KEY) or n.shape[0] != extra["original_shape"][0]
                or downscale_of(latent_hw, n.shape[1]) not in self.settings.downscales):
            return n, context, value
        rows = self.cond_rows(n.shape[0], extra)
        if rows is None:
            return n, context, value
        layer = (*extra["block"], extra["block_index"])
        if layer not in self._attn2:
            self._attn2[layer] = transformer_block(self.diffusion_model, *layer).attn2
        attn2 = self._attn2[layer]
        q = attn2.to_q(n[rows])
        k = self._text_keys(attn2, layer, context[rows])
        maps = subject_token_maps(q, k, attn2.heads, self._token_weights(context.shape[1], q.device))
        grid = token_grid(latent_hw, n.shape[1])
        low = (-(-latent_hw[0] // 4), -(-latent_hw[1] // 4))  # the recording grid
        if grid != low:
            maps = torch.nn.functional.interpolate(
                maps.reshape(*maps.shape[:2], *grid), size=low, mode="bilinear",
                align_corners=False).flatten(2)
        self.tracker.add(maps, low)
        return n, context, value

    def _text_keys(self, attn2, layer: tuple, context: torch.Tensor) -> torch.Tensor:
        """attn2.to_k(context), computed once per layer while the text stays the same."""
        cached = self._keys.get(layer)
        if cached is None or cached[0].shape != context.shape or not torch.equal(cached[0], context):
            cached = self._keys[layer] = (context, attn2.to_k(context))
        return cached[1]

    def _token_weights(self, context_length: int, device) -> torch.Tensor:
        key = (context_length, device)
        if key not in self._weights:
            own = self.subject.token_length
            positions = [[repeated_positions(p, own, context_length) for p in words]
                         for words in self.subject.positions]
            self._weights[key] = token_weights(positions, context_length, device=device)
        return self._weights[key]

    # -- shared attention (attn1 replace) ---------------------------------------------------
    def active(self, sigma: float) -> bool:
        return (self.subject.images > 1 and self.tracker.ready
                and self.sigma_end <= sigma <= self.sigma_start)

    def plan(self, grid: tuple, device):
        """Shared-key plan of this step at one grid: masks, then this step's dropout."""
        if grid not in self._plans:
            subject = self.tracker.union_mask(grid)
            keep = keep_draw(self.dropout_seed, self.clock.step, subject.shape[0],
                             subject.shape[1], self.dropout).to(subject.device)
            plan = plan_shared_keys(subject & keep, self.share.to(subject.device))
            plan.flat_index = plan.flat_index.to(device)
            self._plans[grid] = plan
        return self._plans[grid]

    def attend(self, q, k, v, extra, previous=None):
        """attn1 replace: q, k, v (B_total, P, heads*d) -> (B_total, P, heads*d)."""
        sigma = self.sync_patch(extra)
        attention = previous or host_attention
        layer = (*extra["block"], extra["block_index"])
        if extra.get(PHASE_KEY) == "vanilla":  # query blending's pass: keep q, share nothing
            extra[VANILLA_QUERIES_KEY][layer] = q
            return attention(q, k, v, extra)
        if extra.get(BLEND_KEY) is not None and layer in extra[VANILLA_QUERIES_KEY]:
            s = extra[BLEND_KEY]
            q = s * extra[VANILLA_QUERIES_KEY][layer] + (1 - s) * q
        if not self.active(sigma) or q.shape[0] != extra["original_shape"][0]:
            return attention(q, k, v, extra)  # inactive, or another patch reshaped the batch
        images = self.images_in(q.shape[0], extra)
        plan = self.plan(token_grid(tuple(extra["original_shape"][2:]), q.shape[1]), q.device)
        if plan.empty:
            return attention(q, k, v, extra)
        heads = extra["n_heads"]
        split = lambda x: rearrange(x, "b p (h d) -> b h p d", h=heads)
        out = []
        for c in range(len(extra["cond_or_uncond"])):
            rows = slice(c * images, (c + 1) * images)
            qc, kc, vc = split(q[rows]), split(k[rows]), split(v[rows])
            if previous is None:
                oc = rearrange(shared_self_attention(qc, kc, vc, plan), "b h p d -> b p (h d)")
            else:  # another pack's attention on exactly the keys each image may see
                merge = lambda x: rearrange(x, "h p d -> 1 p (h d)")
                oc = torch.cat([previous(merge(qc[i]), merge(image_keys(kc, plan, i)),
                                         merge(image_keys(vc, plan, i)), extra)
                                for i in range(images)])
            out.append(oc)
        return torch.cat(out)

    # -- DIFT features (output block patch) ---------------------------------------------------
    def capture_features(self, h, hsp, extra):
        """output_block_patch: keep the cond chunk's input of output block ``dift_block``
        (the first up block's output, after its upsampler): from a "dift" pass, and on the
        sampler's own passes at the steps around ``dift_sigma``."""
        if extra["block"] != ("output", self.dift_block) or h.shape[0] != extra["original_shape"][0]:
            return h, hsp
        rows = self.cond_rows(h.shape[0], extra)
        if rows is None:
            return h, hsp
        phase = extra.get(PHASE_KEY)
        if phase == "dift":
            self.phase_features = h[rows]
        elif phase is None and self.dift_sigma is not None:
            sigma = self.sync_patch(extra)
            if sigma >= self.dift_sigma:
                self._dift_above = (sigma, h[rows])
            elif self._dift_below is None:
                self._dift_below = (sigma, h[rows])
        return h, hsp

    def recorded_features(self):
        """(sigma, features (N, C, h, w)) of the run's step closest to dift_sigma, or None."""
        found = [x for x in (self._dift_above, self._dift_below) if x is not None]
        if not found:
            return None
        target = math.log(self.dift_sigma)
        return min(found, key=lambda x: abs(math.log(x[0]) - target))
