"""The bank-upload route's file handling without a server: only valid banks are kept, under a
safe name made of the stem and the content's hash, inside the given folder."""
import pytest

from consistory_testing.pack import runtime

routes = runtime("server_routes")
BankError = runtime("consistory_core.bank_file").BankError


@pytest.fixture
def bank_bytes(tmp_path):
    import torch
    bank_file = runtime("consistory_core.bank_file")
    d = bank_file.BankDescription(prompts=("a", "b"), subjects=(("a cat", ("cat",)),), positions=(((2,),), ((2,),)),
                                  word_subject=(0,), token_length=77, model_family="SDXL", context_dim=16)
    bank = bank_file.AnchorBank(torch.linspace(10, 1, 3, dtype=torch.float64), torch.zeros(3, 2, 4, 6, 8),
                                {"cond": {"context": torch.zeros(2, 77, 16)}}, d)
    bank.save(tmp_path / "b.safetensors")
    return (tmp_path / "b.safetensors").read_bytes()


@pytest.mark.parametrize("name, stem", [("my bank.safetensors", "my_bank"), ("../../etc/passwd", "passwd"),
                                        ("..\\..\\win.ini", "win_ini"), ("", "bank"), ("...", "bank")])
def test_names_keep_only_safe_characters_and_no_folders(name, stem):
    assert routes.safe_stem(name) == stem


def test_a_bank_is_kept_once_under_its_hash_and_anything_else_leaves_nothing(tmp_path, bank_bytes):
    folder = tmp_path / "banks"
    kept = routes.keep_bank(bank_bytes, "../story", str(folder))
    assert kept["file"].startswith("story_") and kept["bytes"] == len(bank_bytes)
    assert (folder / kept["file"]).read_bytes() == bank_bytes
    assert routes.keep_bank(bank_bytes, "../story", str(folder)) == kept  # the same bank: the same file
    with pytest.raises(BankError, match="the file cannot be read as a .safetensors file"):
        routes.keep_bank(b"not a bank", "junk", str(folder))
    with pytest.raises(BankError, match="is not a ConsiStory anchor bank"):
        from safetensors.torch import save
        import torch
        routes.keep_bank(save({"x": torch.zeros(1)}), "other", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == [kept["file"]]  # no temporary or rejected file stays
