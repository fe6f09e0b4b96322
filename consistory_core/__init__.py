"""ConsiStory, the method itself: pure torch, no ComfyUI import.

Modules follow the paper (Tewel et al., ACM TOG 2024):
tokens (subject tokens), masks + otsu (§4.1 subject masks), sdsa (§4.1 shared attention,
§4.4 anchors), dropout (§4.2), schedule (step tracking), grid (token grids).
"""
from .dropout import keep_draw, step_seed
from .grid import downscale_of, token_grid
from .masks import SubjectMaskTracker, masks_from_maps, subject_token_maps, token_weights
from .otsu import otsu_mask, otsu_threshold
from .schedule import StepClock, StepEvent
from .sdsa import SharedKeys, anchor_mapping, image_keys, plan_shared_keys, shared_self_attention
from .tokens import SubjectWordMissing, find_piece_positions, repeated_positions, subject_positions

__all__ = [
    "keep_draw", "step_seed", "downscale_of", "token_grid", "SubjectMaskTracker",
    "masks_from_maps", "subject_token_maps", "token_weights", "otsu_mask", "otsu_threshold", "StepClock",
    "StepEvent", "SharedKeys", "anchor_mapping", "image_keys", "plan_shared_keys",
    "shared_self_attention", "SubjectWordMissing", "find_piece_positions",
    "repeated_positions", "subject_positions",
]
