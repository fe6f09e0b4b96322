"""The bank's typed description and the settings' JSON: what a format-1 bank written by the
first release holds still loads; a newer format is refused naming both versions."""
import json
from pathlib import Path

import pytest
import torch

from consistory_core.bank_file import VERSION, AnchorBank, BankDescription, BankError
from consistory_core.settings import (BlendSettings, InjectionSettings, MaskSettings, SettingsError,
                                      SharingSettings)

FORMAT_1_BANK = Path(__file__).resolve().parents[1] / "fixtures" / "bank_format1.safetensors"


def test_a_format_1_bank_of_the_first_release_loads_with_every_setting():
    """tests/fixtures/bank_format1.safetensors was written by the pack before the typed schema
    (2 anchors of the tiny model, 64x64 px, 4 euler steps)."""
    bank = AnchorBank.load(FORMAT_1_BANK)
    d = bank.description
    assert d.prompts == ("a photo of an old man with a hat walking in a park",
                         "a photo of an old man with a hat reading a book")
    assert d.subjects == (("an old man with a hat", ("man", "hat")),) and d.word_subject == (0, 0)
    assert d.positions == (((6,), (9,)), ((6,), (9,))) and d.token_length == 77
    assert d.sharing == SharingSettings(dropout=0.5, dropout_seed=0, anchors=2, start_percent=0.0, end_percent=1.0,
                                        blocks="output (paper)", masks=MaskSettings(20, "low (latent/4)", 1.0))
    assert (d.model_family, d.context_dim) == ("SDXL", 64) and d.schedule.startswith("4 model calls")
    assert bank.inputs.shape == (4, 2, 4, 8, 8) and bank.anchors == 2


def test_the_description_writes_the_format_1_json_it_reads(tmp_path):
    bank = AnchorBank.load(FORMAT_1_BANK)
    bank.save(tmp_path / "again.safetensors")
    again = AnchorBank.load(tmp_path / "again.safetensors")
    assert again.description == bank.description and torch.equal(again.inputs, bank.inputs)
    from safetensors import safe_open
    with safe_open(str(FORMAT_1_BANK), framework="pt") as f:
        old = json.loads(f.metadata()["info"])
    new = bank.description.to_json()
    for key in ("prompts", "subjects", "positions", "word_subject", "token_length", "schedule", "model_family",
                "context_dim"):
        assert new[key] == old[key], key
    for key, value in new["settings"].items():  # what a format-1 reader reads is written the same way
        assert old["settings"][key] == value, key


def test_a_newer_bank_format_is_refused_naming_both_versions(tmp_path):
    from safetensors.torch import save_file
    bank = AnchorBank.load(FORMAT_1_BANK)
    path = tmp_path / "future.safetensors"
    save_file(bank.tensors(), str(path), metadata={**bank.metadata(), "version": str(VERSION + 1)})
    with pytest.raises(BankError, match=f"format version {VERSION + 1} bank; .* reads format versions up to {VERSION}"):
        AnchorBank.load(path)


def test_a_header_that_contradicts_the_tensors_is_refused(tmp_path):
    from safetensors.torch import save_file
    bank = AnchorBank.load(FORMAT_1_BANK)
    path = tmp_path / "edited.safetensors"
    save_file(bank.tensors(), str(path), metadata={**bank.metadata(), "latent_size": "16x16"})
    with pytest.raises(BankError, match="header says latent_size 16x16, its tensors 8x8"):
        AnchorBank.load(path)


@pytest.mark.parametrize("value", [
    SharingSettings(dropout=0.25, dropout_seed=7, anchors=3, start_percent=0.1, end_percent=0.9,
                    blocks="middle + output", masks=MaskSettings(10, "low + high", 1.2)),
    BlendSettings(0.8, 0.7, 0.2), InjectionSettings(0.5, 0.2, 0.4, 300, 9), MaskSettings(5, "high (latent/2)", 0.9)])
def test_settings_round_trip_through_json(value):
    data = json.loads(json.dumps(value.to_json()))
    assert data["version"] == 1 and type(value).from_json(data) == value


def test_settings_of_a_newer_format_are_refused_naming_both_versions():
    data = {**SharingSettings().to_json(), "version": 2}
    with pytest.raises(SettingsError, match="sharing settings are format version 2; .* up to 1"):
        SharingSettings.from_json(data)


def test_settings_refuse_what_cannot_run():
    with pytest.raises(SettingsError, match="start_percent 0.5 is after end_percent 0.2"):
        SharingSettings(start_percent=0.5, end_percent=0.2)
    with pytest.raises(SettingsError, match="blocks 'all'"):
        SharingSettings(blocks="all")
    with pytest.raises(SettingsError, match="start_percent 0.4 is after end_percent 0.3"):
        InjectionSettings(start_percent=0.4, end_percent=0.3)


def test_a_bank_whose_prompts_and_latents_disagree_is_refused(tmp_path):
    from safetensors.torch import save_file
    bank = AnchorBank.load(FORMAT_1_BANK)
    d = bank.description
    one = BankDescription(prompts=d.prompts[:1], subjects=d.subjects, positions=d.positions[:1],
                          word_subject=d.word_subject, token_length=d.token_length, sharing=d.sharing)
    path = tmp_path / "odd.safetensors"
    save_file(bank.tensors(), str(path), metadata={**bank.metadata(), "info": json.dumps(one.to_json())})
    with pytest.raises(BankError, match="2 anchor latents for 1 anchor prompts"):
        AnchorBank.load(path)
