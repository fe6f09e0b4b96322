"""ConsiStory Query Blend: vanilla-query blending (paper §4.2; runtime: consistory_patches.blend_pass)."""
from __future__ import annotations

from ..consistory_core.settings import BlendSettings
from ..consistory_patches.blend_pass import QueryBlendPass
from ..consistory_patches.host_api import model_sampling
from ..consistory_patches.story import story_of, with_parts
from .sockets import REFINE, io, schema

DEFAULT = BlendSettings()


class QueryBlend(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryQueryBlend", display_name="ConsiStory Query Blend", category=REFINE,
            description=("Keeps layouts varied: early steps blend the queries of a pass without "
                         "shared attention into the shared pass (one extra UNet call per early step)."),
            search_aliases=["vanilla query blending", "layout diversity"],
            inputs=[
                io.Model.Input("model", tooltip="A model patched by ConsiStory SDSA."),
                io.Float.Input("start_strength", default=DEFAULT.start_strength, min=0.0, max=1.0, step=0.01,
                               tooltip="Weight of the vanilla queries at the start of the schedule."),
                io.Float.Input("end_strength", default=DEFAULT.end_strength, min=0.0, max=1.0, step=0.01,
                               tooltip="Weight of the vanilla queries at end_percent (linear in between); "
                               "the reference's 0.81836735 (shown rounded)."),
                io.Float.Input("end_percent", default=DEFAULT.end_percent, min=0.0, max=1.0, step=0.01,
                               tooltip="Blending (and its extra UNet pass per step) stops here."),
            ],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model, start_strength, end_strength, end_percent):
        story = story_of(model, "ConsiStory Query Blend")
        settings = BlendSettings(start_strength=start_strength, end_strength=end_strength, end_percent=end_percent)
        return io.NodeOutput(with_parts(model, story, blend=QueryBlendPass(story.run, settings, model_sampling(model))))
