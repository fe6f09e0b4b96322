"""Anchor banks on the real host: a subject made once, saved, loaded in a fresh process and
reused for new prompts gives the new images exactly what one batch with the anchors gives."""
import json

import pytest
import torch

from consistory_run.graphs import make_subject_graph, reuse_subject_graph, story_graph
from consistory_run.workflow_format import input_specs
from consistory_testing.run_graph import run_fresh

ANCHORS = ["walking in a park", "reading a book"]
NEW = ["cooking dinner", "swimming in a lake", "riding a horse"]
STEPS = 8


@pytest.mark.parametrize("new", [NEW[:1], NEW], ids=["one new prompt", "three new prompts"])
@pytest.mark.parametrize("method", ["sdsa", "full"], ids=["SDSA", "SDSA+blend+injection"])
def test_reuse_in_a_fresh_process_equals_one_batch(host, latents, outputs, new, method):
    kw = dict(steps=STEPS, blend=True, blend_end=0.35, inject="fast") if method == "full" else dict(steps=STEPS)
    host.run(story_graph(ANCHORS + new, anchors=2, **kw))
    in_batch = latents["story"][2:]
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="man", **kw))
    assert (outputs / "consistory_banks" / "man_00001.safetensors").is_file()
    bank = "output/man_00001.safetensors"  # as Load Anchor Bank lists it
    reused = run_fresh(reuse_subject_graph(new, bank, anchors=2, **kw), outputs)["story"]
    assert reused.shape == in_batch.shape
    print(f"max |reused - in batch| = {(reused - in_batch).abs().max().item():.3g} "
          f"(latents up to {in_batch.abs().max().item():.3g})")
    torch.testing.assert_close(reused, in_batch, rtol=1e-4, atol=1e-4 * in_batch.abs().amax().item())
    g = story_graph(ANCHORS + new, **kw)  # the same batch with nothing shared: the anchors did matter
    g["sampler"]["inputs"]["model"] = ["ckpt", 0]
    host.run(g)
    assert not torch.allclose(latents["story"][2:], in_batch)


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "uni_pc", "ddim"])
def test_reuse_equals_one_batch_for_every_deterministic_sampler(host, latents, outputs, sampler):
    """heun evaluates twice at one sigma with other inputs (its correction, then the next step),
    uni_pc and dpmpp_2m keep a history of earlier evaluations: the bank keeps one entry per
    model evaluation, in the sampler's order."""
    kw = dict(steps=6, sampler=sampler)
    host.run(story_graph(ANCHORS + NEW[:1], anchors=2, **kw))
    in_batch = latents["story"][2:]
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix=sampler, **kw))
    host.run(reuse_subject_graph(NEW[:1], f"output/{sampler}_00001.safetensors", anchors=2, **kw))
    torch.testing.assert_close(latents["story"], in_batch, rtol=1e-4, atol=1e-4 * in_batch.abs().amax().item())


def test_a_bank_refuses_a_sampler_that_evaluates_otherwise(host, latents, outputs):
    """euler and heun walk the same sigmas; heun evaluates twice per step: a heun bank reused
    with euler (and the other way round) is refused, naming the evaluation that differs."""
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="heun", steps=STEPS, sampler="heun"))
    _reuse_error(host, reuse_subject_graph(NEW[:1], "output/heun_00001.safetensors", steps=STEPS, sampler="euler"),
                 r"model evaluation 3 is at sigma .*; the bank's is at sigma .*another sampler or schedule "
                 r"\(15 model evaluations at 8 sigmas")
    _bank(host, outputs, prefix="euler")
    _reuse_error(host, reuse_subject_graph(NEW[:1], "output/euler_00001.safetensors", steps=STEPS, sampler="heun"),
                 r"model evaluation 3 is at sigma .*; the bank's is at sigma .*another sampler or schedule")


def test_banks_round_trip_through_files_with_their_metadata(host, latents, outputs):
    from safetensors import safe_open
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="round", steps=STEPS))
    path = outputs / "consistory_banks" / "round_00001.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        inputs = f.get_tensor("inputs")
    assert meta["format"] == "consistory-anchor-bank" and meta["version"] == "2"
    assert meta["model_family"] == "SDXL" and meta["latent_size"] == "12x16" and meta["anchors"] == "2"
    assert json.loads(meta["subject_words"]) == [["an old man with a hat", ["man", "hat"]]]
    assert json.loads(meta["token_counts"]) == [77, 77]
    assert inputs.shape == (STEPS, 2, 4, 12, 16)  # euler: one model evaluation per step
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="round", steps=STEPS))
    assert (outputs / "consistory_banks" / "round_00002.safetensors").is_file()


def _bank(host, outputs, prefix="bad"):
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix=prefix, steps=STEPS))
    return outputs / "consistory_banks" / f"{prefix}_00001.safetensors"


def _reuse_error(host, graph, match):
    from consistory_run.host import GraphError
    with pytest.raises(GraphError, match=match):
        host.run(graph)


def test_a_bank_refuses_another_size_schedule_or_words(host, latents, outputs):
    _bank(host, outputs)
    name = "output/bad_00001.safetensors"
    other_size = reuse_subject_graph(NEW[:1], name, steps=STEPS)  # Bank Latent has the bank's size; a
    other_size["latent"] = {"class_type": "EmptyLatentImage",   # latent of the user's own may not
                            "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    _reuse_error(host, other_size, r"bank was made at 128x96 px.*this run is 64x64 px")
    _reuse_error(host, reuse_subject_graph(NEW[:1], name, steps=STEPS + 2),
                 r"model evaluation 2 is at sigma .*; the bank's is at sigma .*: the bank was made with another "
                 r"sampler or schedule")
    _reuse_error(host, reuse_subject_graph(NEW[:1], name, steps=STEPS, words="man"),
                 r"bank's subject words are \[\['man', 'hat'\]\].*\[\['man'\]\]")


def test_a_bank_refuses_another_model_family(host, latents, outputs):
    """A bank whose metadata names another model family is refused by Use Anchors."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    path = _bank(host, outputs)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    info = json.loads(meta["info"])
    info["model_family"] = "SD15"
    meta.update(info=json.dumps(info), model_family="SD15")
    tensors = load_file(str(path))
    path.unlink()  # save_file does not shorten an existing file
    save_file(tensors, str(path), metadata=meta)
    _reuse_error(host, reuse_subject_graph(NEW[:1], "output/" + path.name, steps=STEPS),
                 r"another kind of model \(model family: bank SD15, model SDXL\)")


@pytest.mark.parametrize("damage", ["truncated", "not a bank", "garbage"])
def test_load_refuses_a_broken_file_clearly(host, latents, outputs, damage):
    from consistory_run.host import GraphError
    path = _bank(host, outputs, prefix="broken")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
        match = "cannot be read as a .safetensors file"
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 100)
        match = "cannot be read as a .safetensors file"
    else:
        from safetensors.torch import save_file
        path.unlink()  # save_file does not shorten an existing file
        save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "something else"})
        match = "is not a ConsiStory anchor bank"
    with pytest.raises(GraphError, match=match):
        host.run(reuse_subject_graph(NEW[:1], "output/broken_00001.safetensors", steps=STEPS))


def test_a_bank_refuses_a_shorter_schedule_whose_sigmas_are_all_on_its_own(host, latents, outputs):
    """Every sigma of 4 steps is on the 8-step schedule (the simple scheduler): being on the
    schedule is not enough; the run must walk the bank's sigmas in order."""
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="eight", steps=STEPS, scheduler="simple"))
    _reuse_error(host, reuse_subject_graph(NEW[:1], "output/eight_00001.safetensors", steps=STEPS // 2,
                                           scheduler="simple"),
                 r"model evaluation 2 is at sigma .*; the bank's is at sigma .*: the bank was made with another "
                 r"sampler or schedule \(8 model evaluations at 8 sigmas")


def test_use_anchors_refuses_a_model_already_patched_by_sdsa(host, latents, outputs):
    _bank(host, outputs, prefix="twice")
    g = reuse_subject_graph(NEW[:1], "output/twice_00001.safetensors", steps=STEPS)
    g["first_sdsa"] = {"class_type": "ConsiStorySDSA", "inputs": {
        "model": ["ckpt", 0], "subject": ["story", 1], "dropout": 0.5, "dropout_seed": 0, "anchors": 0,
        "start_percent": 0.0, "end_percent": 1.0, "blocks": "output (paper)"}}
    g["sdsa"]["inputs"]["model"] = ["first_sdsa", 0]
    _reuse_error(host, g, "ConsiStory Use Anchors: the model is already patched by ConsiStory")


def bank_choices(load_node) -> list:
    """The bank names Load Anchor Bank offers now (its declaration is made anew on every ask)."""
    return next(kind for name, kind, _ in input_specs(load_node) if name == "bank_name")


def test_load_anchor_bank_offers_a_readable_choice_on_a_fresh_install(host, latents, outputs):
    from consistory_run.host import GraphError
    load = host.nodes.NODE_CLASS_MAPPINGS["ConsiStoryLoadAnchorBank"]
    choices = bank_choices(load)
    assert len(choices) == 1 and choices[0].startswith("(no bank yet")  # not an empty list ("undefined")
    with pytest.raises(GraphError, match="there is no bank yet; make one with ConsiStory Anchor Bank"):
        host.run(reuse_subject_graph(NEW[:1], choices[0], steps=STEPS))
    _bank(host, outputs, prefix="first")
    assert bank_choices(load) == ["output/first_00001.safetensors"]


def test_bank_latent_gives_the_banks_size_and_the_noise_after_its_anchors(host, latents, outputs):
    """Bank Latent equals Empty Latent of (anchors + new) images at the bank's size followed
    by Latent From Batch from the anchors on: the same sampled images."""
    _bank(host, outputs, prefix="sized")
    g = reuse_subject_graph(NEW, "output/sized_00001.safetensors", steps=STEPS)
    host.run(g)
    with_node = latents["story"]
    g["latent"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 96, "batch_size": 2 + len(NEW)}}
    g["new_rows"] = {"class_type": "LatentFromBatch", "inputs": {"samples": ["latent", 0], "batch_index": 2,
                                                                 "length": len(NEW)}}
    g["sampler"]["inputs"]["latent_image"] = ["new_rows", 0]
    host.run(g)
    assert with_node.shape == (len(NEW), 4, 12, 16) and torch.equal(with_node, latents["story"])


def test_a_bank_refuses_other_weights_or_weight_patches(host, latents, outputs):
    """The bank records a fingerprint of the model's weights and weight patches (a LoRA, or
    as here a stock model merge, patches weights): another checkpoint, or the same one with
    other patches, is refused at Use Anchors, naming what the bank had."""
    _bank(host, outputs, prefix="weights")
    name = "output/weights_00001.safetensors"
    other = reuse_subject_graph(NEW[:1], name, steps=STEPS)
    other["ckpt"]["inputs"]["weight_seed"] = 1
    _reuse_error(host, other, r"the bank was made with other model weights or LoRAs \(bank: weights \w+, patches: none")
    merged = reuse_subject_graph(NEW[:1], name, steps=STEPS)
    merged["other"] = {"class_type": "ConsiStoryTinySDXLCheckpoint", "inputs": {"weight_seed": 1}}
    merged["merge"] = {"class_type": "ModelMergeSimple", "inputs": {"model1": ["ckpt", 0], "model2": ["other", 0],
                                                                    "ratio": 0.9}}
    merged["sdsa"]["inputs"]["model"] = ["merge", 0]
    _reuse_error(host, merged, r"this model: weights \w+, patches: \d+ weights patched, strengths 0\.1")
    host.run(reuse_subject_graph(NEW[:1], name, steps=STEPS))  # the bank's own model is accepted


def test_a_bank_refuses_other_blend_or_injection_settings(host, latents, outputs):
    """Query Blend and Feature Injection change the anchors' trajectory: reuse with other
    settings (or without the node) is refused, naming the node and both settings."""
    full = dict(steps=STEPS, blend=True, inject="fast")
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="method", **full))
    name = "output/method_00001.safetensors"
    _reuse_error(host, reuse_subject_graph(NEW[:1], name, steps=STEPS, inject="fast"),
                 r"made with ConsiStory Query Blend end_percent 0\.1, end_strength 0\.81836735, start_strength 0\.9; "
                 r"this run has it not used")
    _reuse_error(host, reuse_subject_graph(NEW[:1], name, **dict(full, alpha=0.5)),
                 r"ConsiStory Feature Injection alpha 0\.8, .*mode one pass.*; this run has it alpha 0\.5")
    host.run(reuse_subject_graph(NEW[:1], name, **full))


def test_a_two_pass_bank_reused_with_the_two_pass_graph_equals_one_batch(host, latents, outputs):
    """With two-pass injection the anchors go through two runs (pass 1 gives the features pass
    2 injects with): the bank keeps both, and the reuse graph's pass 1 and pass 2 replay
    their own."""
    kw = dict(steps=STEPS, blend=True, blend_end=0.35, inject="exact")
    host.run(story_graph(ANCHORS + NEW[:1], anchors=2, **kw))
    in_batch = latents["story"][2:]
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix="twopass", **kw))
    host.run(reuse_subject_graph(NEW[:1], "output/twopass_00001.safetensors", anchors=2, **kw))
    torch.testing.assert_close(latents["story"], in_batch, rtol=1e-4, atol=1e-4 * in_batch.abs().amax().item())
    one_pass = reuse_subject_graph(NEW[:1], "output/twopass_00001.safetensors", anchors=2, **dict(kw, inject="fast"))
    _reuse_error(host, one_pass, "ConsiStory Feature Injection .*mode two passes.*; this run has it .*mode one pass")


@pytest.mark.parametrize("size", [(72, 56), (72, 64)], ids=["7x9 latent", "8x9 latent"])
def test_use_anchors_says_where_a_reuse_cannot_equal_one_batch(host, latents, outputs, caplog, size):
    """At a 7x9 latent (252 values an image, not a multiple of 16) torch draws an image's noise
    differently alone and in a batch: a reuse differs from one batch with the anchors, and Use
    Anchors says so. At 8x9 the reuse equals one batch and nothing is said."""
    w, h = size
    kw = dict(steps=6, width=w, height=h)
    host.run(story_graph(ANCHORS + NEW[:1], anchors=2, **kw))
    in_batch = latents["story"][2:]
    host.run(make_subject_graph(ANCHORS, anchors=2, prefix=f"noise{h}", **kw))
    caplog.clear()
    host.run(reuse_subject_graph(NEW[:1], f"output/noise{h}_00001.safetensors", anchors=2, **kw))
    said = [r.message for r in caplog.records if "will not be exactly what one batch" in r.message]
    close = torch.allclose(latents["story"], in_batch, rtol=1e-4, atol=1e-4 * in_batch.abs().amax().item())
    if h == 56:
        assert said and "at 72x56 px" in said[0] and not close
    else:
        assert not said and close


def loaded(patcher, per_layer: bool):
    """Loads ``patcher`` on the CPU: its weight patches written into the weights, or (per_layer)
    applied as each layer runs (a partial load's weight functions, as ComfyUI 0.38's dynamic
    VRAM applies LoRAs)."""
    patcher.patch_model(device_to=torch.device("cpu"), lowvram_model_memory=1 if per_layer else 0)
    return patcher


def test_the_fingerprint_is_the_same_with_loras_in_the_weights_and_applied_per_layer(host):
    """A bank made with a LoRA is accepted on a host that applies it per layer and the reverse;
    the anchor cache sees a LoRA change either way."""
    from consistory_testing.pack import pack_module
    from consistory_testing.tiny_models import tiny_sdxl_unet
    host_api = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.host_api")
    model = tiny_sdxl_unet()
    weights = model.model.state_dict()
    g = torch.Generator().manual_seed(0)
    lora = {k: (torch.randn(w.shape, generator=g) * 0.05,) for k, w in weights.items()
            if k.startswith("diffusion_model.") and k.endswith(".weight")}
    patched = model.clone()
    patched.add_patches(lora, 0.8)
    recorded = host_api.model_fingerprint(patched)
    for per_layer in (False, True):
        loaded(patched, per_layer)
        try:
            live = patched.model.state_dict()
            written = any(not torch.equal(live[k], weights[k]) for k in lora)
            functions = any(getattr(m, "weight_function", None) for m in patched.model.modules())
            assert (written, functions) == ((False, True) if per_layer else (True, False))
            assert host_api.model_fingerprint(patched) == recorded, "written into the weights" if not per_layer \
                else "applied per layer"
            patched.model.current_patcher = patched  # as the host's pre_run does before sampling
            assert host_api.sampled_model_fingerprint(patched.model, patched.model.diffusion_model) == recorded[0]
        finally:
            patched.unpatch_model()
            patched.model.current_patcher = None
    weaker = model.clone()
    weaker.add_patches(lora, 0.5)
    assert host_api.model_fingerprint(weaker)[0] != recorded[0]
    assert host_api.model_fingerprint(model)[0] != recorded[0]


def test_use_anchors_on_a_host_without_the_mask_patch_fails_naming_it(host, latents, outputs):
    """Use Anchors checks its patches as SDSA does: without the attn2 patch the new images
    would get no subject masks and share nothing with the anchors."""
    from consistory_run.host import GraphError
    _bank(host, outputs, prefix="hooks")
    g = reuse_subject_graph(NEW[:1], "output/hooks_00001.safetensors", steps=STEPS)
    g["drop"] = {"class_type": "ConsiStoryDropHookProbe", "inputs": {"model": ["sdsa", 0], "hook": "attn2 patch"}}
    g["sampler"]["inputs"]["model"] = ["drop", 0]
    with pytest.raises(GraphError, match=r"ConsiStory Use Anchors: this ComfyUI \([^)]+\) did not call the "
                                         r"cross-attention \(attn2\) patch"):
        host.run(g)
