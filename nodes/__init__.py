"""The pack's nodes: one module per node, each only declaring its inputs and calling the
runtime (consistory_patches). Node ids never change, so saved workflows keep loading."""
from .bank_latent import BankLatent
from .collect_features import CollectFeatures
from .feature_injection import FeatureInjection
from .freeu import BlockFreeU
from .make_anchor_bank import MakeAnchorBank
from .mask_preview import MaskPreview
from .query_blend import QueryBlend
from .save_load_bank import LoadAnchorBank, SaveAnchorBank
from .story_prompts import StoryPrompts
from .subject_driven_attention import SubjectDrivenSelfAttention
from .subject_from_image import SubjectFromImage
from .subject_masks import SubjectMaskSettings
from .use_anchors import UseAnchors

NODE_CLASS_MAPPINGS = {
    "ConsiStoryStoryPrompts": StoryPrompts,
    "ConsiStorySubjectMasks": SubjectMaskSettings,
    "ConsiStorySDSA": SubjectDrivenSelfAttention,
    "ConsiStoryMaskPreview": MaskPreview,
    "ConsiStoryQueryBlend": QueryBlend,
    "ConsiStoryFeatureInjection": FeatureInjection,
    "ConsiStoryCollectFeatures": CollectFeatures,
    "ConsiStoryAnchorBank": MakeAnchorBank,
    "ConsiStorySaveAnchorBank": SaveAnchorBank,
    "ConsiStoryLoadAnchorBank": LoadAnchorBank,
    "ConsiStoryUseAnchors": UseAnchors,
    "ConsiStoryBankLatent": BankLatent,
    "ConsiStorySubjectFromImage": SubjectFromImage,
    "ConsiStoryFreeU": BlockFreeU,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ConsiStoryStoryPrompts": "ConsiStory Story Prompts",
    "ConsiStorySubjectMasks": "ConsiStory Subject Masks",
    "ConsiStorySDSA": "ConsiStory SDSA (shared attention)",
    "ConsiStoryMaskPreview": "ConsiStory Mask Preview",
    "ConsiStoryQueryBlend": "ConsiStory Query Blend",
    "ConsiStoryFeatureInjection": "ConsiStory Feature Injection",
    "ConsiStoryCollectFeatures": "ConsiStory Collect Features",
    "ConsiStoryAnchorBank": "ConsiStory Anchor Bank",
    "ConsiStorySaveAnchorBank": "ConsiStory Save Anchor Bank",
    "ConsiStoryLoadAnchorBank": "ConsiStory Load Anchor Bank",
    "ConsiStoryUseAnchors": "ConsiStory Use Anchors",
    "ConsiStoryBankLatent": "ConsiStory Bank Latent",
    "ConsiStorySubjectFromImage": "ConsiStory Subject From Image",
    "ConsiStoryFreeU": "ConsiStory FreeU (by up block)",
}
