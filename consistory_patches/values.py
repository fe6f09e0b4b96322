"""Values that travel between the pack's nodes (their custom socket types carry these)."""
from __future__ import annotations

from dataclasses import dataclass


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
class CorrespondenceFeatures:
    """What a first sampler run leaves for feature injection in a second one (§4.3).

    features (N, C, h, w): DIFT features of the cond chunk at the DIFT timestep, smoothed;
    mask_maps (N, K, h0, w0): the run's final window-mean subject maps.
    """
    features: object
    mask_maps: object
