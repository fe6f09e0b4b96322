"""Flux.1 on the real host: a tiny Flux (dev: guidance-distilled; schnell) built from the
host's own class with random weights, its real tokenizers (T5 context, CLIP-L pooled), the
pack's nodes unchanged (consistory_patches.joint_attention: the host's attention override).
The invariants of the UNet suite: sharing off or a batch of one is plain sampling exactly,
anchors are unaffected by the other images, split conditioning calls equal one call, a
bank reused in a fresh process equals one batch, an unpatched clone stays plain; reuse from
an anchor cache runs the new images alone and equals one batch."""
import types

import pytest
import torch

from consistory_run.graphs import SCENES, make_subject_graph, reuse_subject_graph, story_graph, with_preview
from consistory_run.host import comfyui_path, version_of
from consistory_testing.run_graph import run_fresh
from consistory_testing.pack import pack_module, run_node

FLUX = {"class_type": "ConsiStoryTinyFluxCheckpoint", "inputs": {"weight_seed": 0, "version": "dev"}}
SCHNELL = {"class_type": "ConsiStoryTinyFluxCheckpoint", "inputs": {"weight_seed": 0, "version": "schnell"}}
# Flux's usual settings: no negative prompt (cfg 1), the simple schedule; 128x96 px = 8x6 image tokens
SETTINGS = dict(loader=FLUX, cfg=1.0, scheduler="simple", steps=6, width=128, height=96)
FULL = dict(blend=True, blend_end=0.35, inject="fast")
HOST_VERSION = version_of(comfyui_path())  # None: the 2024 snapshot
needs_flux = pytest.mark.skipif(HOST_VERSION is None or HOST_VERSION < (0, 3, 75),
                                reason="Flux needs ComfyUI 0.3.75 or later; its refusal on older hosts is tested here")


def sample(host, latents, key="story", **kw):
    host.run(story_graph(**{**SETTINGS, **kw}))
    out = latents[key].clone()
    assert torch.isfinite(out).all()
    return out


@needs_flux
@pytest.mark.parametrize("loader", [FLUX, SCHNELL], ids=["dev", "schnell"])
def test_flux_shares_and_sharing_off_or_a_batch_of_one_is_plain_sampling(host, latents, loader):
    plain = sample(host, latents, loader=loader, sdsa=False)
    assert torch.equal(sample(host, latents, loader=loader, end_percent=0.0), plain)
    shared = sample(host, latents, loader=loader)
    change = (shared - plain).flatten(1).abs().amax(1)
    assert (change > 1e-3 * plain.abs().amax()).all(), change
    one = SCENES[:1]
    assert torch.equal(sample(host, latents, loader=loader, scenes=one, **FULL),
                       sample(host, latents, loader=loader, scenes=one, sdsa=False))


@needs_flux
def test_flux_anchors_are_unaffected_by_the_other_images(host, latents):
    other = SCENES[:2] + ["swimming in a lake"]
    a, b = sample(host, latents, anchors=2, **FULL), sample(host, latents, scenes=other, anchors=2, **FULL)
    assert torch.equal(a[:2], b[:2])
    assert not torch.allclose(a[2], b[2])
    c, d = sample(host, latents, **FULL), sample(host, latents, scenes=other, **FULL)
    assert not torch.allclose(c[:2], d[:2]), "without anchors image 3 reaches the others"


@needs_flux
def test_flux_split_cond_uncond_calls_equal_one_call(host, latents, monkeypatch):
    """SDSA and Query Blend. (Not injection: its plan is discrete, nearest patch and an Otsu
    threshold, and on this random 8x6-token model the 5e-7 float noise between a call of 6 rows
    and one of 3 flips near-ties: 6 of 144 matches measured, the same features to 5e-7.)"""
    from consistory_testing.probes import ChunkRecorder
    import comfy.model_base
    kw = dict(cfg=3.0, record_chunks=True, blend=True, blend_end=0.35)
    ChunkRecorder.calls.clear()
    batched = sample(host, latents, **kw)
    assert 2 in ChunkRecorder.calls
    ChunkRecorder.calls.clear()
    monkeypatch.setattr(comfy.model_base.BaseModel, "memory_required", lambda *a, **k: float("inf"))
    split = sample(host, latents, **kw)
    assert set(ChunkRecorder.calls) == {1}
    torch.testing.assert_close(split, batched, rtol=1e-5, atol=1e-5 * batched.abs().amax().item())


@needs_flux
def test_flux_leaves_an_unpatched_clone_plain(host, latents):
    g = story_graph(**SETTINGS, **FULL)
    g["plain"] = {"class_type": "KSampler", "inputs": dict(g["sampler"]["inputs"], model=["ckpt", 0])}
    g["plain_capture"] = {"class_type": "ConsiStoryLatentCapture", "inputs": {"samples": ["plain", 0], "key": "plain"}}
    host.run(g)
    assert torch.equal(latents["plain"], sample(host, latents, sdsa=False))


@needs_flux
@pytest.mark.parametrize("method,new", [
    ("blend", ["swimming in a lake", "riding a horse"]), ("full", ["swimming in a lake"])],
    ids=["SDSA+blend, two new prompts", "SDSA+blend+injection, one new prompt"])
def test_flux_bank_reuse_in_a_fresh_process_equals_one_batch(host, latents, outputs, method, new):
    """A bank's reuse with the anchors replayed at every call (anchor_cache off) equals one
    batch with the anchors, and reuses give the same latents to the bit in a fresh process and
    twice in this one.
    (With injection and two new prompts the bank's anchors, sampled as a batch of 2, differ by
    3e-6 from the anchors of a batch of 4, and injection's discrete plan turns that into 3e-3:
    the split-call test's near-ties again.)"""
    kw = {**SETTINGS, **FULL} if method == "full" else dict(SETTINGS, blend=True, blend_end=0.35)
    anchors = SCENES[:2]
    host.run(story_graph(anchors + new, anchors=2, **kw))
    in_batch = latents["story"][2:]
    host.run(make_subject_graph(anchors, anchors=2, prefix="flux", **kw))
    reuse = reuse_subject_graph(new, "output/flux_00001.safetensors", anchors=2, anchor_cache="off", **kw)
    reused = run_fresh(reuse, outputs)["story"]
    torch.testing.assert_close(reused, in_batch, rtol=1e-4, atol=1e-4 * in_batch.abs().amax().item())
    for _ in range(2):  # a first and a second reuse in this process give the fresh process's latents
        host.run(reuse)
        assert torch.equal(latents["story"], reused)
    assert not torch.allclose(reused, sample(host, latents, scenes=anchors + new, sdsa=False)[2:])


@pytest.fixture
def caches(host):
    """The pack's anchor-cache module, its caches emptied (each test makes its own bank)."""
    module = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.anchor_cache")
    module._CACHES.clear()
    return module


@pytest.fixture
def model_batches(host, monkeypatch):
    """The batch size of every Flux model call from here on."""
    import comfy.ldm.flux.model
    seen, forward = [], comfy.ldm.flux.model.Flux._forward

    def counted(self, x, *args, **kwargs):
        seen.append(x.shape[0])
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(comfy.ldm.flux.model.Flux, "_forward", counted)
    return seen


def assert_close_to(reused, in_batch):
    torch.testing.assert_close(reused, in_batch, rtol=1e-4, atol=1e-4 * in_batch.abs().amax().item())


ANCHORS, FIRST, LATER = SCENES[:2], ["swimming in a lake", "riding a horse"], ["painting a fence", "cooking dinner"]
CACHED = {"SDSA, cfg 3": dict(cfg=3.0), "SDSA+blend": dict(blend=True, blend_end=0.35)}


def reuse_and_count(host, latents, bank: str, new, cache, kw, **graph) -> tuple:
    """(latents, cache calls made) of one reuse of ``bank`` with the prompts ``new``."""
    before = dict(cache.calls) if cache is not None else {"recorded": 0, "played": 0}
    host.run(reuse_subject_graph(new, bank, anchors=2, **graph, **kw))
    after = cache.calls if cache is not None else before
    return latents["story"].clone(), {k: after[k] - before[k] for k in before}


@needs_flux
@pytest.mark.parametrize("method", list(CACHED))
def test_flux_reuse_from_the_anchor_cache_equals_one_batch_and_runs_the_new_images_alone(
        host, latents, outputs, caches, model_batches, method):
    """§4.4 at plain cost: the first reuse runs the anchors alone once per model evaluation
    (keeping their moved pool keys and values, subject maps), then the new images alone; a
    reuse with other prompts runs only the new images (every model call holds them alone).
    Both equal one batch with the anchors; a reuse played from the cache, here or in a fresh
    process from the file beside the bank, gives the recording run's latents to the bit."""
    kw = {**SETTINGS, **CACHED[method]}
    expected = {}
    for new in (FIRST, LATER):
        host.run(story_graph(ANCHORS + new, anchors=2, **kw))
        expected[tuple(new)] = latents["story"][2:].clone()
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="cached", **kw))
    bank, choice = "output/cached_00001.safetensors", "CPU memory + file beside the bank"
    host.run(reuse_subject_graph(FIRST, bank, anchors=2, anchor_cache=choice, **kw))
    recording = latents["story"].clone()
    assert_close_to(recording, expected[tuple(FIRST)])
    (cache,) = caches._CACHES.values()
    recorded = dict(cache.calls)
    assert recorded["recorded"] > 0 and recorded["played"] == recorded["recorded"]  # anchors alone, then the new
    model_batches.clear()
    played, calls = reuse_and_count(host, latents, bank, LATER, cache, kw, anchor_cache=choice)
    assert_close_to(played, expected[tuple(LATER)])
    assert calls == {"recorded": 0, "played": recorded["played"]}  # nothing computed again
    chunks = 1 if kw["cfg"] == 1.0 else 2
    assert set(model_batches) == {len(LATER) * chunks}, model_batches  # no anchor rows in any model call
    assert torch.equal(reuse_and_count(host, latents, bank, FIRST, cache, kw, anchor_cache=choice)[0], recording)
    fresh = run_fresh(reuse_subject_graph(FIRST, bank, anchors=2, anchor_cache=choice, **kw), outputs)["story"]
    assert torch.equal(fresh, recording)


@needs_flux
def test_flux_reuse_from_the_anchor_cache_with_blend_and_injection_equals_one_batch(
        host, latents, outputs, caches, model_batches, monkeypatch):
    """The full method from the cache: Query Blend's vanilla pass and one-pass injection's
    DIFT pass also run on the new images alone, with the anchors' DIFT features and injected
    outputs kept. On this random tiny Flux the DIFT features of all patches are nearly equal
    (near-uniform attention), so the float noise between a call on 1 image and one on 3 (1e-7
    of the features) moves many nearest matches and Otsu's cut of the injection plan (34 of 48
    matches and 8 kept patches measured): the plan of one batch is pinned for the reuses, and
    the test checks what the cache keeps and plays around it."""
    injection = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.injection")
    made, pinned = injection.plan_injection, {}

    def pinned_plan(features, subject, share):
        return pinned.setdefault(features.shape[0], made(features, subject, share))  # per story size

    monkeypatch.setattr(injection, "plan_injection", pinned_plan)
    kw, new = {**SETTINGS, **FULL}, FIRST[:1]
    host.run(story_graph(ANCHORS + new, anchors=2, **kw))
    in_batch = latents["story"][2:].clone()
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="full", **kw))
    bank = "output/full_00001.safetensors"
    recording = reuse_and_count(host, latents, bank, new, None, kw)[0]
    assert_close_to(recording, in_batch)
    (cache,) = caches._CACHES.values()
    assert cache.calls["recorded"] == cache.calls["played"] > 0
    assert {k[4] for k in cache.entries} == {"k", "v", "maps", "features", "inject", "x0"}
    assert {k[1] for k in cache.complete} == {"sampler", "vanilla", "dift"}  # every pass kind kept
    model_batches.clear()
    played, calls = reuse_and_count(host, latents, bank, new, cache, kw)
    assert calls["recorded"] == 0 and calls["played"] > 0
    assert set(model_batches) == {1}, model_batches
    assert torch.equal(played, recording)


@needs_flux
def test_flux_masks_injection_and_positions_each_take_effect(host, latents):
    g = with_preview(story_graph(**SETTINGS))
    g["mask_capture"] = {"class_type": "ConsiStoryMaskCapture", "inputs": {"mask": ["masks", 0], "key": "mask"}}
    host.run(g)
    covered = latents["mask"].flatten(1).float().mean(1)
    assert ((covered > 0) & (covered < 1)).all(), covered
    blended = sample(host, latents, blend=True, blend_end=0.35)
    for inject in ("fast", "exact"):
        injected = sample(host, latents, blend=True, blend_end=0.35, inject=inject)
        assert (injected - blended).flatten(1).abs().amax(1).gt(0).all(), f"{inject} injection changed nothing"
    g = story_graph(**SETTINGS)
    g["sdsa"]["inputs"]["dit_positions"] = "as sampled"
    host.run(g)
    assert not torch.allclose(latents["story"], sample(host, latents)), "the positional shift changed nothing"


@needs_flux
def test_the_shift_puts_a_rotated_key_where_the_hosts_rope_puts_the_shifted_position(host):
    """The override's move of the pool keys (one more rotation) equals the host's RoPE of the
    shifted positions (i, j + w) applied to the key before RoPE; "as sampled" moves nothing."""
    from comfy.ldm.flux.math import apply_rope1
    from consistory_testing.pack import pack_module
    from consistory_testing.tiny_models import tiny_flux
    joint = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.joint_attention")
    embedder = tiny_flux().model.diffusion_model.pe_embedder
    h, w = 6, 8
    ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(float(h)), torch.arange(float(w)), indexing="ij"),
                      -1).reshape(1, -1, 3)
    k = torch.randn(1, 2, h * w, 32)

    def reposition(positions):
        override = types.SimpleNamespace(positions=positions, embedder=embedder, _rotations={})
        return joint.JointAttention.reposition(override, (h, w), torch.device("cpu"))

    moved = reposition("shifted (ShiftPE)")(apply_rope1(k, embedder(ids)))
    torch.testing.assert_close(moved, apply_rope1(k, embedder(ids + torch.tensor([0.0, 0.0, w]))), rtol=1e-5, atol=1e-5)
    assert reposition("as sampled") is None


@needs_flux
def test_another_packs_attention_override_is_chained(host, latents):
    from consistory_testing.probes import AttentionOverrideProbe

    def with_probe(**kw):
        g = story_graph(**{**SETTINGS, **kw})
        g["probe"] = {"class_type": "ConsiStoryAttentionOverrideProbe", "inputs": {"model": ["ckpt", 0]}}
        for node in g.values():
            if node["inputs"].get("model") == ["ckpt", 0] and node is not g["probe"]:
                node["inputs"]["model"] = ["probe", 0]
        host.run(g)
        return latents["story"].clone()

    AttentionOverrideProbe.calls = 0
    probed = with_probe(**FULL)
    assert AttentionOverrideProbe.calls > 0
    assert not torch.allclose(probed, sample(host, latents, **FULL)), "the other pack's override had no effect"
    one = SCENES[:1]
    assert torch.equal(with_probe(scenes=one, **FULL), with_probe(scenes=one, sdsa=False))


def model_node(g, key, class_type, after=None):
    """Puts a MODEL -> MODEL node into story graph ``g``: on the loaded model (every node that
    took it takes the new one) or, with after="sampler", between the last patch and the sampler."""
    if after is not None:
        g[key] = {"class_type": class_type, "inputs": {"model": g[after]["inputs"]["model"]}}
        g[after]["inputs"]["model"] = [key, 0]
        return g
    g[key] = {"class_type": class_type, "inputs": {"model": ["ckpt", 0]}}
    for name, node in g.items():
        if node["inputs"].get("model") == ["ckpt", 0] and name != key:
            node["inputs"]["model"] = [key, 0]
    return g


@pytest.mark.skipif(HOST_VERSION is None, reason="the 2024 host has no Flux (refused before patching: tested below)")
def test_flux_on_a_host_that_does_not_name_its_blocks_fails_saying_so(host, latents):
    """ComfyUI before 0.3.75 calls the override with no block names: nothing would be shared.
    On such a host the story graph itself; on a newer one, its blocks' names taken away."""
    def unnamed(**kw):
        g = story_graph(**{**SETTINGS, **kw})
        return g if HOST_VERSION < (0, 3, 75) else model_node(g, "unnamed", "ConsiStoryUnnamedFluxBlocksProbe")
    host.run(unnamed(sdsa=False))  # plain sampling runs
    with pytest.raises(Exception, match=r"ConsiStory SDSA: Flux blocks are not named by this ComfyUI \(.+\), so "
                                        r"nothing would be shared; Flux needs ComfyUI 0\.3\.75 or later"):
        host.run(unnamed())


@needs_flux
def test_an_attention_backend_chosen_after_consistory_fails_saying_so_and_before_it_is_chained(host, latents):
    """ComfyUI 0.38's Model Attention Backend replaces the override it finds."""
    from consistory_testing.probes import AttentionBackendProbe
    AttentionBackendProbe.calls = 0
    with pytest.raises(Exception, match="a node after the ConsiStory nodes replaced it"):
        host.run(model_node(story_graph(**SETTINGS), "backend", "ConsiStoryAttentionBackendProbe", after="sampler"))
    assert AttentionBackendProbe.calls > 0
    AttentionBackendProbe.calls = 0
    host.run(model_node(story_graph(**SETTINGS, **FULL), "backend", "ConsiStoryAttentionBackendProbe"))
    assert AttentionBackendProbe.calls > 0
    assert torch.equal(latents["story"], sample(host, latents, **FULL))


@needs_flux
def test_flux_on_0_38s_attention_containers_gives_the_same_latents(host, latents, monkeypatch):
    """0.38's Flux hands q, k, v over in containers; the pack's override has no
    container_function, so it gets the tensors, and the story is the same."""
    import comfy.ldm.flux.math as flux_math
    from consistory_testing.host_038 import flux_attention_038
    shared = sample(host, latents, **FULL)
    monkeypatch.setattr(flux_math, "optimized_attention", flux_attention_038(flux_math.optimized_attention))
    assert torch.equal(sample(host, latents, **FULL), shared)
    assert torch.equal(sample(host, latents, sdsa=False), sample(host, latents, end_percent=0.0))


@needs_flux
def test_an_attention_mask_from_another_node_leaves_that_call_unshared_and_says_so(host, caplog):
    import logging
    from consistory_testing.pack import pack_module
    from consistory_testing.tiny_models import tiny_flux, tiny_flux_clip
    joint = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.joint_attention")
    engagement = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.engagement")
    nodes = host.nodes.NODE_CLASS_MAPPINGS
    _, story, _ = run_node(nodes["ConsiStoryStoryPrompts"], tiny_flux_clip(), "a cat", "", "in a park\non a beach", "")
    (m,) = run_node(nodes["ConsiStorySDSA"], tiny_flux(), story, 0.5, 0, 0, 0.0, 1.0, "output (paper)")
    override = m.model_options["transformer_options"][joint.OVERRIDE_KEY]
    options = {**m.model_options["transformer_options"], joint.TOKENS_KEY: joint.TokenLayout(4, (2, 3)),
               "block_type": "single", "block_index": 0, "cond_or_uncond": [0], "sigmas": torch.ones(2),
               engagement.ENGAGED_KEY: engagement.Engagement()}  # as the pack's wrapper hands it on
    q = torch.randn(2, 2, 10, 32)
    host_call = lambda *args, **kwargs: ("host", kwargs["mask"])
    with caplog.at_level(logging.WARNING):
        out = override(host_call, q, q, q, 2, skip_reshape=True, mask=torch.zeros(10, 10), transformer_options=options)
    assert out[0] == "host" and "another node set an attention mask" in caplog.text


@needs_flux
def test_story_prompts_find_the_subject_words_in_the_t5_tokens(host):
    from consistory_testing.tiny_models import tiny_flux_clip
    clip = tiny_flux_clip()
    prompts = host.nodes.NODE_CLASS_MAPPINGS["ConsiStoryStoryPrompts"]
    conditioning, story, _ = run_node(prompts, clip, "an old man with a top hat", "man, top hat", "in a park\non a beach",
                                            "a photo of")
    assert conditioning[0][0].shape[1] == story.token_length  # the T5 context
    t5 = clip.tokenizer.t5xxl.tokenizer
    for i, prompt in enumerate(story.prompts):
        ids = [t[0] for t in clip.tokenize(prompt)["t5xxl"][0]]
        words = ["".join(t5.convert_ids_to_tokens([ids[p] for p in w])).replace("\u2581", "") for w in story.positions[i]]
        assert words == ["man", "tophat"], words


@needs_flux
def test_subject_from_image_refuses_flux_by_name(host, latents):
    from consistory_run.graphs import photo_subject_graph
    g = photo_subject_graph(["cooking dinner"], ["photo", 0], **SETTINGS)
    g["photo"] = {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 96, "batch_size": 1, "color": 0}}
    with pytest.raises(Exception, match="Subject From Image: a subject from a photo works on UNet models"):
        host.run(g)


def test_flux_is_refused_on_a_host_without_the_attention_override(host):
    """Today's host has the override; on one without it (the 2024 host), a Flux-shaped model
    is refused by name before anything is patched."""
    from consistory_testing.pack import pack_module
    from consistory_testing.tiny_models import tiny_sdxl_clip
    joint = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.joint_attention")
    assert joint.override_supported() == (HOST_VERSION is not None)
    if joint.override_supported():
        return
    nodes = host.nodes.NODE_CLASS_MAPPINGS
    _, story, _ = run_node(nodes["ConsiStoryStoryPrompts"], tiny_sdxl_clip(), "a cat", "", "in a park\non a beach", "")
    with pytest.raises(ValueError, match="Flux needs ComfyUI 0.3.75 or later"):
        run_node(nodes["ConsiStorySDSA"], flux_shaped("Flux"), story, 0.5, 0, 0, 0.0, 1.0, "output (paper)")


def flux_shaped(family: str):
    """A stand-in ModelPatcher whose model is of class ``family`` around a Flux-layout transformer."""
    dit = types.SimpleNamespace(double_blocks=[], single_blocks=[], pe_embedder=None)
    return types.SimpleNamespace(model=type(family, (), {"diffusion_model": dit})())


@pytest.mark.parametrize("family", ["Flux2", "Chroma"])
def test_flux_relatives_not_yet_tested_are_refused_by_name(host, family):
    from consistory_testing.tiny_models import tiny_sdxl_clip
    nodes = host.nodes.NODE_CLASS_MAPPINGS
    _, story, _ = run_node(nodes["ConsiStoryStoryPrompts"], tiny_sdxl_clip(), "a cat", "", "in a park\non a beach", "")
    with pytest.raises(ValueError, match=f"SDXL, SD 1.5, SD 2.x\\) and Flux.1; this is a {family} model"):
        run_node(nodes["ConsiStorySDSA"], flux_shaped(family), story, 0.5, 0, 0, 0.0, 1.0, "output (paper)")


@needs_flux
def test_the_flux_benchmark_runs_and_writes_its_table(tmp_path):
    """benchmarks/flux_cost.py on the tests' tiny Flux: every configuration timed, its activation
    memory measured and growing with the batch, the table written between the README's markers;
    a bank's reuse timed against plain sampling, the cached one running the model on the new
    images' rows alone."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- flux-performance-table -->\nold\n<!-- flux-performance-table -->\nafter\n")
    proc = subprocess.run([sys.executable, "benchmarks/flux_cost.py", "--width", "tiny", "--size", "64", "--text", "32",
                           "--images", "1,2", "--reuse-images", "1,2", "--json", str(tmp_path / "x.json"), "--readme", str(readme)],
                          cwd=repo, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "x.json").read_text())
    one, two = results["by_images"]["1"], results["by_images"]["2"]
    for r in (one, two):
        assert set(r["seconds_per_step"]) == set(r["peak_activation_gib"]) == {"vanilla", "sdsa", "sdsa+blend", "sdsa+inject"}
        assert all(s > 0 for s in r["seconds_per_step"].values()) and r["step_ratio"]["vanilla"] == 1
    assert all(two["peak_activation_gib"][c] > one["peak_activation_gib"][c] for c in one["peak_activation_gib"])
    for n, r in results["reuse"].items():
        assert r["model_rows"] == {"plain": int(n), "reuse (cached)": int(n), "reuse (off)": int(n) + 2}
        assert all(s > 0 for s in r["run_seconds"].values()) and r["run_ratio"]["plain"] == 1
        assert r["anchor_cache"]["bytes"] > 0
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "| 2 | sdsa+blend |" in text and "The tests' tiny Flux" in text
    assert "| N | plain (s) | cached (s) | cached × plain |" in text
    if not torch.cuda.is_available():
        refused = subprocess.run([sys.executable, "benchmarks/flux_cost.py", "--device", "cuda"], cwd=repo,
                                 capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2 and "--device cuda" in refused.stderr
