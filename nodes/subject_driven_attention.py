"""ConsiStory SDSA: subject-driven shared self-attention on a model clone
(paper §4.1, dropout §4.2, anchors §4.4; runtime: consistory_patches.story)."""
from __future__ import annotations

from ..consistory_core import anchor_mapping
from ..consistory_core.settings import BLOCK_GROUPS, DIT_POSITIONS, MaskSettings, SettingsError, SharingSettings
from ..consistory_patches.story import patch_story
from .sockets import STORY, MaskSettingsSocket, Subject, io, schema


class SubjectDrivenSelfAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStorySDSA", display_name="ConsiStory SDSA (shared attention)", category=STORY,
            description=("Shares the subject between the images of a batch: each image's self-attention "
                         "also sees the subject patches of the other images."),
            search_aliases=["consistent character", "consistent subject", "shared self-attention",
                            "subject-driven self-attention", "consistory"],
            inputs=[
                io.Model.Input("model", tooltip="An SDXL, SD 1.5 or SD 2.x model (epsilon, v-prediction, EDM, "
                               "few-step) or a Flux.1 model (dev, schnell; ComfyUI 0.3.60+); it is cloned, not "
                               "changed."),
                Subject.Input("subject", tooltip="From ConsiStory Story Prompts."),
                io.Float.Input("dropout", default=0.5, min=0.0, max=1.0, step=0.05, tooltip=
                               "Chance that a subject patch of another image is hidden at a step. Lower: "
                               "more consistent, less pose variety."),
                io.Int.Input("dropout_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip=
                             "Seed of the dropout draws (its own generator; the sampler's noise is untouched)."),
                io.Int.Input("anchors", default=2, min=0, max=64, tooltip=
                             "The paper's 2: the first 2 images share with each other and the others see "
                             "only them (with 2 images or fewer, all share). 0: every image shares with every "
                             "other."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Where in the schedule sharing starts. The masks come from the first step, "
                               "so sharing starts at the second step at the earliest: a 1-step sampler shares "
                               "nothing."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Where in the schedule sharing ends."),
                io.Combo.Input("blocks", options=list(BLOCK_GROUPS), default="output (paper)", tooltip=
                               "UNet blocks whose self-attention is shared; the paper uses the up (output) blocks. "
                               "On Flux: output = the single-stream blocks (the later two thirds), middle + output "
                               "= also the later half of the double-stream blocks, input + middle + output = every "
                               "block."),
                MaskSettingsSocket.Input("mask_settings", optional=True,
                                         tooltip="From ConsiStory Subject Masks; defaults if absent."),
                io.Combo.Input("dit_positions", options=list(DIT_POSITIONS), default=DIT_POSITIONS[0], optional=True,
                               tooltip="Flux only: where the other images' subject keys sit. Flux puts each token's "
                               "position into its key (RoPE), so shared keys at their own positions pull each "
                               "image toward the other images' layout; shifted (AlignedGen's ShiftPE) moves them "
                               "beside the image, from (i, j) to (i, j + width). UNet models ignore it."),
            ],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model, subject, dropout, dropout_seed, anchors, start_percent, end_percent,
                blocks, mask_settings=None, dit_positions=DIT_POSITIONS[0]):
        try:
            sharing = SharingSettings(dropout=dropout, dropout_seed=dropout_seed, anchors=anchors,
                                      start_percent=start_percent, end_percent=end_percent, blocks=blocks,
                                      masks=mask_settings or MaskSettings(), dit_positions=dit_positions)
        except SettingsError as e:
            raise ValueError(f"ConsiStory SDSA: {e}") from None
        m, _ = patch_story(model, subject, sharing, anchor_mapping(subject.images, anchors))
        return io.NodeOutput(m)
