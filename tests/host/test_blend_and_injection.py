"""Query blending and feature injection end to end on the real host (tiny model, CPU).

UNet calls are counted by a wrapper on the loaded model, below the pack's wrappers, so
every extra pass they run is seen (and so is their chaining of an existing wrapper).
"""
import pytest
import torch

from consistory_run.graphs import story_graph
from consistory_testing.pack import run_node

STEPS = 10


def sample(host, latents, calls=None, **kw):
    from consistory_testing.probes import ChunkRecorder
    ChunkRecorder.calls.clear()
    host.run(story_graph(steps=STEPS, record_chunks=True, **kw))
    if calls is not None:
        assert len(ChunkRecorder.calls) == calls, ChunkRecorder.calls
    return latents["story"]


def test_query_blend_runs_one_vanilla_pass_per_shared_step_in_range(host, latents):
    """Blending to 35% of 10 steps: steps 1-3 are in range with sharing on (step 0 has no
    masks yet), so 3 extra calls; the result differs from shared attention alone."""
    shared = sample(host, latents, calls=STEPS)
    blended = sample(host, latents, calls=STEPS + 3, blend=True, blend_end=0.35)
    assert not torch.allclose(blended, shared)


def test_query_blend_adds_nothing_where_it_is_inactive(host, latents):
    shared = sample(host, latents, calls=STEPS)
    assert torch.equal(sample(host, latents, calls=STEPS, blend=True, blend_end=0.0), shared)


def test_injection_alpha_zero_equals_the_model_without_it(host, latents):
    without = sample(host, latents, blend=True, blend_end=0.35)
    for mode in ("fast", "exact"):
        assert torch.equal(sample(host, latents, blend=True, blend_end=0.35, inject=mode, alpha=0.0), without)


def test_fast_injection_is_one_extra_call_and_changes_the_images(host, latents):
    without = sample(host, latents, calls=STEPS + 3, blend=True, blend_end=0.35)
    fast = sample(host, latents, calls=STEPS + 3 + 1, blend=True, blend_end=0.35, inject="fast")
    change = (fast - without).flatten(1).abs().amax(1)
    assert (change > 0).all(), change


def test_exact_injection_pass_two_reproduces_pass_one_without_injection(host, latents):
    """Two passes with the same seed; injection off (alpha 0 keeps the node out) -> pass 2 is
    pass 1 to the bit, so no state of pass 1 leaks into pass 2. With alpha 0.8 they differ."""
    off = sample(host, latents, calls=2 * (STEPS + 3), blend=True, blend_end=0.35, inject="exact", alpha=0.0)
    assert torch.equal(off, latents["story_pass1"])
    on = sample(host, latents, calls=2 * (STEPS + 3), blend=True, blend_end=0.35, inject="exact")
    assert torch.equal(latents["story_pass1"], off)  # pass 1 itself is unchanged by injection
    assert not torch.allclose(on, latents["story_pass1"])


def test_a_batch_of_one_has_no_source_and_is_left_as_it_was(host, latents):
    one = ["walking in a park"]
    assert torch.equal(sample(host, latents, scenes=one, inject="fast"), sample(host, latents, scenes=one))


def test_injection_on_a_plain_model_is_a_clear_error(host, latents):
    from consistory_run.host import GraphError
    g = story_graph(steps=STEPS, inject="fast")
    g["inject"]["inputs"]["model"] = ["ckpt", 0]
    with pytest.raises(GraphError, match="connect a model patched by ConsiStory SDSA"):
        host.run(g)


def test_exact_features_of_another_size_are_refused(host, latents):
    from consistory_run.host import GraphError
    g = story_graph(steps=STEPS, inject="exact")
    g["latent2"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 3}}
    g["sampler"]["inputs"]["latent_image"] = ["latent2", 0]
    with pytest.raises(GraphError, match="other size"):
        host.run(g)


def test_full_method_split_cond_uncond_calls_equal_one_call(host, latents, monkeypatch):
    import comfy.model_base
    batched = sample(host, latents, calls=STEPS + 3 + 1, blend=True, blend_end=0.35, inject="fast")
    monkeypatch.setattr(comfy.model_base.BaseModel, "memory_required", lambda *a, **k: float("inf"))
    # split: uncond and cond each get their own sampler and vanilla calls; the DIFT call runs once
    split = sample(host, latents, calls=2 * (STEPS + 3) + 1, blend=True, blend_end=0.35, inject="fast")
    torch.testing.assert_close(split, batched, rtol=1e-5, atol=1e-5 * batched.abs().amax().item())


def test_schedule_percent_inverts_the_hosts_percent_to_sigma(host):
    from consistory_testing.pack import pack_module
    from consistory_testing.tiny_models import tiny_sdxl_unet
    blend = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.blend_pass")
    sampling = tiny_sdxl_unet().model.model_sampling
    for p in (0.05, 0.1, 0.33, 0.5, 0.9):
        assert abs(blend.schedule_percent(sampling, sampling.percent_to_sigma(p)) - p) < 1e-4


def test_injection_before_query_blend_gives_what_the_usual_order_gives(host, latents):
    """The pack's wrapper nests its stages in one fixed order, whatever order the nodes are wired."""
    usual = sample(host, latents, blend=True, blend_end=0.35, inject="fast")
    g = story_graph(steps=STEPS, blend=True, blend_end=0.35, inject="fast")
    g["inject"]["inputs"]["model"] = ["sdsa", 0]
    g["blend"]["inputs"]["model"] = ["inject", 0]
    g["sampler"]["inputs"]["model"] = ["blend", 0]
    host.run(g)
    assert torch.equal(latents["story"], usual)


@pytest.mark.parametrize("inject", ["fast", "exact"])
def test_freeu_before_or_after_sdsa_gives_the_same_images(host, latents, inject):
    """The DIFT features are read as output block 3 takes them in, after FreeU scaled half of
    their channels in place there (as the reference reads them), whether ConsiStory FreeU's
    patch runs before the pack's feature capture (FreeU wired before SDSA, as in the paper
    workflow) or after it (wired between Query Blend and Feature Injection). FreeU changes the
    images."""
    g = story_graph(steps=STEPS, anchors=2, blend=True, blend_end=0.35, inject=inject)
    host.run(g)
    plain = latents["story"].clone()
    freeu = {"class_type": "ConsiStoryFreeU", "inputs": {"model": ["ckpt", 0], "b1": 1.1, "b2": 1.2, "s1": 0.6,
                                                         "s2": 0.4}}

    def rewired(graph, **models):
        return {**graph, **{name: {**graph[name], "inputs": {**graph[name]["inputs"], "model": model}}
                            for name, model in models.items()}}

    host.run(rewired({**g, "freeu": freeu}, sdsa=["freeu", 0]))
    before = latents["story"].clone()
    after = {**g, "freeu": {**freeu, "inputs": {**freeu["inputs"], "model": ["blend", 0]}}}
    host.run(rewired(after, inject=["freeu", 0], **({"pass1": ["freeu", 0]} if inject == "exact" else {})))
    assert torch.equal(latents["story"], before)
    assert not torch.allclose(before, plain)


def test_consistory_freeu_refuses_a_model_without_up_blocks_by_name(host):
    class Transformer:  # what a DiT's patcher holds: no UNet levels
        class model:
            diffusion_model = object()
    with pytest.raises(ValueError, match="ConsiStory FreeU: FreeU acts on a UNet's up blocks"):
        run_node(host.nodes.NODE_CLASS_MAPPINGS["ConsiStoryFreeU"], Transformer, 1.1, 1.2, 0.6, 0.4)
