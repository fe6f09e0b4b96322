"""Values that travel between ConsiStory nodes (custom socket types)."""
from __future__ import annotations

from dataclasses import dataclass

SUBJECT_TYPE = "CONSISTORY_SUBJECT"
MASK_SETTINGS_TYPE = "CONSISTORY_MASK_SETTINGS"


@dataclass(frozen=True)
class StorySubject:
    """The prompts of a story and where each subject word sits in each prompt's tokens.

    positions[i][k]: token positions of word k in prompt i (a context of token_length).
    word_subject[k]: which subject word k belongs to; subjects[s] = (text, words).
    """
    prompts: tuple
    subjects: tuple
    positions: tuple
    word_subject: tuple
    token_length: int

    @property
    def images(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class MaskSettings:
    """How subject masks are made from cross-attention (paper §4.1)."""
    window: int = 20
    resolution: str = "low (latent/4)"
    threshold_scale: float = 1.0

    RESOLUTIONS = {"low (latent/4)": (4,), "high (latent/2)": (2,), "low + high": (2, 4)}

    @property
    def downscales(self) -> tuple:
        return self.RESOLUTIONS[self.resolution]

FEATURES_TYPE = "CONSISTORY_FEATURES"


@dataclass(frozen=True)
class CorrespondenceFeatures:
    """What a first sampler run leaves for feature injection in a second one (§4.3).

    features (N, C, h, w): DIFT features of the cond half at ``sigma``, smoothed;
    mask_maps (N, K, h0, w0): the run's final window-mean subject maps.
    """
    features: object
    mask_maps: object
    sigma: float
    latent_hw: tuple
