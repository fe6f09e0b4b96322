"""ComfyUI node: the story world's trained model as MODEL, CLIP and VAE.

The VAE is the fixed latent map (``vae.LatentMapVAE``), which the stock VAEDecode and
VAEEncode nodes accept. Sample 32 x 32 latents (EmptyLatentImage 256 x 256, the size the
model was trained at); they decode to 64 x 64 images. Use the empty prompt as negative.
"""
from __future__ import annotations

from . import model as world_model
from .vae import LatentMapVAE


class StoryWorldCheckpointLoader:
    """Loads the story-world UNet (trained here) with its frozen text encoder and latent map."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "ConsiStory/testing"
    DESCRIPTION = ("A small SDXL-shaped model trained on a synthetic story world (64 x 64 images of a "
                   "creature or robot in one of 8 scenes). Sample at 256 x 256 (32 x 32 latents).")

    def load(self):
        model, clip = world_model.load_story_world(world_model.WEIGHTS)
        return model, clip, LatentMapVAE()


NODE_CLASS_MAPPINGS = {"ConsiStoryStoryWorldCheckpoint": StoryWorldCheckpointLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"ConsiStoryStoryWorldCheckpoint": "ConsiStory Story World Checkpoint (test model)"}
