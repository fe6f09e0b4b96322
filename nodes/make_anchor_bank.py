"""ConsiStory Anchor Bank: the anchors of a finished run, as a bank new images can reuse
(paper §4.4; what a bank holds: consistory_core.bank_file; recording: consistory_patches.anchor_record)."""
from __future__ import annotations

from ..consistory_patches.host_api import model_facts
from ..consistory_patches.story import run_of_samples, story_of
from .sockets import BANK, Bank, io, schema


class MakeAnchorBank(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryAnchorBank", display_name="ConsiStory Anchor Bank", category=BANK,
            description=("After a sampler run with anchors: what new prompts need to share those anchors' "
                         "subject later (save it with ConsiStory Save Anchor Bank, reuse it with Use Anchors)."),
            search_aliases=["save consistent character", "make subject"],
            inputs=[
                io.Model.Input("model", tooltip="The ConsiStory SDSA model (anchors > 0) the sampler used."),
                io.Latent.Input("samples", tooltip="That sampler's output: makes this node run after it."),
            ],
            outputs=[Bank.Output("bank", display_name="bank")])

    @classmethod
    def execute(cls, model, samples):
        story = story_of(model, "ConsiStory Anchor Bank")
        recorder = story.recorder
        if recorder is None:
            raise ValueError("ConsiStory Anchor Bank: the SDSA node has anchors = 0; set anchors to the "
                             "number of images that define the subject (e.g. 2)")
        two_passes = (story.injection or {}).get("mode") == "two passes"
        made_by = run_of_samples(model, story, samples, "ConsiStory Anchor Bank")  # one model may feed several samplers
        try:
            return io.NodeOutput(recorder.bank({**model_facts(model), "method": story.method()}, two_passes, made_by))
        except ValueError as e:
            raise ValueError(f"ConsiStory Anchor Bank: {e}") from None
