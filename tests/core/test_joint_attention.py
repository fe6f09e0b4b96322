"""SDSA on a DiT's joint [text ; image] sequences (consistory_core.sdsa.shared_joint_attention)
and the positional shift of shared keys (consistory_core.positions), against slow references."""
import math

import pytest
import torch
import torch.nn.functional as F

from consistory_core.masks import head_token_maps, subject_token_maps
from consistory_core.positions import rotate_pairs
from consistory_core.sdsa import anchor_mapping, joint_pool, plan_shared_keys, shared_joint_attention

N, HEADS, TEXT, P, EXTRA, D = 3, 2, 5, 6, 2, 8


def naive_joint(q, k, v, subject, share, text, move=lambda x: x):
    """Per image and query: scores over its own L keys and, for image queries only, every
    subject image key of the images it sees (moved by ``move``); explicit softmax, float64."""
    n, h, length, d = q.shape
    out = torch.zeros(q.shape, dtype=torch.float64)
    for i in range(n):
        extra_k = [move(k[j, :, text + p][:, None])[:, 0] for j in range(n) for p in range(P)
                   if j != i and share[i, j] and subject[j, p]]
        extra_v = [v[j, :, text + p] for j in range(n) for p in range(P) if j != i and share[i, j] and subject[j, p]]
        for t in range(length):
            keys = [k[i, :, s] for s in range(length)] + (extra_k if t >= text else [])
            values = [v[i, :, s] for s in range(length)] + (extra_v if t >= text else [])
            kk, vv = torch.stack(keys, 1).double(), torch.stack(values, 1).double()
            w = torch.softmax(q[i, :, t].double()[:, None] @ kk.transpose(1, 2) / math.sqrt(d), -1)
            out[i, :, t] = (w @ vv)[:, 0]
    return out


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(N, HEADS, TEXT + P + EXTRA, D, generator=g) for _ in range(3)]


@pytest.mark.parametrize("anchors", [0, 2])
def test_image_queries_see_the_allowed_subject_keys_and_text_queries_only_their_own(qkv, anchors):
    q, k, v = qkv
    subject = torch.rand(N, P, generator=torch.Generator().manual_seed(1)) > 0.4
    share = anchor_mapping(N, anchors)
    plan = plan_shared_keys(subject, share)
    out = shared_joint_attention(q, k, v, plan, TEXT)
    torch.testing.assert_close(out.double(), naive_joint(q, k, v, subject, share, TEXT), rtol=1e-5, atol=1e-5)
    plain = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out[:, :, :TEXT], plain[:, :, :TEXT])  # text as unpatched
    assert not torch.allclose(out[:, :, TEXT:], plain[:, :, TEXT:])


def test_moved_pool_keys_are_what_the_image_queries_see(qkv):
    q, k, v = qkv
    subject = torch.ones(N, P, dtype=torch.bool)
    share = anchor_mapping(N)
    angle = torch.linspace(0.1, 1.0, D // 2)
    rotation = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], -1).reshape(-1, 2, 2)
    move = lambda x: rotate_pairs(x, rotation)
    out = shared_joint_attention(q, k, v, plan_shared_keys(subject, share), TEXT, reposition=move)
    torch.testing.assert_close(out.double(), naive_joint(q, k, v, subject, share, TEXT, move), rtol=1e-5, atol=1e-5)
    unmoved = shared_joint_attention(q, k, v, plan_shared_keys(subject, share), TEXT)
    assert not torch.allclose(out, unmoved)


def rotation_of(angle: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], -1).reshape(-1, 2, 2)


@pytest.mark.parametrize("share_new", [False, True], ids=["new images see the anchors", "and each other"])
def test_the_anchors_kept_pool_given_to_the_new_images_equals_the_full_batch(share_new):
    """An anchor cache (§4.4): the anchors' moved pool kept from a call on them alone, then
    given to a call on the new images alone, gives every image what one batch gives."""
    n, anchors = 4, 2
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(n, HEADS, TEXT + P + EXTRA, D, generator=g) for _ in range(3))
    subject = torch.rand(n, P, generator=g) > 0.4
    share = torch.zeros(n, n, dtype=torch.bool)
    share[:, :anchors] = True
    share[anchors:, anchors:] = share_new
    plan = plan_shared_keys(subject, share)
    move = lambda x: rotate_pairs(x, rotation_of(torch.linspace(0.1, 1.0, D // 2)))
    full = shared_joint_attention(q, k, v, plan, TEXT, reposition=move)
    kept = joint_pool(k[:anchors], v[:anchors], plan, TEXT, reposition=move)  # the anchors alone
    assert kept[0].shape[1] == plan.entries_before(anchors)
    recorded = shared_joint_attention(q[:anchors], k[:anchors], v[:anchors], plan, TEXT, pool=kept)
    torch.testing.assert_close(recorded, full[:anchors])
    new = slice(anchors, n)
    pool = joint_pool(k[new], v[new], plan, TEXT, first=anchors, cached=kept, reposition=move)
    played = shared_joint_attention(q[new], k[new], v[new], plan, TEXT, first=anchors, pool=pool)
    torch.testing.assert_close(played, full[new])


def test_a_plan_without_shared_keys_is_plain_attention(qkv):
    q, k, v = qkv
    plan = plan_shared_keys(torch.zeros(N, P, dtype=torch.bool), anchor_mapping(N))
    torch.testing.assert_close(shared_joint_attention(q, k, v, plan, TEXT), F.scaled_dot_product_attention(q, k, v))


def test_rotate_pairs_rotates_each_pair_and_rotations_compose():
    x = torch.randn(4, 7, 6)
    a, b = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([0.5, 0.25, -0.7])
    rot = lambda t: torch.stack([torch.cos(t), -torch.sin(t), torch.sin(t), torch.cos(t)], -1).reshape(-1, 2, 2)
    y = rotate_pairs(x, rot(a))
    # pair i: (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    torch.testing.assert_close(y[..., 0::2], x0 * torch.cos(a) - x1 * torch.sin(a))
    torch.testing.assert_close(y[..., 1::2], x0 * torch.sin(a) + x1 * torch.cos(a))
    torch.testing.assert_close(rotate_pairs(y, rot(b)), rotate_pairs(x, rot(a + b)), rtol=1e-5, atol=1e-5)


def test_head_token_maps_equal_the_cross_attention_maps():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(2, 9, 3 * 4, generator=g), torch.randn(2, 5, 3 * 4, generator=g)
    weights = torch.rand(2, 5, 2, generator=g)
    split = lambda x: x.reshape(*x.shape[:2], 3, 4).transpose(1, 2)
    torch.testing.assert_close(head_token_maps(split(q), split(k), weights), subject_token_maps(q, k, 3, weights))
