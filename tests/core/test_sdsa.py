"""Tests for consistory_core.sdsa (subject-driven shared self-attention) against a naive
full masked softmax over all N*P keys."""
import math

import pytest
import torch
import torch.nn.functional as F

from consistory_core.sdsa import (SharedKeys, anchor_mapping, image_keys, plan_shared_keys,
                                  shared_self_attention)


def naive_visible(i, subject, share):
    """bool list over the N*P keys (j-major): own patches always, patch p of image j != i iff
    share[i, j] and subject[j, p]."""
    n, p = subject.shape
    vis = []
    for j in range(n):
        for q in range(p):
            vis.append(j == i or (bool(share[i, j]) and bool(subject[j, q])))
    return vis


def naive_attention(q, k, v, subject, share):
    """For each image and head: scores over every patch of every image, -inf on invisible
    keys, explicit softmax, times V. float64."""
    n, h, p, d = q.shape
    out = torch.zeros(n, h, p, d, dtype=torch.float64)
    for i in range(n):
        vis = naive_visible(i, subject, share)
        for hh in range(h):
            keys = torch.cat([k[j, hh] for j in range(n)]).double()    # (N*P, d)
            vals = torch.cat([v[j, hh] for j in range(n)]).double()
            scores = q[i, hh].double() @ keys.T / math.sqrt(d)         # (P, N*P)
            for col, ok in enumerate(vis):
                if not ok:
                    scores[:, col] = float("-inf")
            m = scores.max(dim=1, keepdim=True).values
            e = torch.exp(scores - m)
            probs = e / e.sum(dim=1, keepdim=True)
            out[i, hh] = probs @ vals
    return out


def naive_anchor_mapping(n, anchors):
    share = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if anchors == 0 or anchors >= n:
                share[i, j] = True
            else:
                share[i, j] = j < anchors
    return share


def _qkv(n, h=2, p=16, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, h, p, d, generator=g) * 1.5 for _ in range(3))


def _uneven_masks(n, p, seed):
    g = torch.Generator().manual_seed(seed)
    frac = torch.linspace(0.15, 0.8, n)
    return torch.rand(n, p, generator=g) < frac[:, None]


# ---------------------------------------------------------------- anchor_mapping

@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("anchors", [0, 1, 2, 5, 7])
def test_anchor_mapping(n, anchors):
    """anchors 0 or >= N: all-to-all; else everyone sees only the anchors; diagonal False."""
    share = anchor_mapping(n, anchors)
    assert share.dtype == torch.bool and share.shape == (n, n)
    assert torch.equal(share, naive_anchor_mapping(n, anchors))


def test_anchor_mapping_written_out():
    """N=4 with two anchors, spelled out."""
    expected = torch.tensor([[0, 1, 0, 0],
                             [1, 0, 0, 0],
                             [1, 1, 0, 0],
                             [1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(anchor_mapping(4, 2), expected)
    assert torch.equal(anchor_mapping(3, 1), torch.tensor([[0, 0, 0], [1, 0, 0], [1, 0, 0]], dtype=torch.bool))


# ---------------------------------------------------------------- shared_self_attention

def _cases():
    p = 16
    cases = []
    for n in (1, 2, 4):
        for anchors in sorted({0, 1, 2, n}):
            cases.append((n, anchors, "uneven"))
        cases.append((n, 0, "empty"))
        cases.append((n, 0, "full"))
        cases.append((n, 0, "one_empty"))
    return [(n, a, kind, p) for n, a, kind in cases]


def _subject(kind, n, p, seed):
    if kind == "uneven":
        return _uneven_masks(n, p, seed)
    if kind == "empty":
        return torch.zeros(n, p, dtype=torch.bool)
    if kind == "full":
        return torch.ones(n, p, dtype=torch.bool)
    m = _uneven_masks(n, p, seed)
    m[0] = False
    return m


@pytest.mark.parametrize("n,anchors,kind,p", _cases())
def test_shared_attention_matches_naive(n, anchors, kind, p):
    """SDSA output equals the naive masked softmax over all N*P keys to 1e-5."""
    q, k, v = _qkv(n, p=p, seed=n * 10 + anchors)
    subject = _subject(kind, n, p, seed=n + 100 * anchors)
    share = anchor_mapping(n, anchors)
    out = shared_self_attention(q, k, v, plan_shared_keys(subject, share))
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out.double(), naive_attention(q, k, v, subject, share),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_shared_attention_arbitrary_share_matrix(seed):
    """Any share matrix with a False diagonal (not just anchor layouts) matches the naive reference."""
    g = torch.Generator().manual_seed(1000 + seed)
    n, p = 4, 12
    q, k, v = _qkv(n, p=p, seed=seed)
    share = torch.rand(n, n, generator=g) < 0.5
    share.fill_diagonal_(False)
    subject = torch.rand(n, p, generator=g) < 0.4
    out = shared_self_attention(q, k, v, plan_shared_keys(subject, share))
    torch.testing.assert_close(out.double(), naive_attention(q, k, v, subject, share),
                               rtol=1e-5, atol=1e-5)


def test_sharing_actually_changes_the_output():
    """With subject patches shared the output differs from plain self-attention (the
    reference comparison is not vacuous)."""
    n, p = 2, 16
    q, k, v = _qkv(n, p=p, seed=3)
    subject = _uneven_masks(n, p, 3)
    shared = shared_self_attention(q, k, v, plan_shared_keys(subject, anchor_mapping(n)))
    plain = F.scaled_dot_product_attention(q, k, v)
    assert (shared - plain).abs().max() > 1e-3


def test_shared_attention_half_precision():
    """bf16 inputs stay bf16 and match the fp64 reference to bf16 precision."""
    n, p = 3, 16
    q, k, v = (x.bfloat16() for x in _qkv(n, p=p, seed=9))
    subject = _uneven_masks(n, p, 9)
    share = anchor_mapping(n, 1)
    out = shared_self_attention(q, k, v, plan_shared_keys(subject, share))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), naive_attention(q, k, v, subject, share),
                               rtol=2e-2, atol=2e-2)


def plain_attention(q, k, v):
    """Per-image softmax(q k^T / sqrt(d)) v with explicit exp/sum, float64."""
    n, h, p, d = q.shape
    out = torch.zeros(n, h, p, d, dtype=torch.float64)
    for i in range(n):
        for hh in range(h):
            s = q[i, hh].double() @ k[i, hh].double().T / math.sqrt(d)
            e = torch.exp(s - s.max(dim=1, keepdim=True).values)
            out[i, hh] = (e / e.sum(dim=1, keepdim=True)) @ v[i, hh].double()
    return out


@pytest.mark.parametrize("subject_kind,share_kind", [
    ("uneven", "none"), ("empty", "all"), ("full", "n1"), ("uneven_nonanchor", "anchor2")])
def test_nothing_shared_equals_plain_attention(subject_kind, share_kind):
    """When no image sees another's patch, the plan is empty and SDSA is plain attention."""
    n, p = 4, 16
    if share_kind == "n1":
        n = 1
    q, k, v = _qkv(n, p=p, seed=21)
    subject = {"uneven": lambda: _uneven_masks(n, p, 21),
               "empty": lambda: torch.zeros(n, p, dtype=torch.bool),
               "full": lambda: torch.ones(n, p, dtype=torch.bool),
               "uneven_nonanchor": lambda: torch.cat([torch.zeros(2, p, dtype=torch.bool),
                                                      _uneven_masks(n - 2, p, 21)])}[subject_kind]()
    share = {"none": lambda: torch.zeros(n, n, dtype=torch.bool),
             "all": lambda: anchor_mapping(n),
             "n1": lambda: anchor_mapping(1),
             "anchor2": lambda: anchor_mapping(n, 2)}[share_kind]()
    plan = plan_shared_keys(subject, share)
    assert plan.empty
    out = shared_self_attention(q, k, v, plan)
    torch.testing.assert_close(out.double(), plain_attention(q, k, v), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- plan / image_keys

@pytest.mark.parametrize("n,anchors,kind,p", _cases())
def test_image_keys_equal_naive_visible_keys(n, anchors, kind, p):
    """image_keys(k, plan, i) is own P keys then the other images' visible keys, in
    (image, patch) order — exactly the naive visible list."""
    q, k, v = _qkv(n, p=p, seed=n * 7 + anchors)
    subject = _subject(kind, n, p, seed=n + 100 * anchors)
    share = anchor_mapping(n, anchors)
    plan = plan_shared_keys(subject, share)
    for i in range(n):
        vis = naive_visible(i, subject, share)
        own = [k[i, :, t] for t in range(p)]
        others = [k[j, :, t] for j in range(n) for t in range(p) if j != i and vis[j * p + t]]
        expected = torch.stack(own + others, dim=1)                      # (heads, P+T_i, d)
        assert torch.equal(image_keys(k, plan, i), expected)
        assert torch.equal(image_keys(v, plan, i),
                           torch.stack([v[i, :, t] for t in range(p)]
                                       + [v[j, :, t] for j in range(n) for t in range(p)
                                          if j != i and vis[j * p + t]], dim=1))


@pytest.mark.parametrize("n,anchors,kind,p", _cases())
def test_plan_empty_iff_no_cross_image_visibility(n, anchors, kind, p):
    """SharedKeys.empty is True exactly when no image sees a patch of another image."""
    subject = _subject(kind, n, p, seed=n + 100 * anchors)
    share = anchor_mapping(n, anchors)
    plan = plan_shared_keys(subject, share)
    sees_other = any(naive_visible(i, subject, share)[j * p + t]
                     for i in range(n) for j in range(n) if j != i for t in range(p))
    assert isinstance(plan, SharedKeys)
    assert plan.empty == (not sees_other)


def test_plan_empty_with_random_share():
    """empty agrees with the naive visibility for random share matrices and masks."""
    g = torch.Generator().manual_seed(77)
    seen = set()
    for _ in range(60):
        n, p = 3, 5
        share = torch.rand(n, n, generator=g) < 0.3
        share.fill_diagonal_(False)
        subject = torch.rand(n, p, generator=g) < 0.25
        sees_other = any(naive_visible(i, subject, share)[j * p + t]
                         for i in range(n) for j in range(n) if j != i for t in range(p))
        assert plan_shared_keys(subject, share).empty == (not sees_other)
        seen.add(sees_other)
    assert seen == {True, False}


def test_bias_mask_layout():
    """bias is (N,1,1,P+T): 0 on own keys and allowed pool keys, -inf elsewhere."""
    n, p = 3, 4
    subject = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    share = anchor_mapping(n, 2)
    plan = plan_shared_keys(subject, share)
    bias = plan.bias(torch.float32, torch.device("cpu"))
    t = plan.flat_index.numel()
    assert bias.shape == (n, 1, 1, p + t)
    # pool = subject patches of the anchors (images 0 and 1): flat 0, 3, 5
    assert plan.flat_index.tolist() == [0, 3, 5]
    expected_pool_visible = [[False, False, True], [True, True, False], [True, True, True]]
    for i in range(n):
        row = bias[i, 0, 0]
        assert (row[:p] == 0).all()
        for c in range(t):
            assert (row[p + c] == 0).item() == expected_pool_visible[i][c]
            if not expected_pool_visible[i][c]:
                assert row[p + c].item() == float("-inf")


def test_share_with_true_diagonal_does_not_double_own_keys():
    """Regression: a share matrix with a True diagonal (legal input; only anchor_mapping
    guarantees a False one) must not put an image's own subject keys in its key set twice
    (own + pool): the output equals the naive reference, where own keys count once."""
    n, p = 2, 16
    q, k, v = _qkv(n, p=p, seed=5)
    subject = _uneven_masks(n, p, 5)
    share = torch.ones(n, n, dtype=torch.bool)      # diagonal True
    expected = naive_attention(q, k, v, subject, share)  # own keys counted once
    out = shared_self_attention(q, k, v, plan_shared_keys(subject, share))
    err = (out.double() - expected).abs().max().item()
    assert err < 1e-5, f"own subject keys counted twice: max abs error {err:.3g}"
