"""ConsiStory Subject From Image: one or several photos of a subject as an anchor bank, so
new scenes show that subject (the paper's training-free personalization, §1 and §6;
runtime: consistory_patches.photo_anchors; the inversion: consistory_core.inversion)."""
from __future__ import annotations

import torch

from ..consistory_core.settings import MaskSettings, SettingsError, SharingSettings
from ..consistory_patches.host_api import sampler_names, sampler_sigmas
from ..consistory_patches.photo_anchors import ONE_EVALUATION_SAMPLERS, invert_photos
from .mask_preview import mask_overlay
from .sockets import BANK, Bank, MaskSettingsSocket, io, schema
from .story_prompts import encode_story

NODE = "ConsiStory Subject From Image"


def fitted(pixels: torch.Tensor, width: int, height: int, method: str) -> torch.Tensor:
    """pixels (B, H, W, C) -> (B, height, width, C): scaled to cover, centre cropped."""
    import comfy.utils
    out = comfy.utils.common_upscale(pixels.movedim(-1, 1), width, height, method, "center")
    return out.movedim(1, -1)


def vae_downscale(vae) -> int:
    """Pixels per latent cell of ``vae`` (8 for the SD VAEs)."""
    ratio = getattr(vae, "downscale_ratio", 8)
    return ratio if isinstance(ratio, int) else int(vae.spacial_compression_encode())


class SubjectFromImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        samplers, schedulers = sampler_names()
        usable = [s for s in ONE_EVALUATION_SAMPLERS if s in samplers]
        return schema(
            node_id="ConsiStorySubjectFromImage", display_name="ConsiStory Subject From Image", category=BANK,
            description=("Makes a subject from photos: every photo becomes an anchor by edit-friendly DDPM inversion "
                         "(a fresh seeded noise at every step, as the paper does for training-free "
                         "personalization), so new scenes through Use Anchors show that subject. Costs one sampling "
                         "of the photos. Works best on common objects and animals; the photo's style carries over."),
            search_aliases=["subject from photo", "personalization", "image to anchor bank"],
            inputs=[
                io.Model.Input("model", tooltip="The checkpoint's model (not patched by SDSA), with the LoRAs the new "
                               "scenes will use."),
                io.Clip.Input("clip", tooltip="The checkpoint's text encoder(s)."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE: encodes the photos."),
                io.Image.Input("image", tooltip="The subject's photo; a batch of several photos (e.g. two views, as "
                               "in the paper) makes one anchor each. Scaled and centre-cropped to width x height."),
                io.String.Input("subject", multiline=True, default="a dog", tooltip="What the photo shows, in the "
                                "words the new scenes' Story Prompts will use (the same subject words are required)."),
                io.String.Input("subject_words", multiline=True, default="", tooltip="Comma-separated words whose "
                                "attention marks the subject; empty: the nouns that head the subject's phrases (as "
                                "Story Prompts)."),
                io.String.Input("captions", multiline=True, default="", tooltip="What else each photo shows, one "
                                "line per photo (or one line for all), e.g. 'on a sofa'; empty: the subject alone."),
                io.String.Input("style_prefix", default="a photo of", tooltip="Text put before the subject."),
                io.String.Input("negative", default="", tooltip="The anchors' negative prompt (their uncond)."),
                io.Int.Input("width", default=1024, min=64, max=8192, step=8,
                             tooltip="The width the new scenes will be sampled at (a bank has one size)."),
                io.Int.Input("height", default=1024, min=64, max=8192, step=8,
                             tooltip="The height the new scenes will be sampled at."),
                io.Combo.Input("sampler_name", options=usable, default="euler", tooltip="The sampler the new scenes "
                               "will use: one that evaluates the model once per step."),
                io.Combo.Input("scheduler", options=list(schedulers), default="normal",
                               tooltip="The new scenes' scheduler."),
                io.Int.Input("steps", default=30, min=2, max=1000, tooltip="The new scenes' steps."),
                io.Float.Input("cfg", default=5.0, min=1.0, max=100.0, step=0.1, round=0.01, tooltip=
                               "The new scenes' CFG: above 1 the bank keeps the anchors' uncond, which CFG sampling "
                               "needs."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip=
                             "Seed of the inversion's noise (a new draw at every step)."),
                io.Mask.Input("mask", optional=True, tooltip="The subject in each photo (white = subject; one mask, or "
                              "one per photo). Without it the subject is found from the subject words' "
                              "cross-attention."),
                MaskSettingsSocket.Input("mask_settings", optional=True, tooltip="From ConsiStory Subject Masks; the "
                                         "paper's if absent. Kept in the bank: the new scenes' masks are made the same "
                                         "way."),
                io.Float.Input("dropout", default=0.5, min=0.0, max=1.0, step=0.05, optional=True, tooltip=
                               "Chance that a photo's subject patch is hidden from a new image at a step (the "
                               "paper's 0.5; kept in the bank). Lower: closer to the photo, less pose variety."),
            ],
            outputs=[
                Bank.Output("bank", display_name="bank", tooltip="The photos as an anchor bank: Use Anchors and Save "
                            "Anchor Bank take it as any bank."),
                io.Mask.Output("subject_mask", display_name="subject_mask", tooltip="Where the subject is in each "
                               "photo (the mask input, or found by cross-attention)."),
                io.Image.Output("overlay", display_name="overlay",
                                tooltip="The photos as the model sees them, the subject tinted."),
            ])

    @classmethod
    def execute(cls, model, clip, vae, image, subject, subject_words, captions, style_prefix, negative, width,
                height, sampler_name, scheduler, steps, cfg, seed, mask=None, mask_settings=None, dropout=0.5):
        samplers, schedulers = sampler_names()
        if sampler_name not in ONE_EVALUATION_SAMPLERS or sampler_name not in samplers:
            raise ValueError(f"{NODE}: sampler_name {sampler_name!r} is not one that evaluates the model once per "
                             f"step; use one of {', '.join(s for s in ONE_EVALUATION_SAMPLERS if s in samplers)}")
        if scheduler not in schedulers:
            raise ValueError(f"{NODE}: scheduler {scheduler!r} is not one of {', '.join(schedulers)}")
        if steps < 2:
            raise ValueError(f"{NODE}: steps must be at least 2 (the masks come from the first step)")
        photos = image.shape[0]
        lines = [line.strip() for line in captions.splitlines() if line.strip()] or [""]
        if len(lines) == 1:
            lines = lines * photos
        if len(lines) != photos:
            raise ValueError(f"{NODE}: {photos} photo(s) but {len(lines)} caption lines; give one line per photo "
                             "or one for all")
        latent_hw = (height // 8, width // 8)
        d = vae_downscale(vae)
        given = None
        if mask is not None:
            mask = mask if mask.ndim == 3 else mask[None]
            if mask.shape[0] not in (1, photos) or tuple(mask.shape[1:]) != tuple(image.shape[1:3]):
                hint = (" (Load Image gives an empty 64x64 mask for a photo without transparency: paint the subject "
                        "in its mask editor, or leave the mask unconnected)" if tuple(mask.shape[1:]) == (64, 64)
                        and not mask.any() else "")
                raise ValueError(f"{NODE}: the mask is {mask.shape[0]} x {mask.shape[2]}x{mask.shape[1]} but the "
                                 f"image is {photos} x {image.shape[2]}x{image.shape[1]}; give one mask of the "
                                 f"photo's size, or one per photo{hint}")
            given = fitted(mask[..., None].expand(photos, -1, -1, -1).float(), latent_hw[1], latent_hw[0],
                           "area")[..., 0].clamp(0, 1)
        conditioning, story = encode_story(clip, subject, subject_words, lines, style_prefix, NODE)
        tokens = clip.tokenize(negative)
        uncond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
        pixels = fitted(image[..., :3].float(), latent_hw[1] * d, latent_hw[0] * d, "bicubic").clamp(0, 1)
        latent = vae.encode(pixels)
        if tuple(latent.shape[-2:]) != latent_hw:
            raise ValueError(f"{NODE}: the VAE made {tuple(latent.shape[-2:])} latents of a "
                             f"{pixels.shape[2]}x{pixels.shape[1]} image, not {latent_hw}")
        try:
            sharing = SharingSettings(dropout=dropout, masks=mask_settings or MaskSettings())
        except SettingsError as e:
            raise ValueError(f"{NODE}: {e}") from None
        try:
            sigmas = sampler_sigmas(model, sampler_name, scheduler, steps)
            result = invert_photos(model, latent, conditioning, [[uncond, {"pooled_output": pooled}]], story,
                                   sigmas, cfg, seed, sharing, given)
        except ValueError as e:
            raise ValueError(f"{NODE}: {e}") from None
        union, overlay = mask_overlay(pixels, result.masks[:, None], 0.5)
        return io.NodeOutput(result.bank, union, overlay)
