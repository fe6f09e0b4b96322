"""The story graph end to end on the real ComfyUI host, tiny SDXL-shaped model, CPU."""
import pytest
import torch

from consistory_run.graphs import SCENES, story_graph, with_preview


def run(host, latents, graph, key="story", **kw):
    host.run(graph, **kw)
    return latents[key]


def test_end_percent_zero_equals_vanilla_exactly(host, latents):
    vanilla = run(host, latents, story_graph(sdsa=False))
    off = run(host, latents, story_graph(end_percent=0.0))
    assert torch.equal(off, vanilla)


def test_batch_of_one_equals_vanilla_exactly(host, latents):
    one = SCENES[:1]
    assert torch.equal(run(host, latents, story_graph(one)), run(host, latents, story_graph(one, sdsa=False)))


def test_sdsa_changes_every_image(host, latents):
    vanilla = run(host, latents, story_graph(sdsa=False))
    shared = run(host, latents, story_graph())
    change = (shared - vanilla).flatten(1).abs().amax(1)
    assert (change > 1e-3 * vanilla.abs().amax()).all(), change


def test_only_mapped_images_influence_each_other(host, latents):
    """Anchors (first 2) never see image 3, so changing image 3's prompt leaves them as they were;
    without anchors every image sees image 3, so the same change reaches images 1 and 2."""
    other = SCENES[:2] + ["swimming in a lake"]
    a = run(host, latents, story_graph(anchors=2))
    b = run(host, latents, story_graph(other, anchors=2))
    assert torch.equal(a[:2], b[:2])
    assert not torch.allclose(a[2], b[2])
    c = run(host, latents, story_graph())
    d = run(host, latents, story_graph(other))
    assert not torch.allclose(c[:2], d[:2])


def test_split_cond_uncond_calls_equal_one_call(host, latents, monkeypatch):
    from consistory_testing.probes import ChunkRecorder
    import comfy.model_base
    ChunkRecorder.calls.clear()
    batched = run(host, latents, story_graph(record_chunks=True))
    assert set(ChunkRecorder.calls) == {2}
    ChunkRecorder.calls.clear()
    # a model that claims more memory than there is: the host then runs one chunk per call
    monkeypatch.setattr(comfy.model_base.BaseModel, "memory_required", lambda *a, **k: float("inf"))
    split = run(host, latents, story_graph(record_chunks=True))
    assert set(ChunkRecorder.calls) == {1}
    torch.testing.assert_close(split, batched, rtol=1e-5, atol=1e-5 * batched.abs().amax().item())


def test_same_seed_twice_is_identical_and_no_state_survives_a_run(host, latents):
    first = run(host, latents, story_graph(seed=7), keep_cache=True)
    again = run(host, latents, story_graph(seed=7), keep_cache=True)
    assert torch.equal(first, again)
    run(host, latents, story_graph(seed=8, steps=4), keep_cache=True)  # same patched model, other run
    after = run(host, latents, story_graph(seed=7), keep_cache=True)
    assert torch.equal(first, after)


def test_patched_model_does_not_leak_into_the_unpatched_model(host, latents):
    g = story_graph()
    g["plain"] = {"class_type": "KSampler", "inputs": dict(g["sampler"]["inputs"], model=["ckpt", 0])}
    g["plain_capture"] = {"class_type": "ConsiStoryLatentCapture", "inputs": {"samples": ["plain", 0], "key": "plain"}}
    host.run(g)
    plain = latents["plain"]
    assert torch.equal(plain, run(host, latents, story_graph(sdsa=False)))


def test_non_square_size_and_other_sampler(host, latents):
    g = story_graph(width=192, height=64, steps=5)
    g["sampler"]["inputs"].update(sampler_name="dpmpp_2m", scheduler="karras")
    shared = run(host, latents, g)
    g["sampler"]["inputs"]["model"] = ["ckpt", 0]
    assert shared.shape == (3, 4, 8, 24)
    assert not torch.allclose(shared, run(host, latents, g))


def test_mask_preview_gives_subject_masks(host, latents):
    g = with_preview(story_graph(width=128, height=128, words="man"))  # one word: Otsu must split it
    g["mask_capture"] = {"class_type": "ConsiStoryMaskCapture", "inputs": {"mask": ["masks", 0], "key": "mask"}}
    host.run(g)
    mask = latents["mask"]
    assert mask.shape == (3, 128, 128)
    covered = mask.flatten(1).mean(1)
    assert ((covered > 0) & (covered < 1)).all(), covered  # Otsu splits each image


def test_missing_subject_word_names_prompt_and_word(host, latents):
    from consistory_run.host import GraphError
    with pytest.raises(GraphError, match=r"'dog'.*a photo of an old man with a hat walking in a park"):
        host.run(story_graph(words="man, dog"))


def test_latent_batch_must_match_the_scenes(host, latents):
    from consistory_run.host import GraphError
    with pytest.raises(GraphError, match="latent batch has 2 images but the story has 3 prompts"):
        host.run(story_graph(batch_size=2))


def test_an_attn1_replace_already_on_the_model_is_chained(host, latents):
    """Another pack's attn1 replace under SDSA keeps running, and while sharing is on it is
    given each image's own keys plus the subject keys it may see."""
    from consistory_testing.probes import Attn1ReplaceProbe
    Attn1ReplaceProbe.calls.clear()
    g = story_graph()
    g["other"] = {"class_type": "ConsiStoryAttn1ReplaceProbe", "inputs": {"model": ["ckpt", 0]}}
    g["sdsa"]["inputs"]["model"] = ["other", 0]
    shared = run(host, latents, g)
    assert Attn1ReplaceProbe.calls, "the existing replace was dropped"
    assert any(keys > queries for queries, keys in Attn1ReplaceProbe.calls), "never given shared keys"
    assert any(keys == queries for queries, keys in Attn1ReplaceProbe.calls), "first step is not plain"
    g["sampler"]["inputs"]["model"] = ["other", 0]
    assert not torch.allclose(shared, run(host, latents, g))
