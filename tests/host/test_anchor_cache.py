"""The anchor cache on the real host: the first reuse of a bank runs the anchors alone and
keeps what they give the new images, then the new images alone; later reuses with new
prompts make only the second call. Their images equal one batch with the anchors, and a
reuse gives the same latents, to the bit, whatever the cache held before."""
import pytest
import torch

from consistory_run.graphs import make_subject_graph, reuse_subject_graph, story_graph
from consistory_testing.pack import pack_module
from consistory_testing.run_graph import run_fresh

ANCHORS = ["walking in a park", "reading a book"]
FIRST, LATER = ["cooking dinner", "swimming in a lake"], ["riding a horse", "painting a fence"]
STEPS = 6
FULL = dict(blend=True, blend_end=0.35, inject="fast")


@pytest.fixture
def caches(host):
    """The pack's anchor-cache module, its caches emptied (each test makes its own bank)."""
    module = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.anchor_cache")
    module.forget_caches()
    return module


def one_batch(host, latents, new, **kw):
    host.run(story_graph(ANCHORS + new, anchors=2, **kw))
    return latents["story"][2:]


def assert_equal_to(reused, in_batch):
    torch.testing.assert_close(reused, in_batch, rtol=1e-4, atol=1e-4 * in_batch.abs().amax().item())


@pytest.mark.parametrize("place", ["CPU memory", "device memory"])
@pytest.mark.parametrize("method", ["sdsa", "full"], ids=["SDSA", "SDSA+blend+injection"])
def test_later_prompts_reuse_the_cache_and_equal_one_batch(host, latents, outputs, caches, method, place):
    kw = dict(steps=STEPS, **(FULL if method == "full" else {}))
    expected = {tuple(new): one_batch(host, latents, new, **kw) for new in (FIRST, LATER)}
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="cached", **kw))
    bank = "output/cached_00001.safetensors"
    host.run(reuse_subject_graph(FIRST, bank, anchor_cache=place, **kw))
    assert_equal_to(latents["story"], expected[tuple(FIRST)])
    (cache,) = caches._CACHES.values()
    recorded = dict(cache.calls)
    assert recorded["recorded"] > 0 and recorded["played"] == recorded["recorded"]  # anchors alone, then the new
    host.run(reuse_subject_graph(LATER, bank, anchor_cache=place, **kw))
    assert_equal_to(latents["story"], expected[tuple(LATER)])
    assert cache.calls["recorded"] == recorded["recorded"]    # nothing computed again ...
    assert cache.calls["played"] == 2 * recorded["played"]    # ... every call served from the cache
    print(f"{method}, {place}: {cache.summary()}")


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "uni_pc", "ddim"])
def test_the_cache_serves_every_deterministic_sampler_exactly(host, latents, outputs, caches, sampler):
    """heun evaluates twice at one sigma, dpmpp_2m and uni_pc keep a history: the cache is
    kept per model evaluation, like the bank."""
    kw = dict(steps=STEPS, sampler=sampler)
    expected = one_batch(host, latents, LATER, **kw)
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix=sampler, **kw))
    bank = f"output/{sampler}_00001.safetensors"
    host.run(reuse_subject_graph(FIRST, bank, **kw))
    host.run(reuse_subject_graph(LATER, bank, **kw))
    assert_equal_to(latents["story"], expected)
    (cache,) = caches._CACHES.values()
    assert cache.calls["played"] == 2 * cache.calls["recorded"] > 0


def test_patches_or_weights_added_after_use_anchors_are_not_served_stale(host, latents, outputs, caches):
    """A cache made without FreeU / a model merge after Use Anchors is not used with them:
    the images equal the same graph with the cache off (the anchors recomputed every step)."""
    kw = dict(steps=STEPS)
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="later", **kw))
    bank = "output/later_00001.safetensors"
    host.run(reuse_subject_graph(FIRST, bank, **kw))  # the cache of the plain model

    def after_use_anchors(cache_choice, change):
        g = reuse_subject_graph(LATER, bank, anchor_cache=cache_choice, **kw)
        if change == "FreeU":
            g["after"] = {"class_type": "FreeU", "inputs": {"model": ["sdsa", 0], "b1": 1.3, "b2": 1.4,
                                                           "s1": 0.9, "s2": 0.2}}
        else:
            g["other"] = {"class_type": "ConsiStoryTinySDXLCheckpoint", "inputs": {"weight_seed": 1}}
            g["after"] = {"class_type": "ModelMergeSimple", "inputs": {"model1": ["sdsa", 0], "model2": ["other", 0],
                                                                      "ratio": 0.7}}
        g["sampler"]["inputs"]["model"] = ["after", 0]
        host.run(g)
        return latents["story"]

    for change in ("FreeU", "model merge"):
        assert_equal_to(after_use_anchors("CPU memory", change), after_use_anchors("off", change))


FILE = "CPU memory + file beside the bank"


def the_cache(caches, place):
    (cache,) = [c for c in caches._CACHES.values() if c.place == place]
    return cache


def test_the_file_beside_the_bank_is_streamed_and_equals_the_cache_in_memory_bit_for_bit(host, latents, outputs,
                                                                                      caches):
    """The file is written while the first run records and read part by part afterwards
    (nothing of it held in memory), here and in a fresh process: the same latents, to the bit,
    as the cache kept in memory."""
    kw = dict(steps=STEPS, **FULL)
    expected = one_batch(host, latents, LATER, **kw)
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="filed", **kw))
    bank = "output/filed_00001.safetensors"
    host.run(reuse_subject_graph(LATER, bank, anchor_cache="CPU memory", **kw))
    in_memory = latents["story"].clone()
    assert_equal_to(in_memory, expected)
    host.run(reuse_subject_graph(LATER, bank, anchor_cache=FILE, **kw))  # records the file
    assert torch.equal(latents["story"], in_memory)
    filed = the_cache(caches, "file")
    cache_file = outputs / "consistory_banks" / "filed_00001.anchor_cache"
    assert cache_file.is_file() and filed.reader is not None and filed.nbytes == 0
    assert filed.reader.data_bytes == the_cache(caches, "cpu").nbytes   # the same parts, none in memory
    recorded, written = filed.calls["recorded"], cache_file.stat().st_mtime_ns
    host.run(reuse_subject_graph(LATER, bank, anchor_cache=FILE, **kw))  # read from it
    assert torch.equal(latents["story"], in_memory) and filed.calls["recorded"] == recorded
    reused = run_fresh(reuse_subject_graph(LATER, bank, anchor_cache=FILE, **kw), outputs)["story"]
    assert torch.equal(reused, in_memory)
    assert cache_file.stat().st_mtime_ns == written  # served from the file: nothing recorded, nothing rewritten


def test_a_cache_over_its_budget_is_not_kept_says_so_once_and_gives_the_same_latents(host, latents, outputs,
                                                                                    caches, caplog):
    """With a budget it does not fit, every evaluation is recorded, played and let go (one
    at a time in memory): slower, the same latents to the bit as a kept cache."""
    kw = dict(steps=STEPS, **FULL)
    expected = one_batch(host, latents, FIRST, **kw)
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="budget", **kw))
    bank = "output/budget_00001.safetensors"
    host.run(reuse_subject_graph(FIRST, bank, **kw))
    kept = latents["story"].clone()
    kept_bytes = caches._CACHES.popitem()[1].nbytes
    for _ in range(2):
        host.run(reuse_subject_graph(FIRST, bank, cache_budget_gb=1e-6, **kw))
        assert torch.equal(latents["story"], kept)
    assert_equal_to(kept, expected)
    cache = the_cache(caches, "cpu")
    assert not cache.keeping and cache.calls["recorded"] == cache.calls["played"] > 0  # both runs recorded all
    assert 0 < cache.nbytes < kept_bytes / (STEPS - 1)   # one evaluation's parts at most
    assert caplog.text.count("does not fit in the 1e-06 GB cache budget: replaying the anchors instead") == 1
    host.run(reuse_subject_graph(FIRST, bank, cache_budget_gb=1.0, **kw))  # room again: kept from now on
    host.run(reuse_subject_graph(FIRST, bank, cache_budget_gb=1.0, **kw))
    assert cache.keeping and cache.nbytes == kept_bytes and torch.equal(latents["story"], kept)


def test_the_cache_keeps_attention_inputs_unless_a_node_after_it_changed_them(host, latents, outputs, caches):
    """The anchors' shared attention is kept as the layers' inputs ("x", T x C: half of keys
    and values), projected again when played; after a node that changes attn1's inputs
    behind the pack, as keys and values, which give what replaying the anchors gives."""
    kw = dict(steps=STEPS)
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="inputs", **kw))
    bank = "output/inputs_00001.safetensors"
    host.run(reuse_subject_graph(FIRST, bank, **kw))
    parts = {key[4] for key in the_cache(caches, "cpu").entries}
    assert "x" in parts and not parts & {"k", "v", "xv"}

    def changed_after_use_anchors(choice):
        g = reuse_subject_graph(LATER, bank, anchor_cache=choice, **kw)
        g["after"] = {"class_type": "ConsiStoryAttn1InputProbe", "inputs": {"model": ["sdsa", 0]}}
        g["sampler"]["inputs"]["model"] = ["after", 0]
        host.run(g)
        return latents["story"].clone()

    changed_after_use_anchors("CPU memory")
    played = changed_after_use_anchors("CPU memory")
    parts = {key[4] for key in the_cache(caches, "cpu").entries}
    assert {"k", "v"} <= parts and "x" not in parts
    assert_equal_to(played, changed_after_use_anchors("off"))


def test_the_file_choice_needs_a_bank_from_a_file(host, latents, outputs, caches):
    g = make_subject_graph(ANCHORS, anchors=2, prefix="unsaved", steps=STEPS)
    g["use"] = {"class_type": "ConsiStoryUseAnchors", "inputs": {
        "model": ["ckpt", 0], "bank": ["bank", 0], "subject": ["story", 1], "share_new": False,
        "anchor_cache": "CPU memory + file beside the bank"}}
    g["probe"] = {"class_type": "KSampler", "inputs": {**g["sampler"]["inputs"], "model": ["use", 0]}}
    g["probe_capture"] = {"class_type": "ConsiStoryLatentCapture", "inputs": {"samples": ["probe", 0], "key": "probe"}}
    with pytest.raises(Exception, match=r"needs a bank from ConsiStory Load Anchor Bank"):
        host.run(g)


def test_another_packs_attn1_replace_gets_the_cached_anchor_keys(host, latents, outputs, caches):
    """With another pack's attn1 replace under the shared attention, each new image is handed
    exactly the keys it sees; from the cache they are the same as with the anchors replayed."""
    from consistory_testing.probes import Attn1ReplaceProbe
    kw = dict(steps=STEPS)
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="chained", **kw))
    bank = "output/chained_00001.safetensors"

    def reuse(new, choice):
        g = reuse_subject_graph(new, bank, anchor_cache=choice, **kw)
        g["before"] = {"class_type": "ConsiStoryAttn1ReplaceProbe", "inputs": {"model": ["ckpt", 0]}}
        g["sdsa"]["inputs"]["model"] = ["before", 0]
        Attn1ReplaceProbe.calls.clear()
        host.run(g)
        return latents["story"]

    reuse(FIRST, "CPU memory")  # fills the cache
    played = reuse(LATER, "CPU memory")
    assert any(keys > queries for queries, keys in Attn1ReplaceProbe.calls)  # the anchors' keys reached it
    (cache,) = caches._CACHES.values()
    assert cache.calls["played"] > 0
    assert_equal_to(played, reuse(LATER, "off"))


METHODS = {"SDSA": {}, "SDSA+blend": dict(blend=True, blend_end=0.35), "SDSA+blend+injection": FULL}


@pytest.mark.parametrize("method", list(METHODS))
def test_a_reuse_gives_the_same_latents_whatever_the_cache_held(host, latents, outputs, caches, method):
    """One new prompt (where a batch of 1 and a batch of 3 round differently: recording beside
    the anchors moved the latents by 0.0014 of ~400) reused: in the run that fills the cache,
    again from it, after other prompts filled it (another chunk of a story, on this server),
    and in a fresh process (another server): equal to the bit, so where a chunk of a story is
    rendered does not show in its images."""
    kw = dict(steps=STEPS, **METHODS[method])
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="same", **kw))
    bank, one = "output/same_00001.safetensors", FIRST[:1]
    host.run(reuse_subject_graph(one, bank, **kw))
    recording = latents["story"].clone()
    host.run(reuse_subject_graph(one, bank, **kw))
    assert torch.equal(latents["story"], recording)              # played from the cache it filled
    caches.forget_caches()
    host.run(reuse_subject_graph(LATER, bank, **kw))             # other prompts fill it
    host.run(reuse_subject_graph(one, bank, **kw))
    assert torch.equal(latents["story"], recording)
    fresh = run_fresh(reuse_subject_graph(one, bank, **kw), outputs)["story"]
    assert torch.equal(fresh, recording)
