"""The pack's socket types and node menu categories."""
SUBJECT_TYPE = "CONSISTORY_SUBJECT"              # StorySubject: prompts and subject token positions
MASK_SETTINGS_TYPE = "CONSISTORY_MASK_SETTINGS"  # MaskSettings
FEATURES_TYPE = "CONSISTORY_FEATURES"            # CorrespondenceFeatures of a first run
BANK_TYPE = "CONSISTORY_BANK"                    # AnchorBank

STORY = "ConsiStory/story"    # prompts, shared attention, masks
REFINE = "ConsiStory/refine"  # query blending, feature injection
BANK = "ConsiStory/bank"      # anchors kept in files and reused
