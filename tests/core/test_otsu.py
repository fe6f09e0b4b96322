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
