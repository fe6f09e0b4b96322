"""Edit-friendly inversion of a photo into anchor inputs, and the correction noise that makes
Euler ancestral walk it (consistory_core.inversion), against slow references written here."""
import math

import pytest
import torch

from consistory_core.inversion import (ancestral_correction, ancestral_sigmas, ancestral_step, inverted_inputs,
                                       trajectory_noise)

SIGMAS = torch.tensor([14.6, 7.0, 3.1, 1.2, 0.4, 0.03, 0.0])


def test_noise_is_seeded_per_step_and_photo_and_independent_of_the_others():
    two = trajectory_noise(5, (4, 6, 8), 2, 3)
    assert two.shape == (3, 2, 4, 6, 8)
    assert torch.equal(trajectory_noise(5, (4, 6, 8), 1, 3)[:, 0], two[:, 0])  # photo 0 alone: the same draws
    assert torch.equal(trajectory_noise(5, (4, 6, 8), 2, 3), two)
    assert not torch.equal(trajectory_noise(6, (4, 6, 8), 2, 3), two)
    # a fresh draw at every step (edit-friendly), not one noise re-scaled (DDIM-like)
    corr = torch.corrcoef(two[:, 0].flatten(1))
    assert corr.fill_diagonal_(0).abs().max() < 0.1
    assert abs(float(two.std()) - 1) < 0.05


def test_inputs_are_the_photo_plus_each_steps_noise():
    x0 = torch.randn(2, 4, 6, 8)
    noise = trajectory_noise(1, (4, 6, 8), 2, len(SIGMAS) - 1)
    inputs = inverted_inputs(x0, SIGMAS, noise)
    assert inputs.shape == (len(SIGMAS) - 1, 2, 4, 6, 8)
    for i in range(len(SIGMAS) - 1):
        torch.testing.assert_close(inputs[i], x0 + float(SIGMAS[i]) * noise[i])
    flow = inverted_inputs(x0, SIGMAS / 15, noise, lambda s, n, x: s * n + (1 - s) * x)
    torch.testing.assert_close(flow[2], (1 - SIGMAS[2] / 15) * x0 + SIGMAS[2] / 15 * noise[2])
    with pytest.raises(ValueError, match="does not fit"):
        inverted_inputs(x0, SIGMAS, noise[1:])


def test_ancestral_split_is_k_diffusions():
    for sigma, nxt in [(14.6, 7.0), (1.2, 0.4), (0.4, 0.03), (0.03, 0.0)]:
        up = min(nxt, (nxt ** 2 * (sigma ** 2 - nxt ** 2) / sigma ** 2) ** 0.5)
        down, got_up = ancestral_sigmas(sigma, nxt)
        assert math.isclose(got_up, up) and math.isclose(down, (nxt ** 2 - up ** 2) ** 0.5, abs_tol=1e-12)


def euler_ancestral_reference(x, denoised, sigma, nxt, z):
    """A slow reference of one k-diffusion Euler-ancestral step with eta 1 and noise z."""
    up = min(nxt, (nxt ** 2 * (sigma ** 2 - nxt ** 2) / sigma ** 2) ** 0.5)
    down = (nxt ** 2 - up ** 2) ** 0.5
    d = (x - denoised) / sigma
    return x + d * (down - sigma) + (z * up if nxt > 0 else 0)


def test_corrections_make_euler_ancestral_land_on_the_trajectory():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 6, 8, generator=g)
    inputs = inverted_inputs(x0, SIGMAS, trajectory_noise(3, (4, 6, 8), 2, len(SIGMAS) - 1))
    x = inputs[0]
    for i in range(len(SIGMAS) - 1):
        sigma, nxt = float(SIGMAS[i]), float(SIGMAS[i + 1])
        denoised = x0 + 0.3 * torch.randn(x.shape, generator=g)  # an imperfect model
        target = inputs[i + 1] if i + 2 < len(SIGMAS) else x0
        z = ancestral_correction(x, target, denoised, sigma, nxt)
        step = euler_ancestral_reference(x, denoised, sigma, nxt, z)
        if nxt == 0:
            torch.testing.assert_close(z, x0 - denoised)  # the last step adds no noise: a residual
            step = step + z
        torch.testing.assert_close(step, target, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ancestral_step(x, denoised, sigma, nxt, z), target, atol=1e-5, rtol=1e-5)
        x = step
    torch.testing.assert_close(x, x0, atol=1e-5, rtol=1e-5)
