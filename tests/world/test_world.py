"""The story world: prompts, determinism, and that the identity is never named."""
import numpy as np
import pytest

from story_world.render import render
from story_world.world import (ACCESSORIES, COLOURS, KINDS, LAYOUTS, PAIR_LAYOUTS, PATTERNS, SCENES, Identity,
                               all_prompts, make_prompt, parse_prompt, random_spec, with_identities)


def test_vocabulary_sizes():
    assert len(SCENES) >= 8 and len(KINDS) >= 2 and len(COLOURS) >= 8
    assert {"left", "right", "middle", "jumping", "distance", "close"} <= set(LAYOUTS)
    assert len(set(all_prompts())) == len(all_prompts())


def test_prompt_reads_like_the_paper_and_parses_back():
    assert make_prompt(("creature",), "left", "snow") == "a photo of a small creature on the left in a snowy field"
    assert make_prompt(("robot", "creature"), "", "moon") == "a photo of a little robot and a small creature on the moon"
    for prompt in all_prompts()[:-1]:
        kinds, layout, scene = parse_prompt(prompt)
        assert make_prompt(kinds, layout, scene) == prompt
    with pytest.raises(ValueError, match="not a story-world prompt"):
        parse_prompt("a photo of a cat")


def test_same_seed_same_image_and_other_seed_other_image():
    a = random_spec(np.random.default_rng(5))
    assert a == random_spec(np.random.default_rng(5))
    assert np.array_equal(render(a)[0], render(a)[0])
    assert a != random_spec(np.random.default_rng(6))


def test_identity_is_random_and_never_named(renders):
    identities = {s.identity for spec, _, _ in renders for s in spec.subjects}
    assert len(identities) > 30
    words = set(COLOURS) | set(PATTERNS) | (set(ACCESSORIES) - {"none"})
    for spec, _, _ in renders:
        assert not words & set(spec.prompt.replace(",", " ").split()), spec.prompt


def test_fixed_parts_are_respected():
    rng = np.random.default_rng(0)
    ident = Identity("blue", "spots", "hat", "red")
    spec = random_spec(rng, scene="forest", layout="jumping", kinds=("robot", "creature"), identities=(ident, ident))
    assert (spec.scene, spec.layout, spec.kinds) == ("forest", "jumping", ("robot", "creature"))
    assert spec.subjects[0].x < spec.subjects[1].x
    other = with_identities(spec, (Identity("red", "plain", "none", None),) * 2)
    assert other.subjects[0].identity.colour == "red" and other.scene == spec.scene
    with pytest.raises(ValueError, match="layout"):
        random_spec(rng, layout="left", kinds=("robot", "creature"))
    assert set(PAIR_LAYOUTS) <= set(LAYOUTS)


def test_render_shapes_and_masks(renders):
    for spec, image, masks in renders:
        assert image.shape == (64, 64, 3) and image.dtype == np.float32
        assert 0 <= image.min() and image.max() <= 1
        assert masks.shape == (len(spec.subjects), 64, 64) and masks.dtype == bool
        assert all(m.sum() >= 20 for m in masks)
        if len(masks) == 2:
            assert not (masks[0] & masks[1]).any()


def test_scenes_look_different():
    """Mean colour of the top and bottom bands differs clearly between every two scenes."""
    from story_world.render import background
    looks = {s: background(s, np.random.default_rng(0)) for s in SCENES}
    feats = {s: np.concatenate([im[:8].mean((0, 1)), im[-8:].mean((0, 1))]) for s, im in looks.items()}
    names = list(feats)
    gaps = [np.abs(feats[a] - feats[b]).max() for i, a in enumerate(names) for b in names[i + 1:]]
    assert min(gaps) > 0.1
