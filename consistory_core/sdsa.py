"""Subject-driven shared self-attention, SDSA (paper §4.1, anchors §4.4).

Image i's queries attend to all of its own keys plus the subject keys of the images it
is mapped to:  A_i = softmax(Q_i [K_1..K_N]^T / sqrt(d) + log M_i),
M_i = [M_1 .. 1 .. M_N]. Keys and values come from the same CFG chunk.

No (N·P)x(N·P) mask is built: the subject keys of the source images are gathered once
into a pool of T keys, every image attends to [own P keys ; pool], and a (N, 1, 1, P+T)
additive mask hides the pool entries an image may not see (its own, dropped, unmapped).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def anchor_mapping(images: int, anchors: int = 0) -> torch.Tensor:
    """share (N, N) bool: share[i, j] = image i may see image j's subject patches.

    anchors = 0 (or >= N): every image shares with every other. Otherwise the first
    ``anchors`` images share with each other and every other image sees the anchors only.
    The diagonal is False: an image always sees all of its own patches anyway.
    """
    share = torch.ones(images, images, dtype=torch.bool)
    if 0 < anchors < images:
        share[:, anchors:] = False
    share.fill_diagonal_(False)
    return share


@dataclass
class SharedKeys:
    """Which keys of a chunk each image may see beyond its own, for one grid and step.

    flat_index (T,): positions in the chunk's flattened (N*P) patches of the pool keys.
    allowed (N, T): image i may attend to pool key t.
    """
    images: int
    tokens: int
    flat_index: torch.Tensor
    allowed: torch.Tensor
    _bias: dict = field(default_factory=dict, repr=False)
    _before: dict = field(default_factory=dict, repr=False)

    def entries_before(self, image: int) -> int:
        """How many pool entries belong to the images before ``image`` (the pool is in image
        order); counted once per plan (every layer asks, and on a GPU counting waits for it)."""
        if image not in self._before:
            self._before[image] = int((self.flat_index < image * self.tokens).sum())
        return self._before[image]

    @property
    def empty(self) -> bool:
        """True when no image sees anything but itself (plain self-attention)."""
        return not bool(self.allowed.any())

    def bias(self, dtype: torch.dtype, device: torch.device, own_keys: int | None = None,
             first: int = 0, last: int | None = None) -> torch.Tensor:
        """Additive mask (last - first, 1, 1, own + T_last) of the images first .. last - 1
        (default: all): 0 where visible, -inf where hidden, over their own keys and the pool
        entries of the images before ``last``; ``own_keys``: how many keys an image has of its
        own where not P (a DiT's joint sequence)."""
        key = (dtype, device, own_keys)
        if key not in self._bias:
            own = torch.ones(self.images, own_keys or self.tokens, dtype=torch.bool, device=device)
            visible = torch.cat([own, self.allowed.to(device)], dim=1)
            bias = torch.zeros(visible.shape, dtype=dtype, device=device)
            bias.masked_fill_(~visible, float("-inf"))
            self._bias[key] = bias[:, None, None, :]
        last = self.images if last is None else last
        bias = self._bias[key][first:last]
        return bias if last == self.images else bias[..., :(own_keys or self.tokens) + self.entries_before(last)]


def plan_shared_keys(subject: torch.Tensor, share: torch.Tensor) -> SharedKeys:
    """subject (N, P) bool (subject patches that survived dropout), share (N, N) bool.

    The diagonal of ``share`` is ignored: an image's own patches are always in its keys.
    """
    n, p = subject.shape
    share = share & ~torch.eye(n, dtype=torch.bool, device=share.device)
    sources = share.any(0)
    pool = subject & sources[:, None]
    flat_index = pool.reshape(-1).nonzero().squeeze(1)
    owner = flat_index // p
    allowed = share[:, owner]
    return SharedKeys(n, p, flat_index, allowed)


def gather_pool(x: torch.Tensor, plan: SharedKeys, first: int = 0,
                cached: torch.Tensor | None = None) -> torch.Tensor:
    """The pool's entries of the images before ``first + n`` (heads, T, d). x (n, heads, P, d):
    the chunk's images first .. first + n - 1 (all of them, or the anchors alone when an
    anchor cache records them); cached (heads, T_first, d): the entries of the images before
    ``first``, kept from an earlier call (reused anchors, §4.4); None when first is 0."""
    n, h, p, d = x.shape
    index = plan.flat_index.to(x.device)
    if first + n < plan.images:
        index = index[:plan.entries_before(first + n)]
    if first:
        index = index[plan.entries_before(first):] - first * p
    present = x.transpose(0, 1).reshape(h, n * p, d).index_select(1, index)
    return present if cached is None else torch.cat([cached.to(present), present], dim=1)


def shared_self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SharedKeys,
                          first: int = 0, cached: tuple | None = None) -> torch.Tensor:
    """q, k, v (n, heads, P, d) of one CFG chunk's images first .. first + n - 1 -> out (n,
    heads, P, d); cached: the pool keys and values of the images before ``first``
    ((heads, T_first, d) each), see ``gather_pool``."""
    n = q.shape[0]
    if plan.flat_index.numel() == 0:
        return F.scaled_dot_product_attention(q, k, v)
    ck, cv = cached or (None, None)
    k_ext = torch.cat([k, gather_pool(k, plan, first, ck).unsqueeze(0).expand(n, -1, -1, -1)], dim=2)
    v_ext = torch.cat([v, gather_pool(v, plan, first, cv).unsqueeze(0).expand(n, -1, -1, -1)], dim=2)
    return F.scaled_dot_product_attention(q, k_ext, v_ext, attn_mask=plan.bias(q.dtype, q.device, None, first,
                                                                                first + n))


def image_keys(k: torch.Tensor, plan: SharedKeys, image: int, first: int = 0,
               cached: torch.Tensor | None = None) -> torch.Tensor:
    """The exact keys (or values) image ``image`` sees: (heads, P + T_i, d), no mask needed;
    k (n, heads, P, d) and cached as in ``gather_pool``."""
    pool = gather_pool(k, plan, first, cached)
    pool = pool[:, plan.allowed[image, :pool.shape[1]].to(k.device)]
    return torch.cat([k[image - first], pool], dim=1)


def joint_pool(k: torch.Tensor, v: torch.Tensor, plan: SharedKeys, text: int, first: int = 0,
               cached: tuple | None = None, reposition=None) -> tuple:
    """The pool a DiT's image queries draw from (§4.1; reused anchors §4.4): the subject image
    keys (moved by ``reposition``) and values of the images before ``first + n``, (heads, T, d)
    each. k, v (n, heads, L, d): one CFG chunk's joint sequences of images first .. first + n - 1
    ([text ; image ; ...], see ``shared_joint_attention``); cached: the pool keys (already moved)
    and values of the images before ``first`` ((heads, T_first, d) each), kept from an earlier
    call, None when first is 0. reposition: (heads, T, d) -> (heads, T, d), or None."""
    image = slice(text, text + plan.tokens)
    ck, cv = cached or (None, None)
    pool_k = gather_pool(k[:, :, image], plan, first)
    if reposition is not None and pool_k.shape[1]:  # (no entries: the new images of an anchor cache's call)
        pool_k = reposition(pool_k)
    if ck is not None:
        pool_k = torch.cat([ck.to(pool_k), pool_k], dim=1)
    return pool_k, gather_pool(v[:, :, image], plan, first, cv)


def shared_joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SharedKeys, text: int,
                           first: int = 0, pool: tuple | None = None, reposition=None) -> torch.Tensor:
    """SDSA on a DiT's joint attention (Flux; the paper's §4.1 on [text ; image] sequences).

    q, k, v (n, heads, L, d): one CFG chunk's joint sequences of images first .. first + n - 1,
    [text (``text`` tokens) ; image (plan.tokens) ; anything after, e.g. reference tokens],
    keys already carrying their positions (RoPE). The image's queries (and those after it)
    attend to all L keys of their own sequence plus the pool of other images' subject image
    keys the plan allows; text queries attend to their own sequence only, as unpatched.
    pool: the pool keys and values ((heads, T, d) each) of the images before first + n, as
    ``joint_pool`` gives them (with the anchors' entries kept by an anchor cache, §4.4); None:
    ``joint_pool`` of k, v (first 0). reposition: a function (heads, T, d) -> (heads, T, d)
    applied to the pool's keys where the pool is computed here (the positional shift,
    ``consistory_core.positions``), or None to keep their own positions.
    Returns (n, heads, L, d)."""
    n = q.shape[0]
    if plan.flat_index.numel() == 0:
        return F.scaled_dot_product_attention(q, k, v)
    pool_k, pool_v = pool if pool is not None else joint_pool(k, v, plan, text, reposition=reposition)
    k_ext = torch.cat([k, pool_k.unsqueeze(0).expand(n, -1, -1, -1)], dim=2)
    v_ext = torch.cat([v, pool_v.unsqueeze(0).expand(n, -1, -1, -1)], dim=2)
    bias = plan.bias(q.dtype, q.device, k.shape[2], first, first + n)
    out_text = F.scaled_dot_product_attention(q[:, :, :text], k, v)
    out_image = F.scaled_dot_product_attention(q[:, :, text:], k_ext, v_ext, attn_mask=bias)
    return torch.cat([out_text, out_image], dim=2)
