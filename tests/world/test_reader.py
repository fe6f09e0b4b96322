"""The readers on ground-truth renders, and on renders passed through the latent map (what a
perfect model would generate)."""
import numpy as np
import pytest

from story_world import latent_map
from story_world.reader import classify_scene, layout_matches, read_subjects, subject_masks
from story_world.render import background


def _through_latents(image):
    return latent_map.decode(latent_map.encode(image[None]))[0].numpy()


def _scores(renders, transform):
    scene = layout = iou = 0.0
    attrs, n = {"colour": 0, "pattern": 0, "accessory": 0, "accessory_colour": 0}, 0
    for spec, image, masks in renders:
        image = transform(image)
        scene += classify_scene(image) == spec.scene
        subjects = read_subjects(image, spec.scene, len(spec.subjects))
        layout += layout_matches(spec.layout, subjects, len(spec.subjects))
        for truth, mask, read in zip(spec.subjects, masks, subjects):
            iou += (mask & read.mask).sum() / (mask | read.mask).sum()
            if spec.layout != "distance":  # a 10-pixel subject's pattern and accessory are guesses
                n += 1
                for a in attrs:
                    attrs[a] += getattr(truth.identity, a) == getattr(read.identity, a)
    count = len(renders)
    subjects = sum(len(s.subjects) for s, _, _ in renders)
    return scene / count, layout / count, iou / subjects, {a: v / n for a, v in attrs.items()}


@pytest.mark.parametrize("through_latents", [False, True])
def test_reader_gets_scene_layout_identity_and_mask(renders, through_latents):
    scene, layout, iou, attrs = _scores(renders, _through_latents if through_latents else (lambda x: x))
    assert scene == 1.0
    assert layout >= 0.95
    assert iou >= (0.85 if through_latents else 0.95)
    assert min(attrs.values()) >= (0.9 if through_latents else 0.95), attrs


def test_two_subjects_are_found_left_to_right(renders):
    pairs = [(spec, image) for spec, image, _ in renders if len(spec.subjects) == 2]
    assert pairs
    for spec, image in pairs:
        left, right = read_subjects(image, spec.scene, 2)
        assert left.x < 0.5 < right.x
        assert left.identity.colour == spec.subjects[0].identity.colour
        assert right.identity.colour == spec.subjects[1].identity.colour


def test_background_alone_has_no_subject():
    for scene in ("snow", "city", "meadow", "moon"):
        image = background(scene, np.random.default_rng(3))
        assert subject_masks(image, scene) == []
        assert not layout_matches("", read_subjects(image, scene))


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="expected a"):
        classify_scene(np.zeros((32, 32, 3)))
