"""ConsiStory Feature Injection: DIFT correspondence feature injection (paper §4.3;
runtime: consistory_patches.injection)."""
from __future__ import annotations

from ..consistory_core.settings import InjectionSettings, SettingsError
from ..consistory_patches.dift_capture import dift_sigma
from ..consistory_patches.host_api import model_sampling
from ..consistory_patches.injection import Injector, OnePassFeatures
from ..consistory_patches.story import story_of, with_parts
from ..consistory_patches.windows import Window
from .sockets import REFINE, Features, io, schema


class FeatureInjection(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryFeatureInjection", display_name="ConsiStory Feature Injection", category=REFINE,
            description="Pulls fine subject details together across the batch by DIFT correspondence.",
            search_aliases=["DIFT correspondence", "consistent details"],
            inputs=[
                io.Model.Input("model", tooltip="A model patched by ConsiStory SDSA (and Query Blend)."),
                io.Float.Input("alpha", default=0.8, min=0.0, max=1.0, step=0.05, tooltip=
                               "How far a subject patch's output moves to its match in another image (0 = off)."),
                io.Float.Input("start_percent", default=0.1, min=0.0, max=1.0, step=0.01,
                               tooltip="Injection starts here in the schedule."),
                io.Float.Input("end_percent", default=0.33, min=0.0, max=1.0, step=0.01,
                               tooltip="Injection ends here."),
                io.Int.Input("dift_timestep", default=261, min=1, max=999, tooltip=
                             "One-pass mode: the timestep (of 1000) at which correspondence features are read."),
                io.Int.Input("dift_noise_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip=
                             "One-pass mode: seed of the noise added to reach the DIFT timestep."),
                Features.Input("features", optional=True, tooltip="From ConsiStory Collect Features after a first "
                               "run with the same seed (exact, two passes). Without it: one pass."),
            ],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model, alpha, start_percent, end_percent, dift_timestep, dift_noise_seed, features=None):
        story = story_of(model, "ConsiStory Feature Injection")
        try:
            s = InjectionSettings(alpha=alpha, start_percent=start_percent, end_percent=end_percent,
                                  dift_timestep=dift_timestep, dift_noise_seed=dift_noise_seed)
        except SettingsError as e:
            raise ValueError(f"ConsiStory Feature Injection: {e}") from None
        if s.alpha == 0:
            return io.NodeOutput(model)
        sampling = model_sampling(model)
        injector = Injector(story.run, s.alpha, Window.of(s.start_percent, s.end_percent, sampling), features)
        one_pass = None
        if features is None:
            one_pass = OnePassFeatures(injector, story.dift, dift_sigma(sampling, s.dift_timestep), s.dift_noise_seed)
        mode = {"mode": "one pass" if features is None else "two passes"}
        m = with_parts(model, story, one_pass=one_pass, injection={**s.to_json(), **mode}, injector=injector)
        if story.tokens is None:  # a UNet; a DiT's attention override injects (consistory_patches.joint_attention)
            m.set_model_attn1_output_patch(lambda n, extra: injector.output_patch(n, extra))
        return io.NodeOutput(m)
