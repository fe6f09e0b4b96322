"""Tests for consistory_core.otsu against a from-scratch loop implementation."""
import pytest
import torch

from consistory_core.otsu import otsu_mask, otsu_threshold


def _rows():
    """Random rows of mixed shapes: uniform, bimodal gaussian mixtures, skewed."""
    g = torch.Generator().manual_seed(7)
    rows = [
        torch.rand(400, generator=g),
        torch.rand(400, generator=g) * 5 - 3,
        torch.cat([torch.randn(250, generator=g) * 0.5, torch.randn(150, generator=g) * 0.8 + 4]),
        torch.cat([torch.randn(100, generator=g) * 0.2 - 1, torch.randn(300, generator=g) * 1.0 + 1]),
        torch.cat([torch.randn(380, generator=g) * 0.1, torch.randn(20, generator=g) * 0.1 + 1]),
        torch.rand(400, generator=g) ** 4,
    ]
    return torch.stack(rows)


def test_threshold_matches_naive_reference(naive_otsu):
    """Batched thresholds equal the loop reference row by row (uniform + bimodal rows)."""
    x = _rows()
    got = otsu_threshold(x)
    assert got.shape == (x.shape[0],) and got.dtype == torch.float32
    expected = torch.tensor([naive_otsu(r.tolist()) for r in x], dtype=torch.float64)
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)


def test_threshold_rows_are_independent():
    """A row's threshold does not depend on the other rows in the batch."""
    x = _rows()
    alone = torch.stack([otsu_threshold(r[None])[0] for r in x])
    torch.testing.assert_close(otsu_threshold(x), alone, rtol=0, atol=0)
    torch.testing.assert_close(otsu_threshold(x.flip(0)), alone.flip(0), rtol=0, atol=0)


def test_threshold_small_random_rows(naive_otsu):
    """Short rows (many empty bins, ties) match the reference, including its first-argmax rule."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(12, 9, generator=g)
    expected = torch.tensor([naive_otsu(r.tolist()) for r in x], dtype=torch.float64)
    torch.testing.assert_close(otsu_threshold(x).double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_equals_fp32_upcast(dtype, naive_otsu):
    """fp16/bf16 inputs give the threshold (and mask) of their exact fp32 upcast."""
    x = _rows().to(dtype)
    up = x.float()
    got = otsu_threshold(x)
    assert got.dtype == torch.float32
    expected = torch.tensor([naive_otsu(r.tolist()) for r in up], dtype=torch.float64)
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got, otsu_threshold(up), rtol=0, atol=0)
    assert torch.equal(otsu_mask(x), otsu_mask(up))


def test_constant_row():
    """A constant row gets its own value as threshold and an all-False mask."""
    x = torch.tensor([[3.5] * 10, [-2.0] * 10, [0.0] * 10])
    assert torch.equal(otsu_threshold(x), torch.tensor([3.5, -2.0, 0.0]))
    assert not otsu_mask(x).any()


def test_mask_is_strictly_above_threshold(naive_otsu):
    """otsu_mask marks exactly the values above scale * threshold (strict >)."""
    x = _rows()
    for scale in (1.0, 0.7):
        mask = otsu_mask(x, scale)
        for r in range(x.shape[0]):
            t = naive_otsu(x[r].tolist()) * scale
            expected = [float(v) > t for v in x[r].tolist()]
            assert mask[r].tolist() == expected


def _bimodal(seed):
    g = torch.Generator().manual_seed(seed)
    rows, truth = [], []
    for sizes, (m0, m1) in [((300, 100), (0.0, 10.0)), ((50, 350), (-5.0, 2.0)), ((200, 200), (1.0, 9.0))]:
        a = torch.randn(sizes[0], generator=g) * 0.5 + m0
        b = torch.randn(sizes[1], generator=g) * 0.5 + m1
        perm = torch.randperm(sum(sizes), generator=g)
        rows.append(torch.cat([a, b])[perm])
        truth.append(torch.cat([torch.zeros(sizes[0], dtype=torch.bool),
                                torch.ones(sizes[1], dtype=torch.bool)])[perm])
    return torch.stack(rows), torch.stack(truth)


def test_bimodal_threshold_lies_in_the_gap():
    """Well separated modes: the threshold is at the top of the low mode, below the high one,
    and every high-component value is in the mask."""
    for seed in (3, 4, 5):
        x, truth = _bimodal(seed)
        t = otsu_threshold(x)
        mask = otsu_mask(x)
        for r in range(x.shape[0]):
            low, high = x[r][~truth[r]], x[r][truth[r]]
            bin_width = float(x[r].max() - x[r].min()) / 256
            assert float(high.min()) > float(t[r])
            # the split bin is the one holding the low mode's maximum
            assert float(low.max()) - bin_width / 2 <= float(t[r]) <= float(low.max()) + bin_width / 2
            assert mask[r][truth[r]].all()


def test_bimodal_mask_equals_high_component_up_to_split_bin():
    """Well separated modes: the mask is the high component, except low values lying in
    the upper half of the split bin (the documented bin-centre threshold with strict '>'
    classifies those as foreground, as skimage.filters.threshold_otsu does)."""
    for seed in (3, 4, 5):
        x, truth = _bimodal(seed)
        t = otsu_threshold(x)
        mask = otsu_mask(x)
        for r in range(x.shape[0]):
            bin_width = float(x[r].max() - x[r].min()) / 256
            assert mask[r][truth[r]].all()
            leaked = x[r][mask[r] & ~truth[r]]
            assert leaked.numel() <= 3
            assert ((leaked > t[r]) & (leaked <= t[r] + bin_width / 2 + 1e-6)).all()


# ----------------------------------------------------------------------------------------
# the reference's arithmetic (scikit-image's threshold_otsu on float32, NumPy 1.x histogram)
# ----------------------------------------------------------------------------------------

def reference_otsu(row) -> float:
    """Otsu with NumPy as the reference computes it, written independently of the torch code:
    bin edges from a float64 linspace rounded to float32, membership by np.histogram on those
    edges, float32 counts and centres, float32 running sums (np.cumsum adds in order)."""
    import numpy as np
    x = np.asarray(row, dtype=np.float32)
    lo, hi = x.min(), x.max()
    if lo == hi:
        return float(lo)
    edges = np.linspace(np.float64(lo), np.float64(hi), 257).astype(np.float32)
    counts = np.histogram(x, bins=edges)[0].astype(np.float32)
    centres = (edges[:-1] + edges[1:]) / np.float32(2)
    w1, w2 = np.cumsum(counts), np.cumsum(counts[::-1])[::-1]
    m1 = np.cumsum(counts * centres) / w1
    m2 = (np.cumsum((counts * centres)[::-1]) / w2[::-1])[::-1]
    between = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    return float(centres[np.argmax(between)])


def test_thresholds_equal_the_references_arithmetic_bit_for_bit():
    """Random maps of every shape the method thresholds (bilinear upsamplings of small maps,
    softmax-like, uniform): the float32 threshold is the reference's to the last bit (a
    float64 or pairwise summation differs in the last bit of the bin centre on ~40%)."""
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(21)
    rows = []
    for side in (4, 8, 16, 32):
        for _ in range(25):
            small = torch.rand(1, 1, side, side, generator=g) ** 3
            rows.append(F.interpolate(small, size=(2 * side, 2 * side), mode="bilinear").flatten())
    rows += [torch.softmax(torch.randn(300, generator=g) * 4, 0) for _ in range(20)]
    rows += [torch.rand(9, generator=g) for _ in range(20)]
    for row in rows:
        got = float(otsu_threshold(row[None])[0])
        assert got == reference_otsu(row.numpy()), (row.numel(), got, reference_otsu(row.numpy()))


def test_a_value_on_a_bin_edge_belongs_to_the_bin_above():
    """0.6 lies on an edge of the 256 bins over [0.2, 1.0] (within float32 rounding): NumPy puts
    it in the bin above, which moves the threshold up by a bin (scikit-image: 0.6015625)."""
    row = torch.tensor([[0.8000001311302185, 1.0, 0.2000001072883606, 0.800000011920929, 0.6000000238418579,
                         1.0, 0.8000001311302185, 0.6000000238418579]])
    assert float(otsu_threshold(row)[0]) == 0.6015625 == reference_otsu(row[0].numpy())


def test_a_near_tie_is_decided_as_the_reference_decides_it():
    """A subject-word map from a 20-step run whose two best bins' between-class variances are
    7.5e-7 apart: the threshold is scikit-image's (recorded with the map), so the mask has the
    reference's 14 patches that another summation order flips."""
    from pathlib import Path
    from safetensors.torch import load_file
    data = load_file(str(Path(__file__).resolve().parents[1] / "fixtures" / "otsu_near_tie.safetensors"))
    row, expected = data["near_tie"], float(data["near_tie_threshold"][0])
    assert float(otsu_threshold(row[None])[0]) == expected == reference_otsu(row.numpy())
    assert int(otsu_mask(row[None]).sum()) == int((row > expected).sum())
