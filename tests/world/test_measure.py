"""The measurements on ground-truth renders, where the right answers are known."""
import numpy as np
import pytest

from story_world.measure import layout_diversity, mask_iou, prompt_alignment, subject_consistency
from story_world.render import render
from story_world.world import Identity, random_spec

SAME = Identity("orange", "stripes", "scarf", "blue")


def _batch(seed, n=6, identities=None, layout=None, kinds=("creature",)):
    rng = np.random.default_rng(seed)
    specs = [random_spec(rng, layout=layout, kinds=kinds, identities=identities) for _ in range(n)]
    images, masks = zip(*(render(s) for s in specs))
    return np.stack(images), [s.prompt for s in specs], np.stack([m[0] for m in masks])


def test_consistency_is_zero_distance_for_one_identity_and_high_for_random_ones():
    images, prompts, _ = _batch(0, identities=(SAME,), layout="middle")
    same = subject_consistency(images, prompts)
    assert same["found"] == 1.0 and same["pairs"] == 15
    assert same["distance"] == 0.0 and same["same_colour"] == 1.0
    images, prompts, _ = _batch(1)
    assert subject_consistency(images, prompts)["distance"] > 0.5


def test_consistency_of_the_second_subject_of_pairs():
    rng = np.random.default_rng(2)
    other = [Identity(c, "plain", "none", None) for c in ("red", "blue", "green", "pink")]
    specs = [random_spec(rng, kinds=("creature", "robot"), identities=(o, SAME)) for o in other]
    images = np.stack([render(s)[0] for s in specs])
    prompts = [s.prompt for s in specs]
    assert subject_consistency(images, prompts, slot=1)["distance"] == 0.0
    assert subject_consistency(images, prompts, slot=0)["same_colour"] == 0.0


def test_alignment_on_renders_and_with_wrong_prompts():
    images, prompts, _ = _batch(3, n=8)
    assert prompt_alignment(images, prompts) == {"scene": 1.0, "layout": 1.0, "both": 1.0}
    images, prompts, _ = _batch(4, n=8, layout="right")
    wrong = [p.replace("on the right", "on the left") for p in prompts]
    assert prompt_alignment(images, wrong)["layout"] == 0.0


def test_diversity_zero_for_identical_images_and_positive_for_random_layouts():
    images, prompts, _ = _batch(5, n=1)
    same = layout_diversity(np.repeat(images, 4, axis=0), prompts * 4)
    assert same["pairwise"] == 0.0 and same["x_std"] == 0.0
    images, prompts, _ = _batch(6, n=8)
    assert layout_diversity(images, prompts)["pairwise"] > 0.05


def test_mask_iou_of_true_masks_low_resolution_masks_and_empty_masks():
    images, prompts, masks = _batch(7)
    iou = mask_iou(masks, images, prompts)
    assert iou.mean() > 0.95 and iou.min() > 0.85  # a stripe shade next to its scene's colour is lost
    coarse = masks.reshape(-1, 16, 4, 16, 4).mean(axis=(2, 4))  # soft 16 x 16 masks
    assert (mask_iou(coarse, images, prompts) > 0.7).all()
    assert (mask_iou(np.zeros_like(masks), images, prompts) == 0).all()


def test_bad_inputs_are_refused():
    images, prompts, _ = _batch(8, n=2)
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        prompt_alignment(images, prompts[:1])
    with pytest.raises(ValueError, match="expected images"):
        subject_consistency(images[0], prompts)
