"""Tests for consistory_core.masks (subject maps and the sliding-window mask tracker)."""
import math

import pytest
import torch
import torch.nn.functional as F

from consistory_core.masks import (SubjectMaskTracker, masks_from_maps, subject_token_maps,
                                   token_weights)


# ---------------------------------------------------------------- token_weights

def test_token_weights_against_loop():
    """Each word's column holds 1/(#distinct positions) at its positions, 0 elsewhere."""
    positions = [[[1, 2], [5]], [[3], [0, 7, 84, 80]], [[2, 2, 4], [6]]]
    L = 90
    w = token_weights(positions, L)
    assert w.shape == (3, L, 2) and w.dtype == torch.float32
    for i in range(3):
        for k in range(2):
            pos = set(positions[i][k])
            for t in range(L):
                expected = 1.0 / len(pos) if t in pos else 0.0
                assert w[i, t, k].item() == pytest.approx(expected, abs=1e-7), (i, t, k)


def test_token_weights_errors():
    """Empty word, out-of-context position, and ragged word lists are rejected."""
    with pytest.raises(ValueError, match="no tokens"):
        token_weights([[[1], []]], 10)
    with pytest.raises(ValueError, match="outside"):
        token_weights([[[10]]], 10)
    with pytest.raises(ValueError, match="same subject words"):
        token_weights([[[1], [2]], [[1]]], 10)


# ---------------------------------------------------------------- subject_token_maps

def naive_subject_maps(q, k, heads, positions):
    """(N, K, P): per image, per head explicit softmax over tokens, head mean, word = mean
    of its distinct position columns. All in float64 loops."""
    n, p, inner = q.shape
    L = k.shape[1]
    d = inner // heads
    K = len(positions[0])
    out = torch.zeros(n, K, p, dtype=torch.float64)
    for i in range(n):
        probs = torch.zeros(p, L, dtype=torch.float64)
        for h in range(heads):
            qh = q[i, :, h * d:(h + 1) * d].double()
            kh = k[i, :, h * d:(h + 1) * d].double()
            for a in range(p):
                scores = [float((qh[a] * kh[t]).sum()) / math.sqrt(d) for t in range(L)]
                m = max(scores)
                ex = [math.exp(s - m) for s in scores]
                z = sum(ex)
                for t in range(L):
                    probs[a, t] += ex[t] / z / heads
        for j in range(K):
            pos = sorted(set(positions[i][j]))
            for t in pos:
                out[i, j] += probs[:, t] / len(pos)
    return out


def test_subject_token_maps_against_naive():
    """Maps equal a per-image per-head explicit softmax, head mean, word-column mean."""
    torch.manual_seed(0)
    n, p, L, heads, d = 2, 12, 9, 3, 4
    q = torch.randn(n, p, heads * d) * 2
    k = torch.randn(n, L, heads * d) * 2
    positions = [[[1, 2, 3], [5]], [[4], [6, 7]]]
    got = subject_token_maps(q, k, heads, token_weights(positions, L))
    assert got.shape == (n, 2, p) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), naive_subject_maps(q, k, heads, positions),
                               rtol=1e-5, atol=1e-6)


def test_subject_token_maps_half_inputs():
    """fp16 q/k give fp32 maps equal to the naive maps of the same (upcast) values."""
    torch.manual_seed(1)
    n, p, L, heads, d = 2, 8, 6, 2, 4
    q = torch.randn(n, p, heads * d).half()
    k = torch.randn(n, L, heads * d).half()
    positions = [[[0, 3]], [[5]]]
    got = subject_token_maps(q, k, heads, token_weights(positions, L))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), naive_subject_maps(q.float(), k.float(), heads, positions),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- SubjectMaskTracker

def naive_masks(step_means, window, grid, word_subject, naive_otsu, scale=1.0):
    """Mean of the last ``window`` step means, bilinear resize, loop Otsu per (image, word),
    union of words per subject. Returns bool (N, S, h*w)."""
    last = step_means[-window:]
    mean = last[0].clone()
    for m in last[1:]:
        mean = mean + m
    mean = mean / len(last)
    n, K = mean.shape[:2]
    if tuple(mean.shape[2:]) != tuple(grid):
        mean = F.interpolate(mean, size=grid, mode="bilinear", align_corners=False)
    flat = mean.reshape(n, K, -1)
    S = max(word_subject) + 1
    out = torch.zeros(n, S, flat.shape[-1], dtype=torch.bool)
    for i in range(n):
        for j in range(K):
            t = naive_otsu(flat[i, j].tolist()) * scale
            for pix in range(flat.shape[-1]):
                if float(flat[i, j, pix]) > t:
                    out[i, word_subject[j], pix] = True
    return out


def _maps(gen, n, k, grid, hot):
    """Random positive maps with a hot region (a slice over the flattened grid) per word."""
    m = torch.rand(n, k, grid[0] * grid[1], generator=gen) * 0.2
    m[:, :, hot] += 1.0 + torch.rand(n, k, 1, generator=gen)
    return m


def _run_steps(tracker, gen, n, k, grid, layers_per_step, hot_of_step):
    """Push steps (several layers each); return the naive per-step mean maps (N, K, h, w)."""
    step_means = []
    for s, layers in enumerate(layers_per_step):
        maps = [_maps(gen, n, k, grid, hot_of_step(s)) for _ in range(layers)]
        for m in maps:
            tracker.add(m, grid)
        total = maps[0].clone()
        for m in maps[1:]:
            total = total + m
        step_means.append((total / layers).reshape(n, k, *grid))
        tracker.next_step()
    return step_means


def test_masks_from_maps_against_naive(naive_otsu):
    """masks_from_maps = bilinear resize + loop Otsu per (image, word) + union per subject,
    at the native grid, upsampled, downsampled and non-square grids."""
    g = torch.Generator().manual_seed(4)
    n, k = 2, 3
    maps = _maps(g, n, k, (6, 8), slice(10, 26)).reshape(n, k, 6, 8)
    word_subject = [1, 0, 1]
    for grid in [(6, 8), (12, 16), (3, 4), (7, 5)]:
        got = masks_from_maps(maps, grid, word_subject)
        assert got.dtype == torch.bool and got.shape == (n, 2, grid[0] * grid[1])
        assert torch.equal(got, naive_masks([maps], 1, grid, word_subject, naive_otsu))
    assert torch.equal(masks_from_maps(maps, (6, 8), word_subject, 0.6),
                       naive_masks([maps], 1, (6, 8), word_subject, naive_otsu, scale=0.6))


def test_ready_only_after_a_closed_step():
    """ready is False before any step closes, and an empty step does not count."""
    tr = SubjectMaskTracker([0], window=3)
    assert not tr.ready
    tr.next_step()  # nothing added: nothing enters the window
    assert not tr.ready
    tr.add(torch.rand(1, 1, 16), (4, 4))
    assert not tr.ready  # still open
    tr.next_step()
    assert tr.ready


def test_window_keeps_only_last_steps(naive_otsu):
    """After 6 steps with window 3, masks come from the last 3 step means only (the early
    steps put the subject elsewhere, so averaging them would change the masks)."""
    g = torch.Generator().manual_seed(5)
    n, k, grid, W = 2, 3, (6, 8), 3
    word_subject = [0, 0, 1]
    tr = SubjectMaskTracker(word_subject, window=W)
    early, late = slice(0, 12), slice(30, 44)
    means = _run_steps(tr, g, n, k, grid, [1, 2, 3, 1, 2, 2],
                       lambda s: early if s < 3 else late)
    for out_grid in [grid, (12, 16), (9, 5)]:
        got = tr.subject_masks(out_grid)
        assert got.dtype == torch.bool and got.shape == (n, 2, out_grid[0] * out_grid[1])
        assert torch.equal(got, naive_masks(means, W, out_grid, word_subject, naive_otsu))
    # the test can tell the window apart from "all steps"
    assert not torch.equal(tr.subject_masks(grid), naive_masks(means, 6, grid, word_subject, naive_otsu))


def test_window_partially_filled(naive_otsu):
    """With fewer closed steps than the window, all closed steps are averaged."""
    g = torch.Generator().manual_seed(6)
    n, k, grid = 2, 2, (4, 4)
    tr = SubjectMaskTracker([0, 1], window=5)
    means = _run_steps(tr, g, n, k, grid, [2, 1], lambda s: slice(2 + 3 * s, 8 + 3 * s))
    assert torch.equal(tr.subject_masks(grid), naive_masks(means, 5, grid, [0, 1], naive_otsu))
    assert torch.equal(tr.subject_masks((8, 8)), naive_masks(means, 5, (8, 8), [0, 1], naive_otsu))


def test_add_averages_layers_of_one_step(naive_otsu):
    """Several add() calls in one step are averaged (not summed, not last-wins)."""
    g = torch.Generator().manual_seed(7)
    n, k, grid = 2, 2, (4, 6)
    a = torch.rand(n, k, 24, generator=g)
    b = torch.rand(n, k, 24, generator=g) * 3
    c = torch.rand(n, k, 24, generator=g) ** 3
    tr = SubjectMaskTracker([0, 1], window=1)
    for m in (a, b, c):
        tr.add(m, grid)
    expected_mean = ((a + b + c) / 3).reshape(n, k, *grid)
    torch.testing.assert_close(tr.snapshot(), expected_mean)  # open step included
    assert tr.finished() is None  # ... but not a finished one
    tr.next_step()
    torch.testing.assert_close(tr.snapshot(), expected_mean)
    assert torch.equal(tr.finished(), tr.snapshot())
    assert torch.equal(tr.subject_masks(grid), naive_masks([expected_mean], 1, grid, [0, 1], naive_otsu))
    assert not torch.equal(tr.subject_masks(grid),
                           naive_masks([c.reshape(n, k, *grid)], 1, grid, [0, 1], naive_otsu))


def test_add_rejects_mismatched_grids():
    """Layers of one step must share a grid."""
    tr = SubjectMaskTracker([0])
    tr.add(torch.rand(1, 1, 16), (4, 4))
    with pytest.raises(ValueError, match="share a grid"):
        tr.add(torch.rand(1, 1, 64), (8, 8))


def test_cache_invalidated_on_next_step(naive_otsu):
    """Masks are recomputed after next_step (stale masks would keep the old subject place)."""
    g = torch.Generator().manual_seed(8)
    n, k, grid = 2, 2, (5, 5)
    tr = SubjectMaskTracker([0, 1], window=1)
    means = _run_steps(tr, g, n, k, grid, [1], lambda s: slice(0, 8))
    first = tr.subject_masks(grid).clone()
    assert torch.equal(first, naive_masks(means, 1, grid, [0, 1], naive_otsu))
    # adding during the open step does not change the closed window's masks
    extra = _maps(g, n, k, grid, slice(15, 25))
    tr.add(extra, grid)
    assert torch.equal(tr.subject_masks(grid), first)
    tr.next_step()
    second = tr.subject_masks(grid)
    assert torch.equal(second, naive_masks([extra.reshape(n, k, *grid)], 1, grid, [0, 1], naive_otsu))
    assert not torch.equal(second, first)


def test_multi_subject_union_mask(naive_otsu):
    """union_mask is the per-patch OR over subjects, each subject the OR of its words."""
    g = torch.Generator().manual_seed(9)
    n, k, grid = 3, 4, (6, 6)
    word_subject = [1, 0, 2, 1]
    tr = SubjectMaskTracker(word_subject, window=2)
    means = _run_steps(tr, g, n, k, grid, [1, 2, 1], lambda s: slice(4 * s, 4 * s + 10))
    for out_grid in [grid, (12, 12)]:
        subj = naive_masks(means, 2, out_grid, word_subject, naive_otsu)
        assert torch.equal(tr.subject_masks(out_grid), subj)
        union = torch.zeros(n, out_grid[0] * out_grid[1], dtype=torch.bool)
        for i in range(n):
            for s in range(3):
                for pix in range(union.shape[1]):
                    if subj[i, s, pix]:
                        union[i, pix] = True
        assert torch.equal(tr.union_mask(out_grid), union)
        assert union.any() and not union.all()


def test_threshold_scale(naive_otsu):
    """threshold_scale multiplies every Otsu threshold."""
    g = torch.Generator().manual_seed(10)
    n, k, grid = 2, 2, (6, 6)
    tr = SubjectMaskTracker([0, 0], window=4, threshold_scale=0.5)
    means = _run_steps(tr, g, n, k, grid, [1, 1], lambda s: slice(0, 9))
    got = tr.subject_masks(grid)
    assert torch.equal(got, naive_masks(means, 4, grid, [0, 0], naive_otsu, scale=0.5))
    assert not torch.equal(got, naive_masks(means, 4, grid, [0, 0], naive_otsu, scale=1.0))


def test_window_must_be_positive():
    """window < 1 is rejected."""
    with pytest.raises(ValueError):
        SubjectMaskTracker([0], window=0)


def test_given_masks_replace_the_first_images_masks_at_every_grid():
    from consistory_core.masks import with_given_masks
    found = torch.zeros(3, 2, 4 * 4, dtype=torch.bool)
    found[2] = True
    given = torch.zeros(2, 16, 16)
    given[0, :8, :8] = 1.0   # photo 0: top-left quarter
    given[1, :, :6] = 1.0    # photo 1: 6 of 16 columns: half of the second grid column, no more
    out = with_given_masks(found, given, (4, 4))
    expected0 = torch.zeros(4, 4, dtype=torch.bool)
    expected0[:2, :2] = True
    expected1 = torch.zeros(4, 4, dtype=torch.bool)
    expected1[:, :2] = True
    assert torch.equal(out[0, 0].reshape(4, 4), expected0) and torch.equal(out[0, 1], out[0, 0])
    assert torch.equal(out[1, 0].reshape(4, 4), expected1)
    assert torch.equal(out[2], found[2]) and not found[:2].any()  # other images and the input untouched
    assert with_given_masks(found, None, (4, 4)) is found


def test_the_tracker_uses_given_masks_for_shared_attention_and_for_injection():
    from consistory_core.masks import SubjectMaskTracker
    given = torch.ones(1, 8, 8)
    tracker = SubjectMaskTracker([0], window=2, given=given)
    maps = torch.zeros(2, 1, 16)
    maps[:, 0, 5] = 1.0  # one bright patch in both images
    tracker.add(maps, (4, 4))
    tracker.next_step()
    union = tracker.union_mask((4, 4))
    assert union[0].all() and union[1].sum() == 1
    assert torch.equal(tracker.masks_of(maps.reshape(2, 1, 4, 4), (4, 4)).any(1), union)
