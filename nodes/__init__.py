"""The pack's nodes, declared with ComfyUI's V3 node API: one module per node, each only
declaring its inputs and calling the runtime (consistory_patches). Node ids never change, so
saved workflows keep loading; the host lists them through ``comfy_entrypoint``."""
from .bank_latent import BankLatent
from .collect_features import CollectFeatures
from .feature_injection import FeatureInjection
from .freeu import BlockFreeU
from .make_anchor_bank import MakeAnchorBank
from .mask_preview import MaskPreview
from .query_blend import QueryBlend
from .save_load_bank import LoadAnchorBank, SaveAnchorBank
from .sockets import ComfyExtension
from .story_prompts import StoryPrompts
from .story_world_checkpoint import StoryWorldCheckpoint
from .subject_driven_attention import SubjectDrivenSelfAttention
from .subject_from_image import SubjectFromImage
from .subject_masks import SubjectMaskSettings
from .use_anchors import UseAnchors

NODES = [StoryPrompts, SubjectMaskSettings, SubjectDrivenSelfAttention, MaskPreview, QueryBlend, FeatureInjection,
         CollectFeatures, MakeAnchorBank, SaveAnchorBank, LoadAnchorBank, UseAnchors, BankLatent, SubjectFromImage,
         BlockFreeU, StoryWorldCheckpoint]


class ConsiStoryExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def comfy_entrypoint() -> ConsiStoryExtension:
    """What the host calls to load the pack's nodes (ComfyUI 0.3.75 and later)."""
    return ConsiStoryExtension()
