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


LAYER = ("output", 1, 0)


def record(cache, evaluation: int, remaining: int, patches: int = 6, chunks=(1, 0)):
    """Records one evaluation as a call on the anchors alone would: per chunk, attention inputs
    of ``patches`` pool entries (values that name evaluation and chunk) and the maps."""
    cache.begin(evaluation, remaining)
    rows = cache.slot(evaluation, "sampler", 77, recording=True)
    for c in chunks:
        rows.keep("x", LAYER, c, torch.full((patches, 8), evaluation + c / 10))
        rows.keep("maps", LAYER, c, torch.randn(2, 3))
    cache.done(rows, chunks)


def recorded_file(tmp_path, evaluations=3, identity="settings-1"):
    """A cache file of ``evaluations`` evaluations and the in-memory cache recorded alike."""
    torch.manual_seed(0)
    path = str(tmp_path / "b.anchor_cache")
    filed = AnchorCache(2, "file")
    filed.use(identity, path)
    torch.manual_seed(0)
    memory = AnchorCache(2, "cpu", budget_gb=1.0)
    memory.use(identity)
    for cache in (filed, memory):
        torch.manual_seed(0)
        for e in range(evaluations):
            record(cache, e, evaluations - e)
            if cache is filed:  # only the evaluation at hand is in memory while recording
                assert {k[0] for k in cache.entries} == {e}
        cache.finish()
    return path, filed, memory


def test_the_file_is_read_back_bit_for_bit_and_only_for_the_same_identity(tmp_path):
    path, filed, memory = recorded_file(tmp_path)
    assert filed.entries == {} and filed.nbytes == 0      # read from the file from now on
    again = AnchorCache(2, "file")
    again.use("settings-1", path)                          # another process
    for cache in (filed, again):
        assert cache.complete == memory.complete
        for key, value in memory.entries.items():
            read = cache.get(key, value)
            assert read.dtype == value.dtype and torch.equal(read, value), key
    other = AnchorCache(2, "file")
    other.use("settings-2", path)
    assert other.reader is None and not other.kept(0, "sampler", 77, (0,))
    assert not list(tmp_path.glob("*.partial"))


def test_a_recording_stopped_half_way_is_written_anew_by_the_next_run(tmp_path):
    path = str(tmp_path / "b.anchor_cache")
    cache = AnchorCache(2, "file")
    cache.use("settings-1", path)
    record(cache, 0, 3)
    record(cache, 1, 2)          # interrupted here: the next run starts at evaluation 0 again
    for e in range(3):
        record(cache, e, 3 - e)
    cache.finish()
    assert cache.reader.complete == {(e, "sampler", 77, c) for e in range(3) for c in (0, 1)}
    assert cache.reader.data_bytes == 3 * 2 * (6 * 8 * 4 + 64)  # each part once (maps padded to 64 bytes)
    assert not list(tmp_path.glob("*.partial"))


def test_every_pass_kind_of_an_evaluation_is_written_to_the_file(tmp_path):
    """Query Blend's vanilla pass and one-pass injection's DIFT pass are recorded at the
    evaluation of their sampler pass, each a recording call of its own."""
    path = str(tmp_path / "b.anchor_cache")
    cache = AnchorCache(2, "file")
    cache.use("settings-1", path)
    for e in range(3):
        for kind in ("vanilla", "sampler", "dift"):
            cache.begin(e, 3 - e)
            rows = cache.slot(e, kind, 77, recording=True)
            rows.keep("x", LAYER, 0, torch.full((6, 8), float(e)))
            cache.done(rows, (0,))
    cache.finish()
    assert cache.reader.complete == {(e, kind, 77, 0) for e in range(3) for kind in ("vanilla", "sampler", "dift")}


def test_a_broken_or_older_cache_file_is_recomputed_not_fatal(tmp_path, caplog):
    path = tmp_path / "b.anchor_cache"
    for content in (b"not a cache file", b"x" * 100):
        path.write_bytes(content)
        cache = AnchorCache(2, "file")
        cache.use("settings-1", str(path))
        assert cache.reader is None and cache.entries == {}
        record(cache, 0, 1)
        cache.finish()
        assert cache.reader is not None and cache.kept(0, "sampler", 77, (1, 0))  # written anew
    assert "cannot be used" in caplog.text


def test_a_cache_over_its_budget_keeps_nothing_and_says_so_once(caplog):
    caplog.set_level("INFO")
    cache = AnchorCache(2, "cpu", budget_gb=1e-6)  # 1000 bytes; an evaluation here is 2 x 6 x 8 x 4 + maps
    cache.use("settings-1")
    record(cache, 0, 5)
    record(cache, 1, 4)      # evaluation 0 is whole: 2 x (192 + 24) bytes, 5 evaluations: 2160 bytes
    assert not cache.keeping and {k[0] for k in cache.entries} == {1}
    for e in range(2, 5):
        record(cache, e, 5 - e)
        assert {k[0] for k in cache.entries} == {e}   # one evaluation at a time: played, then gone
    cache.finish()
    assert caplog.text.count("anchor cache of 2.2 kB does not fit in the 1e-06 GB cache budget: replaying the "
                             "anchors") == 1
    assert "will take about 2.2 kB in CPU memory (432 B per model evaluation" in caplog.text


def test_the_default_budget_is_half_the_free_memory(monkeypatch):
    budget = runtime("consistory_patches.anchor_cache_budget")
    monkeypatch.setattr(cache_module, "free_bytes", lambda place, device=None: 10_000)
    cache_module.forget_caches()
    small, big = AnchorCache(2, "cpu"), AnchorCache(2, "cpu")
    for cache, patches in ((small, 25), (big, 100)):  # an evaluation: 2 chunks x (patches x 8 x 4 + 24) bytes
        cache.use("s")
        record(cache, 0, 2, patches)
        record(cache, 1, 1, patches)   # sized: 2 evaluations against 5 kB + what it holds (one evaluation)
    assert small.keeping and big.estimate == 2 * 6448 > 5000 + 6448 and not big.keeping
    assert budget.budget_bytes(0, 10_000, 300) == (5_300, "5.3 kB (50% of the free memory)")
    assert budget.budget_bytes(2.5, 10_000, 300)[0] == 2_500_000_000


class Sized:
    """A cache in memory of ``nbytes`` (for eviction)."""

    def __init__(self, nbytes, place="cpu"):
        self.nbytes, self.place, self.dropped = nbytes, place, False

    def drop(self):
        self.dropped = True


def test_least_recently_used_caches_make_room_by_bytes_not_by_count():
    from collections import OrderedDict
    make_room = runtime("consistory_patches.anchor_cache_budget").make_room
    new = Sized(0)
    caches = OrderedDict([("oldest", Sized(300)), ("gpu", Sized(5000, "device")), ("old", Sized(200)),
                          ("recent", Sized(100)), ("new", new)])
    assert make_room(caches, new, 600, budget=1000)           # 600 + 300 + 200 + 100 > 1000: the oldest goes
    assert list(caches) == ["gpu", "old", "recent", "new"] and not caches["old"].dropped
    assert make_room(caches, new, 701, budget=1000)           # and then the next oldest, not the recent one
    assert list(caches) == ["gpu", "recent", "new"]
    assert not make_room(caches, new, 1001, budget=1000)      # cannot fit even alone: nothing evicted for it
    assert list(caches) == ["gpu", "recent", "new"]
    assert make_room(caches, new, 1000, budget=1000)          # (the device's cache is another memory's)
    assert list(caches) == ["gpu", "new"]
    many = OrderedDict((i, Sized(1)) for i in range(50))
    assert make_room(many, new, 10, budget=100) and len(many) == 50   # any number of caches that fit stay


def test_a_file_that_does_not_fit_its_disk_is_not_written(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(cache_module, "free_disk", lambda path: 100)
    cache = AnchorCache(2, "file")
    cache.use("settings-1", str(tmp_path / "b.anchor_cache"))
    for e in range(3):
        record(cache, e, 3 - e)
    cache.finish()
    assert cache.reader is None and not list(tmp_path.iterdir())  # nothing on disk, no partial file
    assert "does not fit in the 100 B free on its disk" in caplog.text


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


def test_a_bank_has_one_cache_per_place():
    cache_module.forget_caches()
    banks = [runtime("consistory_core.bank_file").AnchorBank(
        torch.tensor([float(i + 1)], dtype=torch.float64), torch.zeros(1, 2, 4, 2, 2), {"cond": {}},
        _description()) for i in range(3)]
    first = cache_module.cache_for(banks[0], "cpu")
    assert cache_module.cache_for(banks[0], "cpu", 2.0) is first and first.budget_gb == 2.0
    assert cache_module.cache_for(banks[0], "file") is not first
    for bank in banks[1:]:
        cache_module.cache_for(bank, "cpu")
    assert len(cache_module._CACHES) == 4 and cache_module.cache_for(banks[0], "cpu") is first
    cache_module.forget_caches()


def _description():
    bank_file = runtime("consistory_core.bank_file")
    return bank_file.BankDescription(prompts=("a", "b"), subjects=(("a cat", ("cat",)),),
                                     positions=(((2,),), ((2,),)), word_subject=(0,), token_length=77,
                                     model_family="SDXL", context_dim=16)


def heads_of(t, heads=2):
    """(n, P, heads*d) -> (n, heads, P, d)"""
    return t.reshape(*t.shape[:2], heads, -1).transpose(1, 2)


@pytest.mark.parametrize("anchor_patches", [3, 0], ids=["subject", "no patch of the anchors kept"])
def test_the_anchors_inputs_are_kept_where_they_give_the_hosts_keys_and_values(anchor_patches):
    """Recording, the anchors' attention inputs at the pool's patches are kept when the layer's
    own projections of them are the host's keys and values; played, they give those keys and
    values again. Inputs another node changed after the pack saw them: keys and values kept."""
    shared_attention, sdsa = runtime("consistory_patches.shared_attention"), runtime("consistory_core.sdsa")
    torch.manual_seed(0)
    to_k, to_v = torch.nn.Linear(8, 8, bias=False), torch.nn.Linear(8, 8, bias=False)
    attention = shared_attention.SharedAttention(run=None, diffusion_model=object())
    attention._modules[LAYER] = SimpleNamespace(to_k=to_k, to_v=to_v)
    subject = torch.zeros(3, 4, dtype=torch.bool)  # 2 anchors and a new image, 4 patches each
    subject[0, :anchor_patches] = subject[1, 1:1 + anchor_patches] = subject[2, :2] = True
    share = torch.ones(3, 3, dtype=torch.bool)
    plan = sdsa.plan_shared_keys(subject, share)
    x = torch.randn(2, 4, 8)  # the anchors' inputs (one chunk)
    with torch.no_grad():
        k, v = heads_of(to_k(x)), heads_of(to_v(x))
        expected = [t[:, :plan.entries_before(2)] for t in (sdsa.gather_pool(k, plan), sdsa.gather_pool(v, plan))]
        for given, kept in ((x, {"x"}), (x * 1.05, {"k", "v"})):
            cache = AnchorCache(2)
            cache.use("s")
            rows = cache.slot(0, "sampler", 77, recording=True)
            rows.inputs[LAYER] = (given, given)
            assert attention.anchor_pool(rows, LAYER, 0, plan, k, v, slice(0, 2)) is None
            assert {key[4] for key in cache.entries} == (kept if anchor_patches else {"x"})  # (nothing to tell)
            played = cache.slot(0, "sampler", 77, recording=False)
            new = heads_of(torch.randn(1, 4, 8))
            pool = attention.anchor_pool(played, LAYER, 0, plan, new, new, slice(0, 1))
            for got, want in zip(pool, expected):
                assert got.shape == want.shape == (2, 2 * anchor_patches, 4)
                torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
