"""Subject-driven shared self-attention (§4.1, dropout §4.2, anchors §4.4), as an attn1 replace.

While sharing is on, each image's self-attention also sees the subject patches of the
images its row of the share map names (the union of its subjects' masks, minus this
step's dropout). Layers where sharing is off call the host's attention (or the attn1
replace another pack put there first), so they give exactly what the unpatched model gives.
"""
from __future__ import annotations

import torch
from einops import rearrange

from ..consistory_core import image_keys, keep_draw, plan_shared_keys, shared_self_attention, token_grid
from ..consistory_core.sdsa import gather_pool
from .engagement import count
from .host_api import host_attention
from .passes import PassKind, pass_of
from .run_state import StoryRun


class SharedAttention:
    def __init__(self, run: StoryRun):
        self.run = run
        self._plans: dict = {}   # grid -> SharedKeys of the current step
        self._plans_step = None  # the run's step_key the plans belong to

    def __deepcopy__(self, memo):
        return self

    def plan(self, grid: tuple, device):
        """Shared-key plan of this step at one grid: masks, then this step's dropout."""
        run = self.run
        if self._plans_step != run.step_key:
            self._plans, self._plans_step = {}, run.step_key
        if grid not in self._plans:
            subject = run.tracker.union_mask(grid)
            keep = keep_draw(run.sharing.dropout_seed, run.clock.step, subject.shape[0],
                             subject.shape[1], run.sharing.dropout).to(subject.device)
            plan = plan_shared_keys(subject & keep, run.share.to(subject.device))
            plan.flat_index = plan.flat_index.to(device)
            self._plans[grid] = plan
        return self._plans[grid]

    def attend(self, q, k, v, extra, previous=None):
        """attn1 replace: q, k, v (B_total, P, heads*d) -> (B_total, P, heads*d).
        previous: the attn1 replace another pack put at this layer, called per image with
        exactly the keys that image may see."""
        run = self.run
        count(extra)
        sigma = run.sync_patch(extra)
        attention = previous or host_attention
        layer = (*extra["block"], extra["block_index"])
        p = pass_of(extra)
        if p.kind is PassKind.VANILLA:  # query blending's pass: keep q, share nothing
            p.queries[layer] = q
            return attention(q, k, v, extra)
        if p.blend is not None and layer in p.queries:
            count(extra, "blended")
        q = p.blended(layer, q)
        if not run.sharing_at(sigma) or q.shape[0] != extra["original_shape"][0]:
            return attention(q, k, v, extra)  # inactive, or another patch reshaped the batch
        chunks = run.patch_chunks(q.shape[0], extra)
        plan = self.plan(token_grid(tuple(extra["original_shape"][2:]), q.shape[1]), q.device)
        if plan.empty:
            return attention(q, k, v, extra)
        heads = extra["n_heads"]
        split = lambda x: rearrange(x, "b p (h d) -> b h p d", h=heads)
        cached = p.anchor_rows  # replayed anchors' pool entries from an anchor cache
        first = cached.absent if cached is not None else 0
        out = []
        for c in range(len(chunks)):
            rows = chunks.rows(c)
            qc, kc, vc = split(q[rows]), split(k[rows]), split(v[rows])
            pool = self.anchor_pool(cached, layer, chunks.order[c], plan, kc, vc)
            if previous is None:
                oc = rearrange(shared_self_attention(qc, kc, vc, plan, first, pool), "b h p d -> b p (h d)")
            else:  # another pack's attention on exactly the keys each image may see
                merge = lambda x: rearrange(x, "h p d -> 1 p (h d)")
                pk, pv = pool or (None, None)
                oc = torch.cat([previous(merge(qc[i - first]), merge(image_keys(kc, plan, i, first, pk)),
                                         merge(image_keys(vc, plan, i, first, pv)), extra)
                                for i in range(first, first + chunks.images)])
            out.append(oc)
        return torch.cat(out)

    @staticmethod
    def anchor_pool(cached, layer: tuple, chunk: int, plan, k, v) -> tuple | None:
        """The replayed anchors' pool keys and values ((heads, T_a, d) each) where an anchor
        cache gives them (None where the anchors are rows of the call: kept when recording)."""
        if cached is None:
            return None
        if cached.recording:
            before = plan.entries_before(cached.anchors)
            cached.keep("k", layer, chunk, gather_pool(k, plan)[:, :before])
            cached.keep("v", layer, chunk, gather_pool(v, plan)[:, :before])
            return None
        pool_k, pool_v = cached.take("k", layer, chunk, k), cached.take("v", layer, chunk, v)
        if pool_k.shape[1] != plan.entries_before(cached.anchors):
            raise ValueError(f"ConsiStory Use Anchors: the anchor cache has {pool_k.shape[1]} shared keys of the "
                             f"anchors at {layer}, this step's masks {plan.entries_before(cached.anchors)}; "
                             "this is a bug, please report it")
        return pool_k, pool_v
