"""The evaluation script end to end on the host, with random-weight scoring models, so its
model loading, generation and scoring cannot rot; its metrics against naive references."""
import json
import math

import pytest
import torch


@pytest.fixture(scope="module")
def scoring_models(host, tmp_path_factory):
    """Tiny random CLIP and DINOv2 models saved the way hub models are (from_pretrained folders)."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer, Dinov2Config, Dinov2Model
    root = tmp_path_factory.mktemp("scorers")
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    clip = CLIPModel(CLIPConfig(text_config=dict(small, vocab_size=49408, max_position_embeddings=77),
                                vision_config=dict(small, image_size=32, patch_size=8), projection_dim=16))
    clip.save_pretrained(root / "clip")
    CLIPTokenizer.from_pretrained(str(host.path / "comfy" / "sd1_tokenizer")).save_pretrained(root / "clip")
    Dinov2Model(Dinov2Config(image_size=32, patch_size=8, **small)).save_pretrained(root / "dino")
    return root


def test_evaluation_runs_and_reports_both_methods(host, scoring_models, tmp_path):
    from evaluation.evaluate import main
    out = tmp_path / "eval"
    assert main(["--tiny-model", "--clip", str(scoring_models / "clip"), "--dino", str(scoring_models / "dino"),
                 "--limit", "2", "--steps", "4", "--size", "128", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(r["set"], r["method"]) for r in results["rows"]] == [
        ("old man", "vanilla SDXL"), ("old man", "ConsiStory"), ("young woman", "vanilla SDXL"), ("young woman", "ConsiStory")]
    for row in results["rows"]:
        assert all(math.isfinite(row[k]) for k in ("clip_score", "clip_i", "dino"))
        assert -1 <= row["clip_i"] <= 1 and -1 <= row["dino"] <= 1 and 0 <= row["clip_score"] <= 100
    assert "| **mean** | ConsiStory |" in (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 10_000
    assert len(list((out / "old_man").glob("consistory_*_mask.png"))) == 5


def test_the_consistory_plus_benchmark_runs_with_its_three_measures(host, scoring_models, tmp_path):
    """ConsiStory+ (1Prompt1Story's 192 subjects): its prompt sets load and its Table-1
    columns (CLIP-T, CLIP-I and DreamSim on background-removed subjects) are reported, with a
    random-weight stand-in for DreamSim (the real one downloads its weights)."""
    from evaluation.consistory_plus import prompt_sets
    from evaluation.evaluate import main
    sets = prompt_sets()
    assert len(sets) == 192 and sum(len(s["scenes"]) for s in sets) == 1100
    out = tmp_path / "plus"
    assert main(["--tiny-model", "--clip", str(scoring_models / "clip"), "--dino", "", "--sets", "consistory+",
                 "--dreamsim", "consistory_testing.scorers:tiny_dreamsim", "--limit", "2", "--steps", "2",
                 "--size", "64", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["set"] for r in results["rows"]] == ["animals_0", "animals_0", "animals_1", "animals_1"]
    for row in results["rows"]:
        assert 0 <= row["clip_t"] <= 2.5 and -1 <= row["clip_i_bg"] <= 1 and 0 <= row["dreamsim"] <= 2
    assert "dreamsim" in (out / "results.md").read_text()


def test_the_benchmark_measures_against_naive_references():
    from consistory_testing.scorers import tiny_dreamsim
    from evaluation.metrics import Scorers, remove_background
    images, masks = torch.rand(3, 32, 32, 3), torch.zeros(3, 32, 32)
    masks[:, 8:24, 8:24] = 1
    masks[2] = 0  # an empty mask keeps the whole image
    removed = remove_background(images, masks)
    assert torch.equal(removed[0, 10, 10], images[0, 10, 10]) and torch.equal(removed[0, 2, 2], torch.ones(3))
    assert torch.equal(removed[2], images[2])

    class Fixed(Scorers):  # known embeddings instead of CLIP
        def clip_image(self, x):
            return x.flatten(1)[:, :6]

        def clip_text(self, texts):
            return torch.arange(6.0)[None].repeat(len(texts), 1) - 2.0

    scorers = Fixed(clip=torch.nn.Linear(1, 1), tokenizer=None, dreamsim=tiny_dreamsim())
    got = scorers.benchmark(images, masks, ["a", "b", "c"])
    text = torch.arange(6.0) - 2.0
    cos = [float(torch.dot(images[i].flatten()[:6], text) / (images[i].flatten()[:6].norm() * text.norm()))
           for i in range(3)]
    assert abs(got["clip_t"] - 2.5 * sum(max(c, 0) for c in cos) / 3) < 1e-5
    pixels = torch.nn.functional.interpolate(removed.permute(0, 3, 1, 2), size=(224, 224), mode="bicubic",
                                             align_corners=False).clamp(0, 1)
    e = scorers.dreamsim.embed(pixels)
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = sum(1 - float(torch.dot(e[i], e[j]) / (e[i].norm() * e[j].norm())) for i, j in pairs) / 3
    assert abs(got["dreamsim"] - expected) < 1e-5


def test_subject_region_greys_the_background_and_crops_to_the_mask():
    from evaluation.metrics import subject_region
    images = torch.rand(1, 64, 64, 3)
    masks = torch.zeros(1, 64, 64)
    masks[0, 16:32, 16:32] = 1
    region = subject_region(images, masks)
    assert region.shape == images.shape
    expected = torch.nn.functional.interpolate(images[:, 16:32, 16:32].permute(0, 3, 1, 2), size=(64, 64),
                                               mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    assert torch.allclose(region, expected, atol=1e-6)
    masks[0, 40:44, 40:44] = 1  # a second blob: the crop [16:44, 16:44] spans both, the gap is grey
    region = subject_region(images, masks)
    assert torch.allclose(region[0, 55, 32], torch.full((3,), 0.5), atol=1e-6)  # pixel (40, 30) of the image
    assert not torch.allclose(region[0, 60, 60], torch.full((3,), 0.5), atol=1e-3)  # inside the second blob


def test_mean_pairwise_cosine_against_a_loop():
    from evaluation.metrics import mean_pairwise_cosine
    e = torch.randn(5, 7)
    expected = sum(float(torch.dot(e[i], e[j]) / (e[i].norm() * e[j].norm()))
                   for i in range(5) for j in range(i + 1, 5)) / 10
    assert abs(mean_pairwise_cosine(e) - expected) < 1e-6


def test_preprocess_resizes_crops_and_normalises():
    from evaluation.metrics import CLIP_MEAN, CLIP_STD, preprocess
    grey = torch.full((2, 48, 96, 3), 0.5)
    x = preprocess(grey, 32, CLIP_MEAN, CLIP_STD)
    assert x.shape == (2, 3, 32, 32)
    for c in range(3):
        assert torch.allclose(x[:, c], torch.full_like(x[:, c], (0.5 - CLIP_MEAN[c]) / CLIP_STD[c]), atol=1e-5)
