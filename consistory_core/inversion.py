"""Real photos as anchors (the paper's "training-free personalization", §1 and §6): the
edit-friendly DDPM inversion of Huberman-Spiegelglas et al. (CVPR 2024), written in the
sampler's sigma parametrisation.

A bank's anchors are their UNet input latents at each of the sampler's model evaluations
(bank_file). For a photo, whose clean latent x0 (k, C, h, w) is known, edit-friendly
inversion takes those inputs on a schedule sigma_0 > ... > sigma_{n-1} > sigma_n = 0 as

    x_i = x0 + sigma_i * eps_i,   i = 0 .. n-1,   eps_i ~ N(0, I) drawn anew at every step

(flow-matching models: (1 - sigma_i) x0 + sigma_i eps_i; the caller passes the model's own
noise scaling). Unlike DDIM inversion, no x_i is derived from another, so every x_i is
distributed as the sampler's latents at sigma_i are, and no error accumulates.

The correction noise maps make an ancestral sampler (Euler ancestral, eta = 1) walk exactly
this trajectory. With D_i the model's denoised estimate at (x_i, sigma_i) and
(sigma_down, sigma_up) the ancestral split of the step to sigma_{i+1}, the sampler moves to

    x_{i+1} = x_i + (sigma_down - sigma_i) (x_i - D_i) / sigma_i + sigma_up z_i

so z_i = (x_{i+1} - x_i - (sigma_down - sigma_i)(x_i - D_i)/sigma_i) / sigma_up reproduces
x_{i+1}. The last step (sigma_n = 0) adds no noise: there the correction is the residual
x0 - D_{n-1}, added as it is.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .dropout import step_seed

INVERSION_NOISE_STREAM = 1_000_003  # separates these draws from the dropout and DIFT draws


def trajectory_noise(seed: int, shape: tuple, images: int, steps: int) -> torch.Tensor:
    """(steps, images, *shape) standard normal noise; the draw of (step s, image i) depends
    only on (seed, s, i), so a photo gets the same trajectory whatever the other photos."""
    out = torch.empty(steps, images, *shape)
    for s in range(steps):
        for i in range(images):
            gen = torch.Generator().manual_seed(step_seed(seed, INVERSION_NOISE_STREAM, s, i))
            out[s, i] = torch.randn(shape, generator=gen)
    return out


def _variance_exploding(sigma: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    return x0 + sigma * noise


def inverted_inputs(x0: torch.Tensor, sigmas: torch.Tensor, noise: torch.Tensor,
                    noise_scaling: Callable = _variance_exploding) -> torch.Tensor:
    """The anchors' UNet inputs at every step but the last of the schedule.

    x0 (k, C, h, w) clean latents (model space); sigmas (n + 1,) the schedule, ending at 0;
    noise (n, k, C, h, w) from ``trajectory_noise``; noise_scaling(sigma (k, 1, 1, 1), noise,
    x0) -> latent at sigma (default x0 + sigma * noise). Returns (n, k, C, h, w)."""
    n = len(sigmas) - 1
    if noise.shape[0] != n or noise.shape[1:] != x0.shape:
        raise ValueError(f"noise {tuple(noise.shape)} does not fit {n} steps of latents {tuple(x0.shape)}")
    k = x0.shape[0]
    return torch.stack([noise_scaling(sigmas[i].to(x0).expand(k).reshape(k, 1, 1, 1), noise[i].to(x0), x0)
                        for i in range(n)])


def ancestral_sigmas(sigma: float, sigma_next: float) -> tuple[float, float]:
    """(sigma_down, sigma_up) of an ancestral step with eta = 1 (k-diffusion's split):
    sigma_up^2 = sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2, sigma_down^2 = sigma_next^2 - sigma_up^2."""
    sigma, sigma_next = float(sigma), float(sigma_next)
    up = min(sigma_next, math.sqrt(max(0.0, sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2)))
    return math.sqrt(max(0.0, sigma_next ** 2 - up ** 2)), up


def _ancestral_mean(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> tuple:
    """(where the step goes before its noise, sigma_up): the Euler step to sigma_down; on the
    last step (sigma_next = 0) the denoised estimate and no noise (sigma_up None)."""
    if float(sigma_next) == 0.0:
        return denoised, None
    down, up = ancestral_sigmas(sigma, sigma_next)
    return x + (x - denoised) / float(sigma) * (down - float(sigma)), up


def ancestral_correction(x: torch.Tensor, x_next: torch.Tensor, denoised: torch.Tensor,
                         sigma: float, sigma_next: float) -> torch.Tensor:
    """The correction of one step (all (k, C, h, w)): the noise map z that takes the
    ancestral sampler from x to x_next, or on the last step (sigma_next = 0) the residual
    x_next - denoised."""
    mean, up = _ancestral_mean(x, denoised, sigma, sigma_next)
    return x_next - mean if up is None else (x_next - mean) / up


def ancestral_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float,
                   correction: torch.Tensor) -> torch.Tensor:
    """One Euler-ancestral step from x at sigma to sigma_next with the given correction
    (``ancestral_correction``'s inverse)."""
    mean, up = _ancestral_mean(x, denoised, sigma, sigma_next)
    return mean + correction if up is None else mean + correction * up
