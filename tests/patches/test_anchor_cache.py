"""The anchor cache without a host: which calls play from it, its file round trip, and what
changes its identity."""
from types import SimpleNamespace

import pytest
import torch

from consistory_testing.pack import runtime

cache_module = runtime("consistory_patches.anchor_cache")
AnchorCache = cache_module.AnchorCache


def recorded_cache(place="cpu"):
    """A cache whose evaluation 0 (sampler pass, context 77, cond and uncond chunks) is kept
    by a call on the 2 anchors alone."""
    cache = AnchorCache(2, place)
    cache.use("settings-1")
    assert not cache.kept(0, "sampler", 77, (1, 0))
    rows = cache.slot(0, "sampler", 77, recording=True)
    assert rows.recording and rows.absent == 0 and rows.images(5) == slice(0, 2)
    x = torch.arange(2 * 3, dtype=torch.float32).reshape(2, 3)  # the anchors' rows
    assert rows.rows("maps", ("output", 1, 0), 0, x) is x
    rows.keep("k", ("output", 1, 0), 1, torch.ones(1, 4, 2))
    cache.done(rows, (1, 0))
    return cache, x


def test_a_recorded_evaluation_plays_its_anchors_rows_back_in_front():
    cache, x = recorded_cache()
    assert cache.kept(0, "sampler", 77, (0,)) and cache.kept(0, "sampler", 77, (1, 0))
    rows = cache.slot(0, "sampler", 77, recording=False)
    assert not rows.recording and rows.absent == 2 and rows.images(5) == slice(2, 5)
    new = torch.randn(3, 3)
    torch.testing.assert_close(rows.rows("maps", ("output", 1, 0), 0, new), torch.cat([x, new]), rtol=0, atol=0)
    assert cache.calls == {"recorded": 1, "played": 1}


def test_what_is_not_kept_yet():
    cache, _ = recorded_cache()
    assert not cache.kept(1, "sampler", 77, (0,))           # another evaluation
    assert not cache.kept(0, "sampler", 154, (0,))          # other prompts' token length
    assert not cache.kept(0, "dift", 77, (0,))              # the DIFT pass is its own
    assert not cache.kept(0, "sampler", 77, (2,))           # a chunk not recorded


def test_other_settings_empty_the_cache():
    cache, _ = recorded_cache()
    cache.use("settings-2")
    assert cache.entries == {} and not cache.kept(0, "sampler", 77, (0,))


def test_the_file_round_trip_keeps_entries_for_the_same_identity_only(tmp_path):
    cache, _ = recorded_cache()
    path = tmp_path / "b.anchor_cache"
    cache.save(path)
    other = AnchorCache(2)
    assert not other.load(path, "settings-2") and other.entries == {}
    assert other.load(path, "settings-1")
    assert set(other.entries) == set(cache.entries) and other.complete == cache.complete
    for key, value in cache.entries.items():
        torch.testing.assert_close(other.entries[key], value, rtol=0, atol=0)
    assert other.kept(0, "sampler", 77, (1, 0))


def test_a_broken_cache_file_is_recomputed_not_fatal(tmp_path):
    path = tmp_path / "b.anchor_cache"
    path.write_bytes(b"not a safetensors file")
    cache = AnchorCache(2)
    assert not cache.load(path, "settings-1")
    assert cache.entries == {}


def test_device_place_keeps_entries_where_they_are_used():
    cache, x = recorded_cache("device")
    assert cache.summary().endswith("in device memory")
    with pytest.raises(ValueError, match="anchor cache place"):
        AnchorCache(2, "disk")


def test_identity_follows_weights_settings_and_patches():
    bank_key = b"bank"
    base = cache_module.cache_identity(bank_key, {"blend": None}, "weights", {})
    assert cache_module.cache_identity(bank_key, {"blend": None}, "weights", {}) == base
    assert cache_module.cache_identity(bank_key, {"blend": {"end": 0.2}}, "weights", {}) != base
    assert cache_module.cache_identity(bank_key, {"blend": None}, "weights",
                                       {"patches": {"output_block_patch": [lambda h, s, e: (h, s)]}}) != base
    assert cache_module.cache_identity(bank_key, {"blend": None}, "other weights", {}) != base


def test_the_sampled_models_fingerprint_is_its_patchers_else_its_weights_as_they_are():
    host_api = runtime("consistory_patches.host_api")
    net = torch.nn.Linear(4, 4)
    alone = SimpleNamespace(diffusion_model=net)  # the 2024 host: no current_patcher
    before = host_api.sampled_model_fingerprint(alone, net)
    with torch.no_grad():
        net.weight[0, 0] += 0.5  # a LoRA written into the weights
    assert host_api.sampled_model_fingerprint(alone, net) != before
    patcher = SimpleNamespace(model=SimpleNamespace(diffusion_model=net), patches={}, backup={})
    sampled = SimpleNamespace(diffusion_model=net, current_patcher=patcher)
    assert host_api.sampled_model_fingerprint(sampled, net) == host_api.model_fingerprint(patcher)[0]
    patcher.patches = {"diffusion_model.weight": [(0.8, (torch.ones(4, 4),), 1.0)]}  # a LoRA applied per layer
    assert host_api.sampled_model_fingerprint(sampled, net) != host_api.model_fingerprint(
        SimpleNamespace(model=patcher.model, patches={}, backup={}))[0]


def test_at_most_two_banks_keep_caches():
    cache_module._CACHES.clear()
    banks = [runtime("consistory_core.bank_file").AnchorBank(
        torch.tensor([float(i + 1)], dtype=torch.float64), torch.zeros(1, 2, 4, 2, 2), {"cond": {}},
        _description()) for i in range(3)]
    first = cache_module.cache_for(banks[0], "cpu")
    assert cache_module.cache_for(banks[0], "cpu") is first
    cache_module.cache_for(banks[1], "cpu")
    cache_module.cache_for(banks[2], "cpu")
    assert len(cache_module._CACHES) == 2 and cache_module.cache_for(banks[0], "cpu") is not first
    cache_module._CACHES.clear()


def _description():
    bank_file = runtime("consistory_core.bank_file")
    return bank_file.BankDescription(prompts=("a", "b"), subjects=(("a cat", ("cat",)),),
                                     positions=(((2,),), ((2,),)), word_subject=(0,), token_length=77,
                                     model_family="SDXL", context_dim=16)
