"""One patched model, several sampler runs: what counts as a new run and what continues.

The host keeps a patched model cached between queue runs (and one model can feed several
samplers), so the runtime must tell a new sampling from the continuation of one."""
import pytest
import torch

from consistory_run.graphs import story_graph


def run(host, latents, graph, keep_cache=False):
    host.run(graph, keep_cache=keep_cache)
    return latents[graph["capture"]["inputs"]["key"]]


def test_a_run_stopped_after_its_first_step_leaves_nothing_to_the_next_run(host, latents):
    """A 1-step run (or one cancelled during step 1) stops at the schedule's first sigma; the
    next run on the cached patched model starts at that same sigma, and must start afresh:
    exactly what the same graph gives on a fresh server."""
    graph = story_graph(steps=6, blend=True, inject="fast")
    fresh = run(host, latents, graph).clone()
    run(host, latents, story_graph(steps=1, blend=True, inject="fast"), keep_cache=True)
    after = run(host, latents, graph, keep_cache=True)  # the SDSA/Blend/Injection models come from the cache
    assert torch.equal(after, fresh)


def split_graph(**kw):
    """The story graph with its sampler split in two KSamplerAdvanced at step 3 of 6."""
    g = story_graph(steps=6, key="split", **kw)
    common = {k: g["sampler"]["inputs"][k] for k in ("model", "positive", "negative", "cfg", "sampler_name", "scheduler")}
    g["first"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "enable", "noise_seed": g["sampler"]["inputs"]["seed"], "steps": 6,
        "latent_image": ["latent", 0], "start_at_step": 0, "end_at_step": 3, "return_with_leftover_noise": "enable"}}
    g["sampler"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "disable", "noise_seed": 0, "steps": 6, "latent_image": ["first", 0],
        "start_at_step": 3, "end_at_step": 10000, "return_with_leftover_noise": "disable"}}
    return g


@pytest.mark.parametrize("method", [{"sdsa": False}, {}, {"blend": True, "blend_end": 0.35, "inject": "fast"}],
                         ids=["plain", "SDSA", "SDSA+blend+injection"])
def test_a_ksampler_advanced_split_continues_the_run(host, latents, method):
    """Steps 0-3 with leftover noise, then 3-6 in a second sampler on the same patched model
    (a base + refiner layout) give what one sampler over the 6 steps gives, to the rounding
    the host's own split adds to plain sampling (the latent leaves and re-enters the model's
    latent space at the split: measured 2e-4 on values of about 200). Both parts count their
    steps in the whole schedule, so Query Blend and injection run on the same steps as in one
    sampler (the first part's schedule is a slice of it; the second joins the first)."""
    whole = run(host, latents, story_graph(steps=6, key="whole", **method)).clone()
    split = run(host, latents, split_graph(**method))
    assert torch.allclose(split, whole, rtol=1e-5, atol=1e-3), (split - whole).abs().max()


def test_a_hires_pass_on_the_same_patched_model_starts_fresh_masks(host, latents):
    """A second sampler at another size with denoise 0.3 after the first, on the same patched
    model: a new run (its sigmas rise again), new masks at its own grid, no error; the first
    sampler's result is unchanged by what follows it."""
    alone = run(host, latents, story_graph(steps=4, key="first")).clone()
    g = story_graph(steps=4, key="first")
    g["upscale"] = {"class_type": "LatentUpscale", "inputs": {
        "samples": ["sampler", 0], "upscale_method": "nearest-exact", "width": 192, "height": 144, "crop": "disabled"}}
    g["hires"] = {"class_type": "KSampler", "inputs": {**g["sampler"]["inputs"], "latent_image": ["upscale", 0],
                                                       "denoise": 0.3}}
    g["hires_capture"] = {"class_type": "ConsiStoryLatentCapture", "inputs": {"samples": ["hires", 0], "key": "hires"}}
    host.run(g)
    assert torch.equal(latents["first"], alone)
    assert latents["hires"].shape[-2:] == (18, 24) and torch.isfinite(latents["hires"]).all()


def _with(g, **nodes):
    return {**g, **nodes}


def test_nodes_after_a_sampler_read_the_run_that_made_their_samples(host, latents, outputs):
    """One patched model in two sampler chains (seeds 1 and 2). The host may run the chain of
    seed 2 between sampler 1 and the nodes after it (it orders output nodes as it likes, and
    keeps finished nodes cached): Anchor Bank and Collect Features must still read the run
    of seed 1, whose samples they are given. Here the host's cache forces that order."""
    from safetensors.torch import load_file
    base = story_graph(anchors=2, steps=6, key="one", blend=True)
    second = {"sampler2": {"class_type": "KSampler", "inputs": {**base["sampler"]["inputs"], "seed": 2}},
              "capture2": {"class_type": "ConsiStoryLatentCapture", "inputs": {"samples": ["sampler2", 0], "key": "two"}}}
    after = {"bank": {"class_type": "ConsiStoryAnchorBank", "inputs": {"model": ["blend", 0], "samples": ["sampler", 0]}},
             "collect": {"class_type": "ConsiStoryCollectFeatures", "inputs": {"model": ["blend", 0],
                                                                               "samples": ["sampler", 0]}},
             "inject": {"class_type": "ConsiStoryFeatureInjection", "inputs": {
                 "model": ["blend", 0], "features": ["collect", 0], "alpha": 0.8, "start_percent": 0.1,
                 "end_percent": 0.33, "dift_timestep": 261, "dift_noise_seed": 0}},
             "pass2": {"class_type": "KSampler", "inputs": {**base["sampler"]["inputs"], "model": ["inject", 0]}},
             "capture_pass2": {"class_type": "ConsiStoryLatentCapture", "inputs": {"samples": ["pass2", 0],
                                                                                   "key": "pass2"}}}

    def saved(prefix):
        return {"save": {"class_type": "ConsiStorySaveAnchorBank", "inputs": {"bank": ["bank", 0],
                                                                                "filename_prefix": prefix}}}

    host.run(_with(base, **after, **saved("direct")))  # the nodes right after their sampler
    direct_pass2 = latents["pass2"].clone()
    host.run(base, keep_cache=True)                      # seed 1 ...
    host.run(_with(base, **second), keep_cache=True)     # ... then seed 2 on the same patched model ...
    host.run(_with(base, **second, **after, **saved("late")), keep_cache=True)  # ... then the nodes after seed 1
    direct = load_file(str(outputs / "consistory_banks" / "direct_00001.safetensors"))
    late = load_file(str(outputs / "consistory_banks" / "late_00001.safetensors"))
    assert torch.equal(late["inputs"], direct["inputs"]) and torch.equal(late["sigmas"], direct["sigmas"])
    assert torch.equal(latents["pass2"], direct_pass2)


def test_mask_preview_given_the_samples_shows_the_masks_of_their_run(host, latents, outputs):
    from consistory_run.graphs import with_preview
    g = with_preview(story_graph(steps=6, key="one"))
    del g["show"]
    g["mask_out"] = {"class_type": "ConsiStoryMaskCapture", "inputs": {"mask": ["masks", 0], "key": "masks"}}
    host.run(g)
    direct = latents["masks"].clone()
    host.run(story_graph(steps=6, key="one"), keep_cache=True)
    other = {"sampler2": {"class_type": "KSampler", "inputs": {**g["sampler"]["inputs"], "seed": 5}},
             "capture2": {"class_type": "ConsiStoryLatentCapture", "inputs": {"samples": ["sampler2", 0], "key": "x"}}}
    host.run({**story_graph(steps=6, key="one"), **other}, keep_cache=True)
    host.run({**g, **other}, keep_cache=True)  # Mask Preview runs after the seed-5 run
    assert torch.equal(latents["masks"], direct)
    without = {**g, **other, "masks": {**g["masks"], "inputs": {k: v for k, v in g["masks"]["inputs"].items()
                                                               if k != "samples"}}}
    host.run(without, keep_cache=True)  # without samples: the last run's masks (seed 5)
    assert not torch.equal(latents["masks"], direct)


def drop_from_the_hosts_cache(host, node_ids):
    """What a host cache that evicts under memory pressure (ComfyUI 0.38's default) does
    between prompts: forgets the outputs of ``node_ids`` and keeps every other node's."""
    cache = host._executor.caches.outputs  # by each node's input signature
    for node_id in node_ids:
        del cache.cache[cache.cache_key_set.get_data_key(node_id)]


def test_a_patched_model_dropped_from_the_hosts_cache_says_what_to_run_again(host, latents, outputs):
    """The sampler's output kept, the patched model made again: Anchor Bank says what happened
    and what to do (not "nothing recorded"), and doing it works."""
    from consistory_run.graphs import make_subject_graph
    from consistory_run.host import GraphError
    graph = make_subject_graph(["in a park", "on a beach"], anchors=2, prefix="dropped", steps=3)
    host.run(graph, keep_cache=True)
    drop_from_the_hosts_cache(host, ["sdsa", "bank", "save_bank"])
    with pytest.raises(GraphError, match=r"ConsiStory Anchor Bank: the model patched by ConsiStory has not sampled "
                                         r"since it was made: .* change to the sampler \(e\.g\. its seed\)"):
        host.run(graph, keep_cache=True)
    graph["sampler"]["inputs"]["seed"] += 1
    host.run(graph, keep_cache=True)
    assert len(list((outputs / "consistory_banks").glob("dropped_*.safetensors"))) == 2
