"""The anchor bank file format: round trip, schedule/size/model checks, broken files."""
import dataclasses
import json

import pytest
import torch

from consistory_core.bank_file import FINGERPRINT_OF, AnchorBank, BankDescription, BankError


def bank(steps=5, k=2, hw=(6, 8)):
    g = torch.Generator().manual_seed(0)
    return AnchorBank(torch.linspace(10, 0.1, steps, dtype=torch.float64), torch.randn(steps, k, 4, *hw, generator=g),
                      {"cond": {"context": torch.randn(k, 77, 16, generator=g), "y": torch.randn(k, 8, generator=g)},
                       "uncond": {"context": torch.randn(k, 154, 16, generator=g), "y": torch.randn(k, 8, generator=g)}},
                      BankDescription(prompts=("a", "b"), subjects=(("a cat", ("cat",)),), positions=(((2,),), ((2,),)),
                                      word_subject=(0,), token_length=77, schedule="5 calls", model_family="SDXL",
                                      context_dim=16))


def test_round_trip_keeps_every_tensor_and_fact(tmp_path):
    b = bank()
    b.save(tmp_path / "b.safetensors")
    c = AnchorBank.load(tmp_path / "b.safetensors")
    assert torch.equal(c.sigmas, b.sigmas) and torch.equal(c.inputs, b.inputs)
    for chunk in ("cond", "uncond"):
        for name in ("context", "y"):
            assert torch.equal(c.conditioning[chunk][name], b.conditioning[chunk][name])
    assert c.description == b.description and c.anchors == 2 and c.latent_hw == (6, 8)


def test_metadata_states_format_version_family_size_words_and_token_counts(tmp_path):
    from safetensors import safe_open
    bank().save(tmp_path / "b.safetensors")
    with safe_open(str(tmp_path / "b.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert (meta["format"], meta["version"], meta["model_family"], meta["latent_size"], meta["anchors"]) == \
        ("consistory-anchor-bank", "2", "SDXL", "6x8", "2")
    assert json.loads(meta["subject_words"]) == [["a cat", ["cat"]]] and json.loads(meta["token_counts"]) == [77, 77]


def test_evaluations_are_matched_by_position_and_sigma_and_a_mismatch_names_both():
    b = bank()
    for i, s in enumerate(b.sigmas.tolist()):
        assert b.is_at(i, s) and not b.is_at(i, s + 0.5)
    assert not b.is_at(len(b.sigmas), float(b.sigmas[-1]))
    assert "model evaluation 2 is at sigma 5; the bank's is at sigma" in str(b.mismatch(1, 5.0))
    assert f"the bank has only {len(b.sigmas)}" in str(b.mismatch(len(b.sigmas), 0.1))


def test_checks_name_what_differs():
    b = bank()
    b.check_model("SDXL", 16)
    b.check_latent((4, 6, 8))
    with pytest.raises(BankError, match="model family: bank SDXL, model SD15"):
        b.check_model("SD15", 16)
    with pytest.raises(BankError, match="text context width: bank 16, model 2048"):
        b.check_model("SDXL", 2048)
    with pytest.raises(BankError, match=r"made at 64x48 px \(latent 6x8\); this run is 64x64 px"):
        b.check_latent((4, 8, 8))
    with pytest.raises(BankError, match="4-channel latents, this run 16"):
        b.check_latent((16, 6, 8))


def with_model(b, fingerprint, patches, fingerprint_of=FINGERPRINT_OF):
    b.description = dataclasses.replace(b.description, model_fingerprint=fingerprint, model_patches=patches,
                                        fingerprint_of=fingerprint_of)
    return b


def test_weights_and_loras_are_checked_and_an_older_lora_bank_by_its_loras(tmp_path):
    lora = "12 weights patched, strengths 0.8"
    b = with_model(bank(), "aaaa", lora)
    b.save(tmp_path / "b.safetensors")
    assert AnchorBank.load(tmp_path / "b.safetensors").description.fingerprint_of == FINGERPRINT_OF
    b.check_model("SDXL", 16, "aaaa", lora, FINGERPRINT_OF)
    with pytest.raises(BankError, match="other model weights or LoRAs"):
        b.check_model("SDXL", 16, "bbbb", lora, FINGERPRINT_OF)
    # a bank of an older version hashed its LoRAs written into the weights: it is taken on its LoRAs
    older = with_model(bank(), "cccc", lora, fingerprint_of="")
    older.check_model("SDXL", 16, "bbbb", lora, FINGERPRINT_OF)
    with pytest.raises(BankError, match="other model weights or LoRAs"):
        older.check_model("SDXL", 16, "bbbb", "12 weights patched, strengths 0.5", FINGERPRINT_OF)
    with pytest.raises(BankError, match="other model weights or LoRAs"):  # no LoRAs: its hash is the checkpoint's
        with_model(bank(), "cccc", "none", fingerprint_of="").check_model("SDXL", 16, "bbbb", "none", FINGERPRINT_OF)


def test_saving_over_a_larger_file_leaves_a_readable_bank(tmp_path):
    path = tmp_path / "b.safetensors"
    bank(steps=20).save(path)
    bank(steps=3).save(path)
    assert AnchorBank.load(path).inputs.shape[0] == 3


@pytest.mark.parametrize("damage,match", [
    ("truncated", "cannot be read as a .safetensors file"),
    ("empty", "cannot be read as a .safetensors file"),
    ("other safetensors", "is not a ConsiStory anchor bank"),
    ("newer version", "format version 9 bank; this version of comfyui-consistory reads format versions up to 3"),
    ("missing tensor", "incomplete anchor bank"),
])
def test_broken_files_are_refused_clearly(tmp_path, damage, match):
    from safetensors.torch import save_file
    path = tmp_path / "b.safetensors"
    b = bank()
    b.save(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other safetensors":
        path.unlink()
        save_file({"x": torch.zeros(1)}, str(path))
    elif damage == "newer version":
        path.unlink()
        save_file(b.tensors(), str(path), metadata={**b.metadata(), "version": "9"})
    else:
        tensors = b.tensors()
        del tensors["inputs"]
        path.unlink()
        save_file(tensors, str(path), metadata=b.metadata())
    with pytest.raises(BankError, match=match):
        AnchorBank.load(path)


def photo_bank(masks=True):
    import dataclasses
    b = bank()
    d = dataclasses.replace(b.description, origin="photo", method={})
    return dataclasses.replace(b, description=d, subject_masks=torch.rand(2, 6, 8) if masks else None)


def test_a_photo_bank_is_format_3_with_its_masks_and_a_generated_one_stays_format_2(tmp_path):
    from safetensors import safe_open
    for name, b, version in [("generated", bank(), "2"), ("photo", photo_bank(), "3"),
                             ("photo_no_mask", photo_bank(masks=False), "3")]:
        b.save(tmp_path / f"{name}.safetensors")
        with safe_open(str(tmp_path / f"{name}.safetensors"), framework="pt") as f:
            assert f.metadata()["version"] == version, name
        again = AnchorBank.load(tmp_path / f"{name}.safetensors")
        assert again.description == b.description
        assert (again.subject_masks is None) == (b.subject_masks is None)
        if b.subject_masks is not None:
            assert torch.equal(again.subject_masks, b.subject_masks)
    assert "origin" not in bank().description.to_json()  # format-2 info unchanged


def test_a_photo_bank_takes_any_blend_and_injection_settings_a_generated_one_does_not():
    import dataclasses
    method = {"blend": {"start_strength": 0.9}, "injection": None}
    photo_bank().check_method(method)
    generated = dataclasses.replace(bank(), description=dataclasses.replace(
        bank().description, method={"blend": None, "injection": None}))
    with pytest.raises(BankError, match="made with ConsiStory Query Blend not used"):
        generated.check_method(method)


@pytest.mark.parametrize("broken, match", [("masks", r"subject masks \(3, 6, 8\) for 2 anchors"),
                                           ("origin", "unknown origin 'drawing'")])
def test_a_photo_bank_with_wrong_masks_or_origin_is_refused(tmp_path, broken, match):
    import dataclasses
    b = photo_bank()
    if broken == "masks":
        b = dataclasses.replace(b, subject_masks=torch.rand(3, 6, 8))
    else:
        b = dataclasses.replace(b, description=dataclasses.replace(b.description, origin="drawing"))
    b.save(tmp_path / "b.safetensors")
    with pytest.raises(BankError, match=match):
        AnchorBank.load(tmp_path / "b.safetensors")
