"""Anchors from photos (the paper's training-free personalization, §1 and §6), as one
sampler run through the host.

The photos' clean latents are inverted edit-friendly (consistory_core.inversion): at each
step of the schedule the anchors' input is the photo re-noised with fresh seeded noise.
A sampler function of our own walks that trajectory inside the host's sampling
(host_api.sample_with), on a clone patched by SDSA with every photo an anchor: each model
call is the one a sampler would make, so the anchor recorder keeps the inputs and the
conditioning exactly as the host prepared them, the mask recorder reads the subject from
the caption's words, and the photos share their subject with each other as generated
anchors do. At each step the model's denoised estimate gives the correction noise that
makes Euler ancestral take exactly this trajectory. The recorder's bank is the photo bank:
Use Anchors replays it like any other.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..consistory_core import anchor_mapping
from ..consistory_core.bank_file import AnchorBank
from ..consistory_core.inversion import ancestral_correction, inverted_inputs, trajectory_noise
from ..consistory_core.settings import SharingSettings
from .host_api import model_facts, model_sampling, sample_with
from .joint_attention import is_flux
from .story import patch_story
from .values import StorySubject

# Samplers that evaluate the model once per step, at the schedule's sigmas: the inputs a
# photo bank holds (tests/host/test_subject_from_image.py reuses a photo bank with each).
ONE_EVALUATION_SAMPLERS = ("euler", "euler_ancestral", "ddim", "ddpm", "lcm", "dpmpp_2m", "dpmpp_2m_sde",
                           "dpmpp_3m_sde", "lms", "ipndm", "deis", "res_multistep", "uni_pc", "uni_pc_bh2")


@dataclass
class PhotoInversion:
    """bank: the photo bank; model: the SDSA-patched clone that was sampled (Euler ancestral
    on it with the corrections walks the trajectory again); inputs (n, k, C, h, w): the
    inverted trajectory (model space); corrections: n tensors (k, C, h, w), the noise maps of
    Euler ancestral's steps (the last: the residual x0 - D); masks (k, h0, w0) bool: the
    subject masks the new images share from (the given ones, else cross-attention's at the
    end of the run)."""
    bank: AnchorBank
    model: object
    inputs: torch.Tensor
    corrections: list
    masks: torch.Tensor


def invert_photos(model, latent: torch.Tensor, positive, negative, subject: StorySubject, sigmas: torch.Tensor,
                  cfg: float, seed: int, sharing: SharingSettings | None = None,
                  given_masks: torch.Tensor | None = None) -> PhotoInversion:
    """latent (k, C, h, w): the photos' LATENT samples; positive: one conditioning row per photo
    (its caption with the subject words, as ``subject`` describes); negative: the uncond;
    sigmas (n + 1,) the schedule the new scenes will be sampled with (one model evaluation
    per step); seed: the inversion noise; sharing: the bank's sharing settings (default the
    paper's, every photo an anchor); given_masks (k, h, w) in [0, 1]: the user's subject masks."""
    k = latent.shape[0]
    if subject.images != k:
        raise ValueError(f"{k} photos but {subject.images} captions")
    if is_flux(model):
        raise ValueError("a subject from a photo works on UNet models (SDXL, SD 1.5, SD 2.x); its inversion "
                         "is not made for Flux's flow sampling yet")
    sharing = dataclasses.replace(sharing or SharingSettings(), anchors=k)
    m, story = patch_story(model, subject, sharing, anchor_mapping(k, k), given_masks=given_masks)
    scale = model_sampling(m).noise_scaling
    walked: dict = {}

    def walk(denoiser, x0, sigmas, extra_args=None, callback=None, disable=None):
        """x0 (k, C, h, w): the photos in model space (the host adds zero noise)."""
        n, s_in = len(sigmas) - 1, x0.new_ones([x0.shape[0]])
        noise = trajectory_noise(seed, tuple(x0.shape[1:]), k, n)
        inputs = inverted_inputs(x0.float().cpu(), sigmas.float().cpu(), noise, scale)
        corrections = []
        for i in range(n):
            x = inputs[i].to(x0)
            denoised = denoiser(x, sigmas[i] * s_in, **(extra_args or {}))
            target = inputs[i + 1].to(x0) if i + 1 < n else x0
            corrections.append(ancestral_correction(x, target, denoised, sigmas[i], sigmas[i + 1]).cpu())
            if callback is not None:
                callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        walked.update(inputs=inputs, corrections=corrections)
        return x0

    sample_with(m, walk, sigmas, positive, negative, latent, cfg)
    bank = story.recorder.bank({**model_facts(model), "method": {}})
    steps = len(sigmas) - 1
    description = dataclasses.replace(
        bank.description, origin="photo",
        schedule=f"inverted from {k} photo(s): {steps} steps, one model evaluation per step, sigma "
                 f"{float(sigmas[0]):.6g} to {float(sigmas[-2]):.6g}")
    bank = dataclasses.replace(bank, description=description,
                               subject_masks=None if given_masks is None else given_masks.float().cpu())
    maps = story.run.tracker.snapshot()
    masks = story.run.tracker.masks_of(maps, tuple(maps.shape[2:])).any(1).reshape(k, *maps.shape[2:])
    return PhotoInversion(bank, m, walked["inputs"], walked["corrections"], masks.cpu())
