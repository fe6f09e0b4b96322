"""The stock graph (Story Prompts -> SDSA -> KSampler -> VAEDecode) on the trained story-world
weights, on the real ComfyUI host.

Not collected yet (no test_ prefix): it needs story_world/weights/story_world.safetensors,
which is not committed until a training run finishes; then it becomes test_stock_graph.py."""
import numpy as np
import pytest
import torch

SCENES = ["on the left in a snowy field", "jumping in a forest", "in the middle on the moon", "in a desert"]


class ImageCapture:
    """Test node: keeps the images it is given under a key."""
    store: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "key": ("STRING", {"default": "images"})}}

    RETURN_TYPES = ()
    FUNCTION = "keep"
    OUTPUT_NODE = True
    CATEGORY = "ConsiStory/testing"

    def keep(self, images, key):
        self.store[key] = images.clone()
        return {}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    from consistory_run.host import Host
    from story_world import nodes as story_nodes
    h = Host.start()
    if "ConsiStoryStoryPrompts" not in h.nodes.NODE_CLASS_MAPPINGS:
        h.load_pack(tmp_path_factory.mktemp("comfy") / "custom_nodes")
    h.register(story_nodes.NODE_CLASS_MAPPINGS)
    h.register({"StoryWorldImageCapture": ImageCapture})
    return h


def story_world_graph(scenes=SCENES, *, sdsa=True, seed=1, steps=20, cfg=4.0, key="images"):
    g = {
        "ckpt": {"class_type": "ConsiStoryStoryWorldCheckpoint", "inputs": {}},
        "story": {"class_type": "ConsiStoryStoryPrompts", "inputs": {
            "clip": ["ckpt", 1], "subject": "a small creature", "subject_words": "creature",
            "scenes": "\n".join(scenes), "style_prefix": "a photo of"}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": ""}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": ["story", 2]}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": ["sdsa", 0] if sdsa else ["ckpt", 0], "positive": ["story", 0], "negative": ["neg", 0],
            "latent_image": ["latent", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}},
        "capture": {"class_type": "StoryWorldImageCapture", "inputs": {"images": ["decode", 0], "key": key}},
    }
    if sdsa:
        g["sdsa"] = {"class_type": "ConsiStorySDSA", "inputs": {
            "model": ["ckpt", 0], "subject": ["story", 1], "dropout": 0.5, "dropout_seed": 0, "anchors": 0,
            "start_percent": 0.0, "end_percent": 1.0, "blocks": "output (paper)"}}
    return g


def test_stock_graph_on_the_trained_model(host):
    from story_world.measure import prompt_alignment, subject_consistency
    prompts = [f"a photo of a small creature {s}" for s in SCENES]
    host.run(story_world_graph(sdsa=False, key="vanilla"))
    host.run(story_world_graph(sdsa=True, key="sdsa"))
    vanilla, shared = ImageCapture.store["vanilla"], ImageCapture.store["sdsa"]
    for images in (vanilla, shared):
        assert images.shape == (len(SCENES), 64, 64, 3)
        assert 0 <= images.min() and images.max() <= 1
    assert not torch.allclose(vanilla, shared)
    alignment = prompt_alignment(vanilla, prompts)
    assert alignment["scene"] >= 0.75, alignment  # the model draws the scene the prompt names
    print("vanilla", alignment, subject_consistency(vanilla, prompts))
    print("sdsa", prompt_alignment(shared, prompts), subject_consistency(shared, prompts))
