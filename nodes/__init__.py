"""ComfyUI glue of the pack: one module per node, the run state in story_run."""
from .mask_preview import MaskPreview
from .sdsa import SubjectDrivenSelfAttention
from .story_prompts import StoryPrompts
from .subject_masks import SubjectMaskSettings

NODE_CLASS_MAPPINGS = {
    "ConsiStoryStoryPrompts": StoryPrompts,
    "ConsiStorySubjectMasks": SubjectMaskSettings,
    "ConsiStorySDSA": SubjectDrivenSelfAttention,
    "ConsiStoryMaskPreview": MaskPreview,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ConsiStoryStoryPrompts": "ConsiStory Story Prompts",
    "ConsiStorySubjectMasks": "ConsiStory Subject Masks",
    "ConsiStorySDSA": "ConsiStory SDSA (shared attention)",
    "ConsiStoryMaskPreview": "ConsiStory Mask Preview",
}
