"""ConsiStory Story World Checkpoint: the small model trained with this pack (story_world/),
as MODEL, CLIP and VAE, so the pack can be tried on a CPU without SDXL weights."""
from __future__ import annotations

from ..story_world import model as world_model
from ..story_world.vae import LatentMapVAE
from .sockets import io, schema

TRY = "ConsiStory/try it"


class StoryWorldCheckpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryStoryWorldCheckpoint", display_name="ConsiStory Story World Checkpoint", category=TRY,
            description=("A small SDXL-shaped model trained on a synthetic story world (a creature or a robot in "
                         "one of 8 scenes), shipped with the pack: try ConsiStory on a CPU in seconds without "
                         "SDXL weights. It draws one size: Empty Latent Image 256 x 256 (32 x 32 latents), "
                         "decoded to 64 x 64 images; use an empty negative prompt."),
            search_aliases=["story world", "test model", "try without SDXL"],
            inputs=[],
            outputs=[io.Model.Output("model", display_name="MODEL", tooltip="The story world's UNet (SDXL's block "
                                     "layout, small channels)."),
                     io.Clip.Output("clip", display_name="CLIP", tooltip="Its frozen tiny text encoder, behind "
                                    "SDXL's tokenizers."),
                     io.Vae.Output("vae", display_name="VAE", tooltip="A fixed map between 64 x 64 images and "
                                   "32 x 32 latents (no trained VAE).")])

    @classmethod
    def execute(cls):
        model, clip = world_model.load_story_world(world_model.WEIGHTS)
        return io.NodeOutput(model, clip, LatentMapVAE())
