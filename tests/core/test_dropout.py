"""Tests for consistory_core.dropout (per-step attention dropout draws)."""
import torch

from consistory_core.dropout import keep_draw, step_seed


def test_deterministic_for_same_arguments():
    """The same (seed, step, images, tokens, p) gives the same draw, twice."""
    a = keep_draw(123, 4, 3, 1024, 0.3)
    b = keep_draw(123, 4, 3, 1024, 0.3)
    assert a.dtype == torch.bool and a.shape == (3, 1024)
    assert torch.equal(a, b)


def test_differs_across_steps_seeds_images_and_grids():
    """Another step, seed or grid size gives another draw; images of one draw differ."""
    base = keep_draw(123, 4, 3, 1024, 0.5)
    assert not torch.equal(base, keep_draw(123, 5, 3, 1024, 0.5))
    assert not torch.equal(base, keep_draw(124, 4, 3, 1024, 0.5))
    assert not torch.equal(base[:, :256], keep_draw(123, 4, 3, 256, 0.5))
    assert not torch.equal(base[0], base[1]) and not torch.equal(base[1], base[2])
    steps = torch.stack([keep_draw(7, s, 1, 512, 0.5)[0] for s in range(10)])
    assert len({tuple(r.tolist()) for r in steps}) == 10


def test_global_rng_untouched():
    """keep_draw neither advances nor depends on the global torch RNG."""
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = keep_draw(99, 2, 4, 4096, 0.4)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(12345)
    torch.rand(17)
    b = keep_draw(99, 2, 4, 4096, 0.4)
    assert torch.equal(a, b)


def test_probability_zero_keeps_everything():
    """p = 0 (or below) keeps every patch."""
    assert keep_draw(1, 0, 3, 100, 0.0).all()
    assert keep_draw(1, 0, 3, 100, -0.5).all()
    assert keep_draw(1, 0, 3, 100, 0.0).shape == (3, 100)


def test_probability_one_drops_everything():
    """p = 1 drops every patch."""
    assert not keep_draw(1, 0, 2, 100, 1.0).any()


def test_drop_rate_close_to_probability():
    """Over many patches the dropped fraction is p within a few standard deviations."""
    images, tokens = 4, 50_000
    for p in (0.1, 0.3, 0.75):
        keep = keep_draw(2024, 3, images, tokens, p)
        rate = 1.0 - keep.float().mean().item()
        sd = (p * (1 - p) / (images * tokens)) ** 0.5
        assert abs(rate - p) < 5 * sd, (p, rate)
        for i in range(images):
            per_image = 1.0 - keep[i].float().mean().item()
            assert abs(per_image - p) < 5 * (p * (1 - p) / tokens) ** 0.5


def test_sub_batch_with_offset_equals_full_draw_rows():
    """Drawing images [off, off+m) with offset=off gives those rows of the full draw."""
    full = keep_draw(55, 6, 6, 2048, 0.35)
    for off, m in [(0, 2), (2, 3), (5, 1), (1, 5)]:
        sub = keep_draw(55, 6, m, 2048, 0.35, offset=off)
        assert torch.equal(sub, full[off:off + m]), (off, m)
    # and without the offset a sub-batch would get other rows
    assert not torch.equal(keep_draw(55, 6, 3, 2048, 0.35), full[2:5])


def test_step_seed_is_63_bit_and_input_sensitive():
    """step_seed stays in [0, 2^63) and changes with each of its inputs."""
    base = step_seed(1, 2, 3, 4)
    assert 0 <= base < 2 ** 63
    others = {step_seed(2, 2, 3, 4), step_seed(1, 3, 3, 4), step_seed(1, 2, 4, 4), step_seed(1, 2, 3, 5)}
    assert base not in others and len(others) == 4
    assert 0 <= step_seed(2 ** 70 + 5, -1, 10 ** 6, 0) < 2 ** 63
