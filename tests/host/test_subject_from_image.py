"""A subject from photos on the real host (ConsiStory Subject From Image): the inverted
anchors are a trajectory the host's Euler ancestral walks exactly with their correction
noise; a photo bank saves, loads in a fresh process and reuses like any bank, with every
sampler that evaluates once per step; a user's mask is what the new images share from."""
import pytest
import torch

from consistory_run.graphs import photo_bank_graph, reuse_subject_graph, story_graph
from consistory_testing.pack import pack_module
from consistory_testing.run_graph import run_fresh

CAPTIONS = ["in a park", "on a beach"]
NEW = ["cooking dinner", "riding a horse"]
STEPS = 6


def node_module(host):
    """The pack's module of the node, as the host loaded it (with the runtime functions it uses)."""
    return pack_module(host.nodes.NODE_CLASS_MAPPINGS, "nodes.subject_from_image")


def photo(width=128, height=96, photos=2):
    """Photos with some structure: a bright disc on a gradient, one per photo."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    out = []
    for i in range(photos):
        disc = ((x - 0.3 - 0.3 * i) ** 2 + (y - 0.5) ** 2 < 0.05).float()
        out.append(torch.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 + 0.4 * disc], -1))
    return torch.stack(out)


def test_euler_ancestral_walks_the_inverted_trajectory_with_its_correction_noise(host):
    """Replaying the inverted anchors through the host's own sample_euler_ancestral, with the
    correction noise as its noise, lands on every inverted input and, with the last step's
    residual, on the photos' latent: the trajectory is one the sampler takes."""
    import comfy.k_diffusion.sampling as k_sampling
    from consistory_testing.tiny_models import NODE_CLASS_MAPPINGS as TINY
    mod = node_module(host)
    model, clip, vae = TINY["ConsiStoryTinySDXLCheckpoint"]().load(0)
    positive, subject = mod.encode_story(clip, "an old man with a hat", "man, hat", CAPTIONS, "a photo of", "test")
    uncond, pooled = clip.encode_from_tokens(clip.tokenize("blurry"), return_pooled=True)
    negative = [[uncond, {"pooled_output": pooled}]]
    sample_with = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.host_api").sample_with
    latent = vae.encode(photo())
    sigmas = mod.sampler_sigmas(model, "euler_ancestral", "karras", STEPS)
    inverted = mod.invert_photos(model, latent, positive, negative, subject, sigmas, 5.0, 7)
    assert inverted.inputs.shape == (STEPS, 2, *latent.shape[1:])
    torch.testing.assert_close(inverted.bank.inputs, inverted.inputs)  # what the recorder kept is the trajectory
    corrections = inverted.corrections

    def replay(scale_noise):
        seen, x0 = [], {}

        def walk(denoiser, x, sigmas, extra_args=None, callback=None, disable=None):
            maps = iter([c.to(x) * scale_noise for c in corrections])
            out = k_sampling.sample_euler_ancestral(
                denoiser, inverted.inputs[0].to(x), sigmas, extra_args=extra_args, disable=True,
                callback=lambda d: seen.append(d["x"].cpu()), noise_sampler=lambda s, s_next: next(maps))
            x0["photo"], x0["walked"] = x.cpu(), out.cpu()
            return out
        sample_with(inverted.model, walk, sigmas, positive, negative, latent, 5.0)
        return torch.stack(seen), x0["walked"] + corrections[-1], x0["photo"]

    walked, landed, x0 = replay(1.0)
    scale = inverted.inputs.abs().amax().item()
    print(f"max |walked - inverted| = {(walked - inverted.inputs).abs().max():.3g}, "
          f"max |landed - photo| = {(landed - x0).abs().max():.3g} (latents up to {scale:.3g})")
    torch.testing.assert_close(walked, inverted.inputs, rtol=1e-4, atol=1e-4 * scale)
    torch.testing.assert_close(landed, x0, rtol=1e-4, atol=1e-4 * scale)
    walked, landed, _ = replay(0.5)  # other noise: the sampler leaves the trajectory
    assert (walked[1:] - inverted.inputs[1:]).abs().max() > 0.1 * scale


def _bank_graph(prefix, photos=2, mask_value=None, **kw):
    mask = None if mask_value is None else {"class_type": "SolidMask", "inputs": {"value": mask_value, "width": 128,
                                                                                  "height": 96}}
    g = photo_bank_graph(photos, prefix=prefix, captions="\n".join(CAPTIONS[:photos]), steps=STEPS, mask=mask, **kw)
    g["mask_capture"] = {"class_type": "ConsiStoryMaskCapture", "inputs": {"mask": ["bank", 1], "key": "photo_mask"}}
    return g


def test_a_photo_bank_reuses_in_a_fresh_process_as_in_this_one(host, latents, outputs):
    from consistory_core.bank_file import AnchorBank
    host.run(_bank_graph("photo"))
    path = outputs / "consistory_banks" / "photo_00001.safetensors"
    bank = AnchorBank.load(path)
    assert bank.description.origin == "photo" and bank.anchors == 2 and bank.inputs.shape[0] == STEPS
    assert bank.description.prompts == tuple(f"a photo of an old man with a hat {c}" for c in CAPTIONS)
    assert latents["photo_mask"].shape == (2, 96, 128) and 0 < latents["photo_mask"].mean() < 1
    reuse = reuse_subject_graph(NEW, "output/photo_00001.safetensors", steps=STEPS)
    host.run(reuse)
    here = latents["story"]
    fresh = run_fresh(reuse, outputs)["story"]
    torch.testing.assert_close(fresh, here, rtol=1e-4, atol=1e-4 * here.abs().amax().item())
    plain = story_graph(CAPTIONS + NEW, steps=STEPS, sdsa=False)  # the new images' own noise, nothing shared
    host.run(plain)
    assert not torch.allclose(latents["story"][2:], here, atol=1e-3)


@pytest.mark.parametrize("mode", ["blend", "injection"])
def test_a_photo_bank_takes_query_blend_and_feature_injection(host, latents, outputs, mode):
    """A photo's anchors do not depend on those settings: the bank takes them, and they change
    the new images."""
    host.run(_bank_graph("method"))
    name = "output/method_00001.safetensors"
    host.run(reuse_subject_graph(NEW, name, steps=STEPS))
    without = latents["story"]
    kw = dict(blend=True, blend_end=0.35) if mode == "blend" else dict(inject="fast")
    host.run(reuse_subject_graph(NEW, name, steps=STEPS, **kw))
    assert not torch.allclose(latents["story"], without)


def test_every_sampler_the_node_offers_reuses_its_photo_bank(host, latents, outputs):
    import comfy.samplers
    offered = [s for s in node_module(host).ONE_EVALUATION_SAMPLERS if s in comfy.samplers.KSampler.SAMPLERS]
    assert len(offered) >= 8
    for sampler in offered:
        host.run(_bank_graph(sampler, photos=1, sampler=sampler, scheduler="karras"))
        host.run(reuse_subject_graph(NEW[:1], f"output/{sampler}_00001.safetensors", steps=STEPS, sampler=sampler,
                                     scheduler="karras"))
        assert torch.isfinite(latents["story"]).all(), sampler


def test_a_photo_bank_refuses_a_sampler_that_evaluates_twice_per_step(host, latents, outputs):
    from consistory_run.host import GraphError
    host.run(_bank_graph("twice", photos=1))
    with pytest.raises(GraphError, match=r"model evaluation 3 is at sigma .*inverted from 1 photo\(s\): 6 steps, "
                                         r"one model evaluation per step"):
        host.run(reuse_subject_graph(NEW[:1], "output/twice_00001.safetensors", steps=STEPS, sampler="heun"))


def test_an_empty_mask_shares_nothing_and_a_full_mask_shares_the_whole_photo(host, latents, outputs):
    """With the user's mask empty the new images see none of the photos: they are plain
    samples (the same noise, nothing shared), exactly; a full mask makes them differ."""
    host.run(_bank_graph("empty", mask_value=0.0))
    assert latents["photo_mask"].abs().max() == 0
    host.run(reuse_subject_graph(NEW, "output/empty_00001.safetensors", steps=STEPS))
    shared_nothing = latents["story"]
    plain = story_graph(CAPTIONS + NEW, steps=STEPS, sdsa=False)
    host.run(plain)
    assert torch.equal(latents["story"][2:], shared_nothing)
    host.run(_bank_graph("full", mask_value=1.0))
    assert latents["photo_mask"].min() == 1
    host.run(reuse_subject_graph(NEW, "output/full_00001.safetensors", steps=STEPS))
    assert not torch.allclose(latents["story"], shared_nothing, atol=1e-3)


NODE = "ConsiStory Subject From Image: "


@pytest.mark.parametrize("change, match", [
    (dict(captions="in a park\non a beach\nin a car"), NODE + r"2 photo\(s\) but 3 caption lines"),
    (dict(words="cat"), NODE + r"subject word 'cat' does not occur in the prompt"),
    (dict(mask={"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}),
     NODE + r"the mask is 1 x 64x64 but the image is 2 x 128x96; give one mask of the photo's size, or one per "
            r"photo \(node"),
    (dict(mask={"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}}),  # Load Image's
     NODE + r"the mask is 1 x 64x64 .*\(Load Image gives an empty 64x64 mask for a photo without transparency"),
    # the node's own check (ComfyUI 0.38 refuses it before, "sampler_name: 'heun' not in [...]"; 0.3.75 does
    # not check a V3 node's combo values)
    (dict(sampler="heun"), r"sampler_name 'heun' is not one that evaluates the model once per step; use one of "
                           r"euler, euler_ancestral"),
])
def test_bad_input_is_refused_naming_it(host, latents, outputs, change, match):
    from consistory_run.host import GraphError
    g = photo_bank_graph(2, prefix="bad", steps=STEPS, **{"captions": "in a park\non a beach", **change})
    with pytest.raises(GraphError, match=match):
        host.run(g)
    assert not (outputs / "consistory_banks").exists()
