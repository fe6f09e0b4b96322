"""What every node declaration shares: the V3 node API version the pack is declared against,
the pack's socket types and its node menu categories.

``comfy_api.v0_0_2`` is pinned (not ``latest``): ComfyUI 0.3.75 and 0.38.1 both ship it, so a
node declared here means the same on both hosts."""
from __future__ import annotations

import dataclasses

from comfy_api.v0_0_2 import ComfyExtension, io  # noqa: F401  (ComfyExtension: for nodes/__init__)

SUBJECT_TYPE = "CONSISTORY_SUBJECT"              # StorySubject: prompts and subject token positions
MASK_SETTINGS_TYPE = "CONSISTORY_MASK_SETTINGS"  # MaskSettings
FEATURES_TYPE = "CONSISTORY_FEATURES"            # CorrespondenceFeatures of a first run
BANK_TYPE = "CONSISTORY_BANK"                    # AnchorBank

Subject = io.Custom(SUBJECT_TYPE)
MaskSettingsSocket = io.Custom(MASK_SETTINGS_TYPE)
Features = io.Custom(FEATURES_TYPE)
Bank = io.Custom(BANK_TYPE)

STORY = "ConsiStory/story"    # prompts, shared attention, masks
REFINE = "ConsiStory/refine"  # query blending, feature injection
BANK = "ConsiStory/bank"      # anchors kept in files and reused


def schema(**fields) -> io.Schema:
    """The host's ``io.Schema`` of ``fields``, leaving out the fields only later hosts know
    (``search_aliases`` came after 0.3.75): the same declaration loads on every host, and the
    node search of today's frontend finds the aliases."""
    known = {f.name for f in dataclasses.fields(io.Schema)}
    return io.Schema(**{name: value for name, value in fields.items() if name in known})
