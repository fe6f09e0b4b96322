"""ConsiStory beside ControlNet and other packs' attention patches, on the real host."""
import pytest
import torch

from consistory_run.graphs import SCENES, story_graph, with_controlnet


def sample(host, latents, g):
    host.run(g)
    return latents["story"]


def test_controlnet_residuals_reach_the_unet_while_sharing_stays_on(host, latents):
    both = sample(host, latents, with_controlnet(story_graph()))
    assert not torch.allclose(both, sample(host, latents, story_graph()))  # ControlNet took effect
    assert not torch.allclose(both, sample(host, latents, with_controlnet(story_graph(sdsa=False))))  # so did SDSA


def test_controlnet_with_a_batch_of_one_equals_plain_controlnet_sampling(host, latents):
    one = SCENES[:1]
    assert torch.equal(sample(host, latents, with_controlnet(story_graph(one))),
                       sample(host, latents, with_controlnet(story_graph(one, sdsa=False))))


def _chain(g, before=None, after=None):
    """ckpt -> [before] -> SDSA -> [after] -> sampler."""
    if before:
        g["before"] = {"class_type": before, "inputs": {"model": ["ckpt", 0]}}
        g["sdsa"]["inputs"]["model"] = ["before", 0]
    if after:
        g["after"] = {"class_type": after, "inputs": {"model": ["sdsa", 0]}}
        g["sampler"]["inputs"]["model"] = ["after", 0]
    return g


def test_other_packs_attn1_and_attn2_replacements_all_take_effect(host, latents):
    from consistory_testing.probes import Attn1ReplaceProbe, Attn2ReplaceProbe
    Attn1ReplaceProbe.calls.clear()
    Attn2ReplaceProbe.calls = 0
    g = _chain(story_graph(), before="ConsiStoryAttn1ReplaceProbe", after="ConsiStoryAttn2ReplaceProbe")
    everything = sample(host, latents, g)
    assert Attn2ReplaceProbe.calls > 0, "the attn2 replace object was dropped"
    assert any(keys > queries for queries, keys in Attn1ReplaceProbe.calls), "attn1 replace not chained"
    without_attn2 = _chain(story_graph(), before="ConsiStoryAttn1ReplaceProbe")
    assert not torch.allclose(everything, sample(host, latents, without_attn2))
    no_sdsa = _chain(story_graph(), before="ConsiStoryAttn1ReplaceProbe", after="ConsiStoryAttn2ReplaceProbe")
    no_sdsa["after"]["inputs"]["model"] = ["before", 0]
    assert not torch.allclose(everything, sample(host, latents, no_sdsa))


def test_an_attn1_replace_put_after_sdsa_fails_saying_so(host, latents):
    """Another pack's attn1 replace on the layers SDSA shares in, set after it, takes SDSA's
    place there: the run stops, naming the cause, instead of giving unshared images."""
    from consistory_run.host import GraphError
    with pytest.raises(GraphError, match="ConsiStory SDSA: the self-attention patch ConsiStory put on this model "
                                         "was not called: a node after the ConsiStory nodes replaced it"):
        sample(host, latents, _chain(story_graph(), after="ConsiStoryAttn1ReplaceProbe"))


def test_an_attn2_replace_object_applied_before_sdsa_survives(host, latents):
    from consistory_testing.probes import Attn2ReplaceProbe
    Attn2ReplaceProbe.calls = 0
    first = sample(host, latents, _chain(story_graph(), before="ConsiStoryAttn2ReplaceProbe"))
    assert Attn2ReplaceProbe.calls > 0
    assert not torch.allclose(first, sample(host, latents, story_graph()))


def with_hook_dropped(g, hook):
    """The graph with the model its sampler uses run as a host without ``hook`` would run it."""
    g["drop"] = {"class_type": "ConsiStoryDropHookProbe", "inputs": {"model": g["sampler"]["inputs"]["model"],
                                                                     "hook": hook}}
    g["sampler"]["inputs"]["model"] = ["drop", 0]
    return g


@pytest.mark.parametrize("hook,graph,message", [
    ("attn2 patch", {}, r"ConsiStory SDSA: this ComfyUI \([^)]+\) did not call the cross-attention \(attn2\) patch "
                        "that finds the subject masks"),
    ("UNet wrapper", dict(blend=True, blend_end=0.5), r"ConsiStory: this ComfyUI \([^)]+\) ran the model without "
                                                      "the UNet wrapper ConsiStory put on it"),
    ("pass handed through", dict(blend=True, blend_end=0.5), r"ConsiStory Query Blend: no layer got the vanilla "
                                                             r"pass's queries at a step where it blends: this ComfyUI"),
    ("attn1 output patch", dict(inject="fast"), r"ConsiStory Feature Injection: this ComfyUI \([^)]+\) did not call "
                                                "the attn1 output patch it injects with"),
    ("output block patch", dict(inject="fast"), r"ConsiStory Feature Injection: this ComfyUI \([^)]+\) did not call "
                                                "the output block patch that reads the DIFT features"),
])
def test_a_host_without_a_hook_a_patch_needs_fails_the_run_naming_it(host, latents, hook, graph, message):
    """No silent no-op: each ConsiStory patch checks that its hook was called where its
    schedule says it acts (engagement.Engagement); without the check these runs give plain
    images. The same graph without the probe runs."""
    from comfyui_version import __version__
    from consistory_run.host import GraphError
    with pytest.raises(GraphError, match=message) as failed:
        host.run(with_hook_dropped(story_graph(**graph), hook))
    assert f"this ComfyUI ({__version__})" in str(failed.value)  # the host's version is named
    host.run(story_graph(**graph))
