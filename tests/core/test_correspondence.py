"""Tests for consistory_core.correspondence against slow, loop-based references."""
import math

import pytest
import torch

from consistory_core.correspondence import (
    InjectionPlan,
    gaussian_smooth,
    inject,
    nearest_subject_patches,
    plan_injection,
)
from consistory_core.otsu import otsu_threshold

INF = float("inf")


# ----------------------------------------------------------------------------------------
# references
# ----------------------------------------------------------------------------------------

def naive_gaussian_smooth(features, kernel=3, sigma=1.0):
    """Per image, per channel, per pixel: explicit weighted sum; taps outside the grid add
    nothing (zero padding, as the reference's convolution)."""
    n, c, h, w = features.shape
    half = kernel // 2
    raw = {}
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            raw[(dy, dx)] = math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
    total = sum(raw.values())
    weights = {k: v / total for k, v in raw.items()}
    x = features.double().tolist()
    out = torch.zeros(n, c, h, w, dtype=torch.float64)
    for b in range(n):
        for ch in range(c):
            img = x[b][ch]
            for y in range(h):
                for xx in range(w):
                    s = 0.0
                    for (dy, dx), wt in weights.items():
                        if 0 <= y + dy < h and 0 <= xx + dx < w:
                            s += wt * img[y + dy][xx + dx]
                    out[b, ch, y, xx] = s
    return out


def cosine_distance(a, b):
    """1 - cos(a, b) of two lists of floats, computed explicitly."""
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return 1.0 - dot / (na * nb)


def naive_pair_distances(features):
    """d[i][p][j][q] = 1 - cos(f_i[:, p], f_j[:, q]) for every pair of patches (float64)."""
    n, c, p = features.shape
    cols = [[features[i, :, k].double().tolist() for k in range(p)] for i in range(n)]
    return [[[[cosine_distance(cols[i][a], cols[j][b]) for b in range(p)] for j in range(n)]
             for a in range(p)] for i in range(n)]


def naive_min_distance(features, subject, share, pair=None):
    """For each target i, patch p: min over allowed j != i and subject q of the cosine distance."""
    n, _, p = features.shape
    if pair is None:
        pair = naive_pair_distances(features)
    best = [[INF] * p for _ in range(n)]
    for i in range(n):
        for a in range(p):
            for j in range(n):
                if j == i or not bool(share[i, j]):
                    continue
                for q in range(p):
                    if bool(subject[j, q]) and pair[i][a][j][q] < best[i][a]:
                        best[i][a] = pair[i][a][j][q]
    return best, pair


def naive_inject(out, plan, alpha, first=0):
    """Loop, as the reference: targets first, first + 1, ... in turn, each kept patch taking
    alpha * current[source, index] + (1 - alpha) * current[i, p], where current already holds
    the injected rows of the targets before i."""
    current = out.double().clone()
    n, p, _ = out.shape
    for i in range(first, n):
        row = current[i].clone()
        for a in range(p):
            if bool(plan.keep[i, a]):
                s, q = int(plan.source[i, a]), int(plan.index[i, a])
                row[a] = alpha * current[s, q] + (1 - alpha) * current[i, a]
        current[i] = row
    return current


def random_case(seed, n=4, c=8, p=20, mask_prob=0.5, share_prob=0.7):
    """Random features (N, C, P), subject masks and share matrix from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, p, generator=g)
    subject = torch.rand(n, p, generator=g) < mask_prob
    share = torch.rand(n, n, generator=g) < share_prob
    return features, subject, share


# ----------------------------------------------------------------------------------------
# gaussian_smooth
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 6, 3), (3, 1, 4, 9)])
def test_gaussian_smooth_matches_naive_loop(shape):
    """Default 3x3, sigma=1 blur equals the per-channel loop with zero padding (non-square)."""
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g)
    got = gaussian_smooth(x)
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got.double(), naive_gaussian_smooth(x), rtol=1e-5, atol=1e-5)


def test_gaussian_smooth_other_kernel_and_sigma():
    """A 5x5 kernel with sigma=2 also equals the loop reference (two pixels of zeros)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 6, 8, generator=g)
    got = gaussian_smooth(x, kernel=5, sigma=2.0)
    torch.testing.assert_close(got.double(), naive_gaussian_smooth(x, 5, 2.0), rtol=1e-5, atol=1e-5)


def test_gaussian_smooth_pads_with_zeros():
    """A constant image stays constant inside; a border pixel keeps only the weight of the taps
    inside the grid (the reference's zero padding; reflect padding would keep it constant)."""
    x = torch.tensor([2.5, -1.0, 7.0]).view(1, 3, 1, 1).expand(2, 3, 5, 6).contiguous()
    got = gaussian_smooth(x)
    torch.testing.assert_close(got[..., 1:-1, 1:-1], x[..., 1:-1, 1:-1], rtol=1e-6, atol=1e-6)
    g = [math.exp(-0.5), 1.0, math.exp(-0.5)]
    side = g[0] / sum(g)  # the weight of one row (or column) of taps
    torch.testing.assert_close(got[..., 0, 2], x[..., 0, 2] * (1 - side), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[..., 0, 0], x[..., 0, 0] * (1 - side) ** 2, rtol=1e-6, atol=1e-6)


def test_gaussian_smooth_impulse_gives_normalised_kernel():
    """An interior unit impulse spreads into the explicit normalised Gaussian weights (sum 1)."""
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 3, 3] = 1.0
    got = gaussian_smooth(x).double()[0, 0]
    expected = torch.zeros(7, 7, dtype=torch.float64)
    raw = {(dy, dx): math.exp(-(dx * dx + dy * dy) / 2.0) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    total = sum(raw.values())
    for (dy, dx), v in raw.items():
        expected[3 + dy, 3 + dx] = v / total
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert abs(float(got.sum()) - 1.0) < 1e-6


def test_gaussian_smooth_weights_are_the_float64_kernel_cast_once():
    """The weights are the float64 2-D Gaussian normalised to sum 1, cast to the features'
    dtype once: an interior impulse gives exactly those float32 values."""
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    d = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    w = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / 2)
    assert torch.equal(gaussian_smooth(x)[0, 0, 1:4, 1:4], (w / w.sum()).float())


# ----------------------------------------------------------------------------------------
# nearest_subject_patches
# ----------------------------------------------------------------------------------------

def test_nearest_recovers_known_permutation():
    """When image 1 is a permutation of image 0 (+ tiny noise), each patch matches its twin both ways."""
    g = torch.Generator().manual_seed(0)
    c, p = 16, 30
    f0 = torch.randn(c, p, generator=g)
    perm = torch.randperm(p, generator=g)
    f1 = f0[:, perm] + 1e-4 * torch.randn(c, p, generator=g)
    features = torch.stack([f0, f1])
    subject = torch.ones(2, p, dtype=torch.bool)
    share = torch.ones(2, 2, dtype=torch.bool)
    source, index, distance = nearest_subject_patches(features, subject, share)
    inverse = torch.argsort(perm)
    assert torch.equal(source[0], torch.ones(p, dtype=torch.long))
    assert torch.equal(source[1], torch.zeros(p, dtype=torch.long))
    # f1[:, q] ~ f0[:, perm[q]]: patch p of image 0 -> inverse[p] of image 1; q of image 1 -> perm[q].
    assert torch.equal(index[0], inverse), f"got {index[0].tolist()}, expected {inverse.tolist()}"
    assert torch.equal(index[1], perm), f"got {index[1].tolist()}, expected {perm.tolist()}"
    assert bool((distance.abs() < 1e-5).all())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nearest_sources_lie_inside_source_subject_mask(seed):
    """Wherever a distance is finite, the chosen source patch is inside that source's mask."""
    features, subject, share = random_case(seed, n=5, p=24, mask_prob=0.3)
    share = torch.ones(5, 5, dtype=torch.bool)
    source, index, distance = nearest_subject_patches(features, subject, share)
    finite = torch.isfinite(distance)
    assert bool(finite.any())
    for i in range(5):
        for a in range(24):
            if bool(finite[i, a]):
                s, q = int(source[i, a]), int(index[i, a])
                assert bool(subject[s, q]), f"target ({i},{a}) took ({s},{q}) outside the mask"


def test_nearest_never_uses_own_image_even_with_true_diagonal():
    """An image is never its own source, even with share's diagonal True and itself the best match."""
    g = torch.Generator().manual_seed(4)
    features = torch.randn(3, 8, 15, generator=g)
    subject = torch.ones(3, 15, dtype=torch.bool)
    share = torch.ones(3, 3, dtype=torch.bool)  # diagonal True
    source, _, distance = nearest_subject_patches(features, subject, share)
    for i in range(3):
        assert bool((source[i] != i).all()), f"image {i} used itself: {source[i].tolist()}"
    # Matching itself would give distance 0; random other images cannot.
    assert bool((distance > 1e-3).all())
    # A single image with a True self-share has no source at all.
    _, _, alone = nearest_subject_patches(features[:1], subject[:1], torch.ones(1, 1, dtype=torch.bool))
    assert bool(torch.isinf(alone).all())


def test_nearest_respects_share_matrix_anchors():
    """share[i, j] False means j never appears as a source of i (anchors 0 and 1 only)."""
    features, subject, _ = random_case(6, n=5, p=20, mask_prob=0.6)
    subject[:, 0] = True  # every image has a subject patch
    anchors = {0, 1}
    share = torch.tensor([[j in anchors and j != i for j in range(5)] for i in range(5)])
    source, index, distance = nearest_subject_patches(features, subject, share)
    assert bool(torch.isfinite(distance).all())
    for i in range(5):
        used = set(source[i].tolist())
        allowed = {j for j in range(5) if bool(share[i, j])}
        assert used <= allowed, f"target {i} used {used}, allowed {allowed}"
    # Anchor 0 may only take from anchor 1 and vice versa.
    assert bool((source[0] == 1).all()) and bool((source[1] == 0).all())
    best, _ = naive_min_distance(features, subject, share)
    torch.testing.assert_close(distance.double(), torch.tensor(best, dtype=torch.float64),
                               rtol=1e-5, atol=1e-5)


def test_nearest_target_without_source_gets_inf():
    """A target with no allowed source (no share, or only empty-mask sources) has distance inf."""
    features, subject, _ = random_case(8, n=4, p=10)
    subject[0] = True
    subject[1] = True
    subject[2] = False  # image 2 has no subject patch
    share = torch.zeros(4, 4, dtype=torch.bool)
    share[0, 1] = True   # 0 <- 1: finite
    share[1, 2] = True   # 1 <- only the empty-mask image 2: inf
    share[3, 3] = True   # 3 <- only itself: inf
    # row 2: nothing shared: inf
    _, _, distance = nearest_subject_patches(features, subject, share)
    assert bool(torch.isfinite(distance[0]).all())
    for i in (1, 2, 3):
        assert bool(torch.isinf(distance[i]).all()), f"target {i}: {distance[i].tolist()}"


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
def test_nearest_matches_naive_loop(seed):
    """Distances equal the explicit per-pair cosine minimum and (source, index) attains it."""
    n, p = 4, 14
    features, subject, share = random_case(seed, n=n, c=6, p=p, mask_prob=0.5, share_prob=0.6)
    if seed == 12:
        subject[1] = False  # an image with an empty mask
    source, index, distance = nearest_subject_patches(features, subject, share)
    assert source.dtype == torch.long and index.dtype == torch.long
    assert source.shape == index.shape == distance.shape == (n, p)
    best, pair = naive_min_distance(features, subject, share)
    expected = torch.tensor(best, dtype=torch.float64)
    assert torch.equal(torch.isinf(distance), torch.isinf(expected))
    finite = torch.isfinite(expected)
    torch.testing.assert_close(distance.double()[finite], expected[finite], rtol=1e-5, atol=1e-5)
    for i in range(n):
        for a in range(p):
            if not bool(finite[i, a]):
                continue
            s, q = int(source[i, a]), int(index[i, a])
            assert s != i and bool(share[i, s]) and bool(subject[s, q]), (i, a, s, q)
            assert abs(pair[i][a][s][q] - best[i][a]) < 1e-5, (i, a, s, q)


def test_nearest_scale_invariant_features():
    """Cosine distance ignores per-patch scale: rescaling patches leaves the result unchanged."""
    features, subject, share = random_case(20, n=3, p=12, mask_prob=0.7, share_prob=1.0)
    g = torch.Generator().manual_seed(21)
    scaled = features * (torch.rand(3, 1, 12, generator=g) * 5 + 0.2)
    _, _, d0 = nearest_subject_patches(features, subject, share)
    _, _, d1 = nearest_subject_patches(scaled, subject, share)
    best, _ = naive_min_distance(features, subject, share)
    torch.testing.assert_close(d1.double(), torch.tensor(best, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d0.double(), torch.tensor(best, dtype=torch.float64), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------
# plan_injection
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [30, 31, 32, 33, 34])
def test_plan_keep_matches_naive_otsu_rule(seed, naive_otsu):
    """keep == mask & finite distance & distance < the naive Otsu threshold of the best
    distances of all the target's patches (the reference's rule, background included)."""
    n, p = 4, 24
    features, subject, share = random_case(seed, n=n, c=6, p=p, mask_prob=0.6, share_prob=0.7)
    plan = plan_injection(features, subject, share)
    assert isinstance(plan, InjectionPlan)
    assert plan.keep.dtype == torch.bool and plan.keep.shape == (n, p)
    # The plan's distances are the naive minima (checked independently of the code).
    best, _ = naive_min_distance(features, subject, share)
    expected_d = torch.tensor(best, dtype=torch.float64)
    assert torch.equal(torch.isinf(plan.distance), torch.isinf(expected_d))
    fin = torch.isfinite(expected_d)
    torch.testing.assert_close(plan.distance.double()[fin], expected_d[fin], rtol=1e-5, atol=1e-5)
    for i in range(n):
        matched = [a for a in range(p) if math.isfinite(float(plan.distance[i, a]))]
        cand = [a for a in matched if bool(subject[i, a])]
        if len(matched) < 2:
            expected = set(cand)
        else:
            thr = naive_otsu([float(plan.distance[i, a]) for a in matched])
            expected = {a for a in cand if float(plan.distance[i, a]) < thr}
        got = {a for a in range(p) if bool(plan.keep[i, a])}
        assert got == expected, f"target {i}: kept {sorted(got)}, expected {sorted(expected)}"


def test_plan_keep_bimodal_distances(naive_otsu):
    """Near-twin patches (small distance) are kept and unrelated ones (large distance) are not."""
    g = torch.Generator().manual_seed(40)
    c, p = 16, 20
    f1 = torch.randn(c, p, generator=g)
    f0 = torch.randn(c, p, generator=g)
    f0[:, :8] = f1[:, :8] + 1e-3 * torch.randn(c, 8, generator=g)  # 8 twins of image 1
    features = torch.stack([f0, f1])
    subject = torch.ones(2, p, dtype=torch.bool)
    share = torch.tensor([[False, True], [False, False]])
    plan = plan_injection(features, subject, share)
    expected = torch.zeros(p, dtype=torch.bool)
    expected[:8] = True
    assert torch.equal(plan.keep[0], expected), plan.keep[0].tolist()
    assert not bool(plan.keep[1].any())  # target 1 has no source


@pytest.mark.parametrize("seed", [50, 51, 52])
def test_plan_keep_inside_target_mask(seed):
    """Kept patches are always inside the target's subject mask and have a finite distance."""
    features, subject, share = random_case(seed, n=5, p=30, mask_prob=0.4, share_prob=0.8)
    plan = plan_injection(features, subject, share)
    assert bool(plan.keep.any())
    assert not bool((plan.keep & ~subject).any())
    assert bool(torch.isfinite(plan.distance[plan.keep]).all())


def test_plan_threshold_counts_the_background_and_keeps_only_masked_patches(naive_otsu):
    """A target with one masked patch: the threshold comes from all 12 patches' distances, and
    only that patch can be kept; an empty mask or no source keeps nothing."""
    features, _, _ = random_case(60, n=4, p=12)
    subject = torch.zeros(4, 12, dtype=torch.bool)
    subject[0, 5] = True          # one masked patch
    subject[1] = True             # source for everyone
    subject[3, :4] = True         # masked but without any source
    share = torch.zeros(4, 4, dtype=torch.bool)
    share[0, 1] = share[1, 0] = share[2, 1] = True
    plan = plan_injection(features, subject, share)
    threshold = naive_otsu([float(d) for d in plan.distance[0]])
    assert plan.keep[0].tolist() == [a == 5 and float(plan.distance[0, 5]) < threshold for a in range(12)]
    assert not bool(plan.keep[2].any())   # empty mask
    assert not bool(plan.keep[3].any())   # no source
    assert plan.keep[1].sum() >= 1        # all masked: Otsu keeps the low side


def test_a_well_matched_subject_is_kept_whole_not_split_by_its_own_otsu():
    """Subject patches that all match well (small distances) against a background that
    matches badly: the reference's rule keeps the subject patches (all but possibly the one
    in Otsu's threshold bin, above its centre) and no background; an Otsu over the subject
    patches alone splits them and injects into far fewer."""
    g = torch.Generator().manual_seed(7)
    c, p = 32, 40
    source = torch.randn(c, p, generator=g)
    target = torch.randn(c, p, generator=g)  # background: unrelated features
    noise = torch.linspace(0.05, 0.4, 16)  # subject patches: twins of source patches, a spread of noise
    target[:, :16] = source[:, :16] + noise[None] * torch.randn(c, 16, generator=g)
    subject = torch.zeros(2, p, dtype=torch.bool)
    subject[0, :16] = True
    subject[1, :16] = True
    share = torch.tensor([[False, True], [False, False]])
    plan = plan_injection(torch.stack([target, source]), subject, share)
    assert plan.keep[0, :16].sum() >= 15 and not plan.keep[0, 16:].any(), plan.keep[0].tolist()
    masked_only = otsu_threshold(plan.distance[0, :16][None])[0]
    assert (plan.distance[0, :16] <= masked_only).sum() <= 12  # what the previous rule kept


def test_plan_empty_property():
    """plan.empty is True iff nothing is kept."""
    features, _, _ = random_case(61, n=3, p=10)
    subject = torch.ones(3, 10, dtype=torch.bool)
    none = plan_injection(features, subject, torch.zeros(3, 3, dtype=torch.bool))
    assert none.empty and not bool(none.keep.any())
    some = plan_injection(features, subject, torch.ones(3, 3, dtype=torch.bool))
    assert not some.empty


# ----------------------------------------------------------------------------------------
# inject
# ----------------------------------------------------------------------------------------

def random_plan(seed, n=4, p=10, keep_prob=0.5):
    """A random plan (keep, source != target, index), independent of any features."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(n, p, generator=g) < keep_prob
    offset = torch.randint(1, n, (n, p), generator=g)
    source = (torch.arange(n)[:, None] + offset) % n
    index = torch.randint(0, p, (n, p), generator=g)
    distance = torch.rand(n, p, generator=g)
    return InjectionPlan(keep, source, index, distance)


@pytest.mark.parametrize("seed,alpha", [(70, 0.8), (71, 0.3), (72, 1.0)])
def test_inject_matches_naive_loop(seed, alpha):
    """Kept patches blend alpha*source + (1-alpha)*target in turn, the others are untouched."""
    n, p, c = 4, 10, 6
    plan = random_plan(seed, n, p)
    out = torch.randn(n, p, c, generator=torch.Generator().manual_seed(seed + 100))
    got = inject(out, plan, alpha)
    assert got.shape == out.shape and got.dtype == out.dtype
    torch.testing.assert_close(got.double(), naive_inject(out, plan, alpha), rtol=1e-6, atol=1e-6)
    assert torch.equal(got[~plan.keep], out[~plan.keep])


def test_inject_takes_earlier_targets_as_already_injected():
    """The reference injects target after target in place: in a chain 2 <- 1 <- 0, image 1
    takes image 0's value, then image 2 takes image 1's *injected* value (reading every source
    from before injection would give 2 the value 55)."""
    out = torch.tensor([[[0.0]], [[10.0]], [[100.0]]])  # (3, 1, 1)
    keep = torch.tensor([[False], [True], [True]])
    source = torch.tensor([[1], [0], [1]])
    index = torch.zeros(3, 1, dtype=torch.long)
    plan = InjectionPlan(keep, source, index, torch.zeros(3, 1))
    got = inject(out, plan, 0.5)
    assert got.flatten().tolist() == [0.0, 5.0, 52.5]


def test_inject_takes_later_targets_before_their_injection():
    """A target reads an image after it in the batch as it was: 0 <- 1 <- 2 gives 0 image 1's
    value from before 1 was injected."""
    out = torch.tensor([[[0.0]], [[10.0]], [[100.0]]])
    keep = torch.tensor([[True], [True], [False]])
    source = torch.tensor([[1], [2], [0]])
    plan = InjectionPlan(keep, source, torch.zeros(3, 1, dtype=torch.long), torch.zeros(3, 1))
    assert inject(out, plan, 0.5).flatten().tolist() == [5.0, 55.0, 100.0]


def test_inject_from_first_equals_the_whole_batch_when_the_leading_rows_are_given_injected():
    """Rows before ``first`` are taken as already injected (anchors from an anchor cache): the
    later rows then come out as when the whole batch is injected."""
    n, p, c = 5, 8, 4
    plan = random_plan(82, n, p, keep_prob=0.7)
    out = torch.randn(n, p, c, generator=torch.Generator().manual_seed(83))
    whole = inject(out, plan, 0.6)
    given = torch.cat([whole[:2], out[2:]])
    part = inject(given, plan, 0.6, first=2)
    assert torch.equal(part[:2], whole[:2]) and torch.equal(part[2:], whole[2:])
    torch.testing.assert_close(part.double(), naive_inject(given, plan, 0.6, first=2), rtol=1e-6, atol=1e-6)
    assert not torch.equal(inject(out, plan, 0.6, first=2)[2:], whole[2:])  # un-injected leading rows differ


def test_inject_alpha_zero_returns_input():
    """alpha=0 returns the input values exactly."""
    plan = random_plan(90)
    out = torch.randn(4, 10, 3, generator=torch.Generator().manual_seed(91))
    got = inject(out, plan, 0.0)
    assert torch.equal(got, out)


def test_inject_empty_plan_returns_input():
    """A plan that keeps nothing returns the input values exactly."""
    plan = random_plan(92)
    plan = InjectionPlan(torch.zeros_like(plan.keep), plan.source, plan.index, plan.distance)
    out = torch.randn(4, 10, 3, generator=torch.Generator().manual_seed(93))
    assert torch.equal(inject(out, plan, 0.7), out)


def test_inject_does_not_modify_input():
    """The input tensor is left unchanged by a non-trivial injection."""
    plan = random_plan(94, keep_prob=0.9)
    out = torch.randn(4, 10, 3, generator=torch.Generator().manual_seed(95))
    snapshot = out.clone()
    got = inject(out, plan, 0.5)
    assert torch.equal(out, snapshot)
    assert not torch.equal(got, out)  # something was actually injected


def test_inject_with_plan_from_features():
    """End to end: a plan_injection plan applied by inject equals the naive blending loop."""
    features, subject, share = random_case(96, n=3, c=5, p=16, mask_prob=0.7, share_prob=1.0)
    plan = plan_injection(features, subject, share)
    assert not plan.empty
    out = torch.randn(3, 16, 7, generator=torch.Generator().manual_seed(97))
    torch.testing.assert_close(inject(out, plan, 0.9).double(), naive_inject(out, plan, 0.9),
                               rtol=1e-6, atol=1e-6)
