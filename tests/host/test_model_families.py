"""The model families users run, each a tiny model from the host's own classes with its
real sampling type: SDXL (epsilon; v-prediction with zero SNR; EDM as CosXL and Playground
v2.5; few-step distilled at cfg 1) and SD 1.5 / SD 2.x. Each runs the story, the full method
in one pass and in two passes, and bank reuse, on every host the suite runs on."""
import logging

import pytest
import torch

from consistory_run.graphs import make_subject_graph, reuse_subject_graph, story_graph, with_preview
from consistory_testing.families import FAMILIES, family_kwargs, for_family
from consistory_testing.pack import run_node

ANCHORS = ["walking in a park", "reading a book"]
NEW = ["cooking dinner"]
FULL = dict(blend=True, blend_end=0.35)


def sample(host, latents, family, key="story", **kw):
    host.run(for_family(story_graph(**{**family_kwargs(family), **kw}), family))
    out = latents[key]
    assert torch.isfinite(out).all(), f"{family}: non-finite latents"
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_the_story_shares_and_a_batch_of_one_is_plain_sampling(host, latents, family):
    shared = sample(host, latents, family)
    plain = sample(host, latents, family, end_percent=0.0)
    assert not torch.allclose(shared, plain), "nothing was shared"
    one = ["walking in a park"]
    assert torch.equal(sample(host, latents, family, scenes=one), sample(host, latents, family, scenes=one, sdsa=False))


@pytest.mark.parametrize("family", FAMILIES)
def test_one_pass_and_two_pass_injection_change_the_images_and_stay_finite(host, latents, family):
    without = sample(host, latents, family, **FULL)
    fast = sample(host, latents, family, inject="fast", **FULL)
    assert (fast - without).flatten(1).abs().amax(1).gt(0).all(), "one-pass injection changed nothing"
    exact = sample(host, latents, family, inject="exact", **FULL)
    assert torch.equal(latents["story_pass1"], without)
    assert (exact - without).flatten(1).abs().amax(1).gt(0).all(), "two-pass injection changed nothing"


@pytest.mark.parametrize("family", FAMILIES)
def test_bank_reuse_equals_one_batch(host, latents, outputs, family):
    kw = {**family_kwargs(family), **FULL, "inject": "fast"}
    host.run(for_family(story_graph(ANCHORS + NEW, anchors=2, **kw), family))
    in_batch = latents["story"][2:]
    host.run(for_family(make_subject_graph(ANCHORS, anchors=2, prefix=family, **kw), family))
    host.run(for_family(reuse_subject_graph(NEW, f"output/{family}_00001.safetensors", anchors=2, **kw), family))
    reused = latents["story"]
    torch.testing.assert_close(reused, in_batch, rtol=1e-4, atol=1e-4 * in_batch.abs().amax().item())


def test_subject_words_after_the_first_77_tokens_are_found_and_masked(host, latents):
    """Pony / Illustrious-style tag prompts: the subject sits in the second 77-token chunk."""
    tags = ", ".join(f"tag{i}" for i in range(45))  # 180 tokens before the subject
    g = with_preview(story_graph(style=f"score_9, {tags}, a photo of", width=128, height=128))
    g["mask_capture"] = {"class_type": "ConsiStoryMaskCapture", "inputs": {"mask": ["masks", 0], "key": "mask"}}
    host.run(g)
    prompts = host.nodes.NODE_CLASS_MAPPINGS["ConsiStoryStoryPrompts"]
    from consistory_testing.tiny_models import tiny_sdxl_clip
    _, story, _ = run_node(prompts, tiny_sdxl_clip(), "an old man with a hat", "man, hat", "in a park", f"score_9, {tags}, a photo of")
    assert story.token_length == 3 * 77 and all(p >= 77 for words in story.positions for w in words for p in w)
    assert latents["mask"].flatten(1).any(1).all(), "an image has an empty subject mask"
    shared = latents["story"]
    host.run(story_graph(style=f"score_9, {tags}, a photo of", width=128, height=128, end_percent=0.0))
    assert not torch.allclose(shared, latents["story"]), "nothing was shared"


def test_few_step_models_share_from_the_second_step_and_a_1_step_run_is_plain(host, latents, caplog):
    two = sample(host, latents, "sdxl-few-step", steps=2)
    assert not torch.equal(two, sample(host, latents, "sdxl-few-step", steps=2, end_percent=0.0))
    with caplog.at_level(logging.WARNING):
        one = sample(host, latents, "sdxl-few-step", steps=1)
    assert torch.equal(one, sample(host, latents, "sdxl-few-step", steps=1, sdsa=False))
    assert "1-step schedule" in caplog.text  # the host passes the whole schedule to the model


def test_the_analogous_layers_are_found_from_each_model(host):
    from consistory_testing.pack import pack_module
    from consistory_testing.tiny_models import tiny_sd1_unet, tiny_sdxl_unet
    layers = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.layers")
    sdxl, sd15 = tiny_sdxl_unet().model.diffusion_model, tiny_sd1_unet().model.diffusion_model
    assert layers.dift_block(sdxl) == 3 and layers.dift_block(sd15) == 6
    assert {i for _, i, _ in layers.attention_positions(sd15, ("output",))} == set(range(3, 12))


def test_a_model_the_pack_does_not_patch_is_refused_by_name(host):
    from consistory_testing import tiny_models
    model = tiny_models.tiny_stable_cascade()
    nodes = host.nodes.NODE_CLASS_MAPPINGS
    prompts = nodes["ConsiStoryStoryPrompts"]
    _, story, _ = run_node(prompts, tiny_models.tiny_sdxl_clip(), "a cat", "", "in a park\non a beach", "a photo of")
    name = type(model.model).__name__
    with pytest.raises(ValueError, match=f"works on UNet models .*this is a {name} model"):
        run_node(nodes["ConsiStorySDSA"], model, story, 0.5, 0, 0, 0.0, 1.0, "output (paper)")


@pytest.mark.parametrize("node,inputs", [
    ("ModelSamplingContinuousEDM", {"sampling": "v_prediction", "sigma_max": 120.0, "sigma_min": 0.002}),
    ("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": True})])
def test_windows_follow_the_schedule_of_the_sampling_node_in_front(host, node, inputs):
    """The nodes read the clone's own model_sampling (the sampling node's object patch), not
    the shared model's attribute, which is whatever the last sampled clone left there."""
    from consistory_testing.pack import pack_module
    from consistory_testing.tiny_models import tiny_sdxl_clip, tiny_sdxl_unet
    nodes = host.nodes.NODE_CLASS_MAPPINGS
    (model,) = nodes[node]().patch(tiny_sdxl_unet(), **inputs)
    schedule = model.object_patches["model_sampling"]
    _, story, _ = run_node(nodes["ConsiStoryStoryPrompts"], tiny_sdxl_clip(), "a cat", "", "in a park\non a beach", "a photo of")
    (patched,) = run_node(nodes["ConsiStorySDSA"], model, story, 0.5, 0, 0, 0.2, 0.6, "output (paper)")
    (blended,) = run_node(nodes["ConsiStoryQueryBlend"], patched, 0.9, 0.81836735, 0.1)
    run = pack_module(nodes, "consistory_patches.story").story_of(blended, "test")
    window = run.run.window
    assert (window.sigma_start, window.sigma_end) == (schedule.percent_to_sigma(0.2), schedule.percent_to_sigma(0.6))
    assert run.blend.window.sigma_end == schedule.percent_to_sigma(0.1)
    assert run.dift.dift_sigma == pytest.approx(float(schedule.percent_to_sigma(1 - 261 / 999)))
    assert window.sigma_start != model.model.model_sampling.percent_to_sigma(0.2)  # the shared model's own schedule
