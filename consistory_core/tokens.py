"""Subject token positions in a prompt's token sequence (paper §4.1, "subject tokens").

The reference keeps only the first BPE piece of each subject word and fails with an
index error when a word is absent. Here every piece of every occurrence is kept, a word
may be a short phrase ("top hat"), and an absent word raises an error naming the prompt
and the word.
"""
from __future__ import annotations

from typing import Mapping, Sequence


class SubjectWordMissing(ValueError):
    """A subject word does not occur in one of the prompts."""


def find_piece_positions(token_ids: Sequence[int], pieces: Sequence[int]) -> list[int]:
    """Positions of every piece of every occurrence of ``pieces`` as a contiguous run.

    token_ids: the prompt's token ids (start/end/padding included), length L.
    pieces: the BPE ids of one word (or phrase), without start/end tokens.
    Returns sorted positions in [0, L); empty when the word does not occur.
    """
    n = len(pieces)
    if n == 0:
        return []
    ids = list(token_ids)
    found: list[int] = []
    for start in range(len(ids) - n + 1):
        if ids[start:start + n] == list(pieces):
            found.extend(range(start, start + n))
    return sorted(set(found))


def subject_positions(token_ids: Sequence[int], word_pieces: Mapping[str, Sequence[int]],
                      prompt: str) -> dict[str, list[int]]:
    """Positions of each subject word in one prompt.

    word_pieces: word -> its BPE ids. Raises SubjectWordMissing naming ``prompt`` and the
    first word that is not found.
    """
    out: dict[str, list[int]] = {}
    for word, pieces in word_pieces.items():
        if len(pieces) == 0:
            raise SubjectWordMissing(f"subject word {word!r} has no tokens")
        positions = find_piece_positions(token_ids, pieces)
        if not positions:
            raise SubjectWordMissing(
                f"subject word {word!r} does not occur in the prompt {prompt!r}; "
                "use the word exactly as it is written in every prompt (same spelling, "
                "singular/plural) or change the subject words")
        out[word] = positions
    return out


def repeated_positions(positions: Sequence[int], own_length: int, context_length: int) -> list[int]:
    """Positions after the host repeats a prompt of ``own_length`` tokens to ``context_length``.

    ComfyUI pads conditionings of different lengths by repeating them up to a common
    multiple of 77, so a token at p also sits at p + m*own_length.
    """
    if context_length % own_length:
        raise ValueError(f"context of {context_length} tokens is not a repetition of a "
                         f"{own_length}-token prompt")
    return [p + m * own_length for m in range(context_length // own_length) for p in positions]
