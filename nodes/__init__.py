"""ComfyUI glue of the pack: one module per node, the run state in story_run."""
from .anchor_bank import MakeAnchorBank
from .bank_files import LoadAnchorBank, SaveAnchorBank
from .collect_features import CollectFeatures
from .feature_injection import FeatureInjection
from .mask_preview import MaskPreview
from .query_blend import QueryBlend
from .sdsa import SubjectDrivenSelfAttention
from .story_prompts import StoryPrompts
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
}
