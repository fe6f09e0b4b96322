"""ConsiStory Mask Preview: the subject masks of a run of a patched model (paper §4.1): the
run that made ``samples`` where given, else the last."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..consistory_patches.story import run_of_samples, story_of
from .sockets import STORY, io, schema

COLOURS = torch.tensor([[1.0, 0.2, 0.2], [0.2, 0.5, 1.0], [0.2, 0.9, 0.3], [1.0, 0.8, 0.1],
                        [0.8, 0.3, 1.0], [0.1, 0.9, 0.9]])


class MaskPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryMaskPreview", display_name="ConsiStory Mask Preview", category=STORY,
            description="Shows where ConsiStory found the subject in each image during the last run.",
            search_aliases=["subject mask"],
            inputs=[
                io.Model.Input("model", tooltip="The model patched by ConsiStory SDSA, after sampling with it."),
                io.Image.Input("images", tooltip="The decoded images of that run (also orders this node after the "
                               "sampler)."),
                io.Float.Input("opacity", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="How strongly the mask colours cover the images."),
                io.Latent.Input("samples", optional=True, tooltip="That sampler's output (optional): shows the masks "
                                "of the run that made it when one patched model feeds several samplers; without it, "
                                "the last run's."),
            ],
            outputs=[io.Mask.Output("mask", display_name="mask",
                                    tooltip="Union of the subject masks, one per image, at image size."),
                     io.Image.Output("overlay", display_name="overlay",
                                     tooltip="The images with each subject's mask in its own colour.")])

    @classmethod
    def execute(cls, model, images, opacity, samples=None):
        story = story_of(model, "ConsiStory Mask Preview")
        run = story.run
        made_by = run.runs if samples is None else run_of_samples(model, story, samples, "ConsiStory Mask Preview")
        try:
            maps = run.state_of(made_by, "maps", run.tracker.snapshot())
        except ValueError as e:
            raise ValueError(f"ConsiStory Mask Preview: {e}") from None
        if maps is None:
            raise ValueError("ConsiStory Mask Preview: no masks yet; sample with this model first")
        h, w = maps.shape[2:]
        subjects = run.tracker.masks_of(maps, (h, w))[run.replayed:]  # replayed anchors are not among the images
        n = subjects.shape[0]
        if images.shape[0] != n:
            raise ValueError(f"ConsiStory Mask Preview: {images.shape[0]} images but the run had {n}")
        return io.NodeOutput(*mask_overlay(images, subjects.reshape(n, -1, h, w), opacity))


def mask_overlay(images: torch.Tensor, subjects: torch.Tensor, opacity: float) -> tuple:
    """images (n, H, W, 3), subjects (n, S, h, w) bool -> (union mask (n, H, W), the images
    with each subject's mask in its own colour)."""
    per_subject = F.interpolate(subjects.float(), size=images.shape[1:3], mode="nearest").cpu()
    colours = COLOURS[torch.arange(per_subject.shape[1]) % len(COLOURS)]
    tint = torch.einsum("nshw,sc->nhwc", per_subject, colours).clamp(0, 1)
    cover = per_subject.amax(1).unsqueeze(-1) * opacity
    return per_subject.amax(1), images.cpu()[..., :3] * (1 - cover) + tint * cover
