"""ConsiStory Collect Features: DIFT features and final masks of a finished sampler run,
for exact (two-pass) feature injection (paper §4.3)."""
from __future__ import annotations

from ..consistory_core.correspondence import gaussian_smooth
from ..consistory_patches.story import run_of_samples, story_of
from ..consistory_patches.values import CorrespondenceFeatures
from .sockets import REFINE, Features, io, schema


class CollectFeatures(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryCollectFeatures", display_name="ConsiStory Collect Features", category=REFINE,
            description=("After a first sampler run: its DIFT features (t≈261) and final subject masks, "
                         "for ConsiStory Feature Injection in a second run with the same seed."),
            search_aliases=["DIFT features", "two-pass feature injection"],
            inputs=[
                io.Model.Input("model", tooltip="The ConsiStory model the first sampler used."),
                io.Latent.Input("samples", tooltip="The first sampler's output: makes this node run after it."),
            ],
            outputs=[Features.Output("features", display_name="features")])

    @classmethod
    def execute(cls, model, samples):
        story = story_of(model, "ConsiStory Collect Features")
        run = story.run
        made_by = run_of_samples(model, story, samples, "ConsiStory Collect Features")  # one model, several samplers
        try:
            recorded = run.state_of(made_by, "dift", story.dift.recorded_features())
            maps = run.state_of(made_by, "maps", run.tracker.snapshot())
        except ValueError as e:
            raise ValueError(f"ConsiStory Collect Features: {e}") from None
        if recorded is None or maps is None:
            raise ValueError("ConsiStory Collect Features: the run recorded no features; connect the "
                             "output of a sampler that used this model")
        _, features = recorded
        latent = samples["samples"]
        if features.shape[0] != latent.shape[0] + story.run.replayed:
            raise ValueError(f"ConsiStory Collect Features: features of {features.shape[0] - story.run.replayed} "
                             f"images but the samples have {latent.shape[0]}")
        return io.NodeOutput(CorrespondenceFeatures(gaussian_smooth(features.float()), maps))
