"""Subject-driven shared self-attention (§4.1, dropout §4.2, anchors §4.4), as an attn1 replace.

While sharing is on, each image's self-attention also sees the subject patches of the
images its row of the share map names (the union of its subjects' masks, minus this
step's dropout). Layers where sharing is off call the host's attention (or the attn1
replace another pack put there first), so they give exactly what the unpatched model gives.

With an anchor cache (§4.4 reuse) the anchors' pool entries come from the cache: kept as
the layer's attention inputs at the pool's patches (the attn1 input patch hands them over
while the anchors are recorded) and projected by the layer's own to_k / to_v when played.
"""
from __future__ import annotations

import torch
from einops import rearrange

from ..consistory_core import image_keys, keep_draw, plan_shared_keys, shared_self_attention, token_grid
from ..consistory_core.sdsa import gather_pool
from .engagement import count
from .host_api import host_attention
from .layers import transformer_block
from .passes import PassKind, pass_of
from .run_state import StoryRun

# how far the cached inputs' projection may be from the keys the host projected (of their
# largest value) and still be the same inputs: a subset's matrix product rounds otherwise
# in the last bits (fp16: ~1e-3); a node that changed the inputs moves them by far more
SAME_INPUTS = 1e-2


class SharedAttention:
    def __init__(self, run: StoryRun, diffusion_model=None):
        self.run, self.diffusion_model = run, diffusion_model
        self._modules: dict = {}  # layer -> its attn1 module (to_k / to_v)
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
            pool = self.anchor_pool(cached, layer, chunks.order[c], plan, kc, vc, rows)
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
    def keep_inputs(n, context, value, extra):
        """attn1 input patch: a recording call's attention inputs (B, P, C) into its cache
        access, for ``anchor_pool``; changes nothing."""
        cached = pass_of(extra).anchor_rows
        if cached is not None and cached.recording:
            cached.inputs[(*extra["block"], extra["block_index"])] = (context, value)
        return n, context, value

    def attn1(self, layer: tuple):
        if layer not in self._modules:
            self._modules[layer] = transformer_block(self.diffusion_model, *layer).attn1
        return self._modules[layer]

    def anchor_pool(self, cached, layer: tuple, chunk: int, plan, k, v, rows: slice) -> tuple | None:
        """The replayed anchors' pool keys and values ((heads, T_a, d) each) where an anchor
        cache gives them (None where the anchors are rows of the call: kept when recording).
        k, v (n, heads, P, d): the chunk's; rows: the chunk's rows of the call."""
        if cached is None:
            return None
        if cached.recording:
            self.keep_pool(cached, layer, chunk, plan, k, v, rows)
            return None
        if cached.has("x", layer, chunk):
            x = cached.take("x", layer, chunk, k)
            xv = cached.take("xv", layer, chunk, v) if cached.has("xv", layer, chunk) else x
            pool_k, pool_v = self.project(layer, x, xv, k.shape[1])
        else:
            pool_k, pool_v = cached.take("k", layer, chunk, k), cached.take("v", layer, chunk, v)
        if pool_k.shape[1] != plan.entries_before(cached.anchors):
            raise ValueError(f"ConsiStory Use Anchors: the anchor cache has {pool_k.shape[1]} shared keys of the "
                             f"anchors at {layer}, this step's masks {plan.entries_before(cached.anchors)}; "
                             "this is a bug, please report it")
        return pool_k, pool_v

    def project(self, layer: tuple, x: torch.Tensor, xv: torch.Tensor, heads: int) -> tuple:
        """The layer's keys and values (heads, T, d) of attention inputs x, xv (T, C)."""
        attn1 = self.attn1(layer)
        split = lambda t: rearrange(t, "t (h d) -> h t d", h=heads)
        return split(attn1.to_k(x)), split(attn1.to_v(xv))

    def keep_pool(self, cached, layer: tuple, chunk: int, plan, k, v, rows: slice) -> None:
        """Keeps the recorded anchors' pool at a layer: their attention inputs where those are
        what the host projected k and v from (the value's too where it is another tensor),
        else k and v themselves."""
        before = plan.entries_before(cached.anchors)
        pool_k, pool_v = gather_pool(k, plan)[:, :before], gather_pool(v, plan)[:, :before]
        inputs = cached.inputs.get(layer)
        if inputs is not None and self.diffusion_model is not None:
            pick = lambda t: gather_pool(t[rows].unsqueeze(1), plan)[0, :before]  # (T_a, C)
            context, value = inputs
            x = pick(context)
            xv = x if value is context else pick(value)
            again = self.project(layer, x, xv, k.shape[1])
            if all(a.shape == b.shape and (a.numel() == 0 or (a - b).abs().amax() <= SAME_INPUTS * b.abs().amax())
                   for a, b in zip(again, (pool_k, pool_v))):
                cached.keep("x", layer, chunk, x)
                if xv is not x:
                    cached.keep("xv", layer, chunk, xv)
                return
        cached.keep("k", layer, chunk, pool_k)
        cached.keep("v", layer, chunk, pool_v)
