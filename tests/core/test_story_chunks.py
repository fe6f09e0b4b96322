"""Splitting a story for several servers (consistory_run.servers) without a server: chunks in
scene order numbered after the scenes before them, and the settings a bank dictates."""

import pytest
import torch

from consistory_core.bank_file import AnchorBank, BankDescription
from consistory_run.servers import StoryError, chunk_graph, chunks_of, settings_from_bank

TINY = {"class_type": "ConsiStoryTinySDXLCheckpoint", "inputs": {"weight_seed": 0}}


def test_chunks_cover_the_scenes_in_order_and_know_what_came_before():
    chunks = chunks_of(list("abcdefg"), 3)
    assert [c.scenes for c in chunks] == [("a", "b", "c"), ("d", "e", "f"), ("g",)]
    assert [c.first for c in chunks] == [0, 3, 6] and [c.index for c in chunks] == [0, 1, 2]


def _bank(tmp_path, method, origin="generated"):
    d = BankDescription(prompts=("a", "b"), subjects=(("an old man with a hat", ("man", "hat")),),
                        positions=(((2,), (5,)), ((2,), (5,))), word_subject=(0, 0), token_length=77,
                        model_family="SDXL", context_dim=16, method=method, origin=origin)
    AnchorBank(torch.linspace(10, 1, 3, dtype=torch.float64), torch.zeros(3, 2, 4, 6, 8),
               {"cond": {"context": torch.zeros(2, 77, 16)}}, d).save(tmp_path / "b.safetensors")
    return tmp_path / "b.safetensors"


def test_the_graph_of_a_chunk_reuses_the_bank_with_the_banks_words_and_method(tmp_path):
    blend = {"start_strength": 0.9}
    s = settings_from_bank(_bank(tmp_path, {"blend": blend, "injection": None}), TINY, steps=6, sampler="euler")
    assert (s.subject, s.words, s.blend, s.inject) == ("an old man with a hat", "man, hat", True, False)
    chunk = chunks_of(["x", "y", "z"], 2)[1]
    g = chunk_graph(chunk, "output/b.safetensors", s, "p")
    assert g["latent"]["class_type"] == "ConsiStoryBankLatent" and g["latent"]["inputs"]["first"] == 2
    assert g["story"]["inputs"]["scenes"] == "z" and g["load_bank"]["inputs"]["bank_name"] == "output/b.safetensors"
    assert g["save"]["inputs"]["filename_prefix"] == "p" and "inject" not in g and "blend" in g
    photo = settings_from_bank(_bank(tmp_path, {}, origin="photo"), TINY)
    assert photo.blend and photo.inject  # a photo bank takes any settings: the default method


def test_a_two_pass_bank_is_refused_with_the_reason(tmp_path):
    with pytest.raises(StoryError, match="two-pass Feature Injection"):
        settings_from_bank(_bank(tmp_path, {"blend": None, "injection": {"mode": "two passes"}}), TINY)
