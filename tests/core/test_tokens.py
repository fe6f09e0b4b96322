"""Tests for consistory_core.tokens (subject token positions)."""
import random

import pytest

from consistory_core.tokens import (SubjectWordMissing, find_piece_positions,
                                    repeated_positions, subject_positions)


def naive_positions(ids, pieces):
    """Every index covered by some contiguous occurrence of ``pieces``, by brute force."""
    covered = []
    n = len(pieces)
    if n == 0:
        return []
    for start in range(len(ids)):
        match = True
        for off in range(n):
            if start + off >= len(ids) or ids[start + off] != pieces[off]:
                match = False
                break
        if match:
            for off in range(n):
                if start + off not in covered:
                    covered.append(start + off)
    return sorted(covered)


def test_multi_piece_word_single_occurrence():
    """All pieces of a 3-piece word are returned, a partial run is not."""
    ids = [49406, 10, 11, 99, 10, 11, 12, 5, 49407, 49407]
    assert find_piece_positions(ids, [10, 11, 12]) == [4, 5, 6]


def test_repeated_occurrences_all_found():
    """Every occurrence of a word contributes all of its pieces."""
    ids = [1, 7, 8, 2, 7, 8, 3, 7, 8]
    assert find_piece_positions(ids, [7, 8]) == [1, 2, 4, 5, 7, 8]


def test_overlapping_runs():
    """Overlapping occurrences (5 5 inside 5 5 5) cover their union without duplicates."""
    assert find_piece_positions([0, 5, 5, 5, 0], [5, 5]) == [1, 2, 3]
    assert find_piece_positions([4, 1, 4, 1, 4], [4, 1, 4]) == [0, 1, 2, 3, 4]


def test_adjacent_runs():
    """Back-to-back occurrences are both found."""
    assert find_piece_positions([7, 8, 7, 8, 9], [7, 8]) == [0, 1, 2, 3]


def test_absent_word_and_edge_cases():
    """Absent word, word longer than the prompt, empty pieces -> []."""
    assert find_piece_positions([1, 2, 3], [4]) == []
    assert find_piece_positions([1, 2, 3], [2, 4]) == []
    assert find_piece_positions([1, 2], [1, 2, 3]) == []
    assert find_piece_positions([1, 2], []) == []
    assert find_piece_positions([], [1]) == []


def test_random_sequences_match_bruteforce():
    """On random small-alphabet sequences the positions equal a brute-force scan."""
    rng = random.Random(1234)
    for _ in range(300):
        ids = [rng.randrange(3) for _ in range(rng.randrange(0, 25))]
        pieces = [rng.randrange(3) for _ in range(rng.randrange(1, 4))]
        assert find_piece_positions(ids, pieces) == naive_positions(ids, pieces), (ids, pieces)


def test_subject_positions_per_word():
    """Each word maps to the positions of all its pieces/occurrences."""
    ids = [49406, 320, 2368, 1035, 593, 320, 2368, 49407]
    words = {"cat": [2368], "top hat": [1035, 593]}
    assert subject_positions(ids, words, "a cat top hat a cat") == {"cat": [2, 6], "top hat": [3, 4]}


def test_subject_positions_missing_word_message():
    """A missing word raises SubjectWordMissing naming both the prompt and the word."""
    ids = [49406, 320, 2368, 49407]
    prompt = "a photo of a kitten"
    with pytest.raises(SubjectWordMissing) as info:
        subject_positions(ids, {"kitten": [2368], "dragon": [9999]}, prompt)
    msg = str(info.value)
    assert prompt in msg
    assert "dragon" in msg
    assert "'kitten'" not in msg  # the found word is not the one blamed
    assert isinstance(info.value, ValueError)


def test_subject_positions_empty_pieces_raise():
    """A word with no BPE pieces is an error naming the word."""
    with pytest.raises(SubjectWordMissing, match="ghost"):
        subject_positions([1, 2, 3], {"ghost": []}, "boo")


def test_repeated_positions_periodic():
    """Positions are copied to every repetition of the prompt, period own_length."""
    positions = [2, 3, 10]
    got = repeated_positions(positions, 77, 231)
    expected = []
    for m in range(3):
        for p in positions:
            expected.append(p + 77 * m)
    assert got == expected
    assert repeated_positions([5], 77, 77) == [5]


def test_repeated_positions_not_a_multiple():
    """A context that is not a whole number of repetitions is rejected."""
    with pytest.raises(ValueError, match="not a repetition"):
        repeated_positions([1], 77, 100)
