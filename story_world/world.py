"""The story world: what an image shows, the prompt that asks for it, and random draws.

An image (``SIZE`` x ``SIZE`` RGB) shows one SCENE (a background) and one subject, or two
side by side. The prompt names the scene, the subject kind(s) and a LAYOUT hint; the
subject's IDENTITY (body colour, pattern, accessory and its colour) is drawn at random and
never named, so plain sampling gives a different-looking subject per image and subject
consistency can be measured:

    "a photo of a small creature on the left in a snowy field"
    "a photo of a little robot and a small creature jumping on the moon"

With two subjects the first one named stands on the left. Everything is deterministic
from a seed (``numpy.random.default_rng``). Drawing is in ``render``, reading generated
images back is in ``reader``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

SIZE = 64  # image side in pixels
STYLE = "a photo of"

# Body and accessory colours (RGB in [0, 1]): saturated hues, far from every background.
COLOURS = {
    "red": (0.86, 0.12, 0.14), "orange": (0.98, 0.52, 0.05), "yellow": (0.96, 0.88, 0.10),
    "green": (0.50, 0.92, 0.16), "cyan": (0.10, 0.86, 0.92), "blue": (0.16, 0.30, 0.96),
    "purple": (0.58, 0.16, 0.86), "pink": (1.00, 0.38, 0.72),
}
PATTERNS = ("plain", "stripes", "spots")
ACCESSORIES = ("none", "hat", "scarf")
STRIPE_DARKEN = 0.62  # stripes: body colour times this
SPOT_WHITEN = 0.5  # spots: body colour mixed with this much white

KINDS = {"creature": "a small creature", "robot": "a little robot"}

# Single-subject layout hints ("" = none given: anywhere on the ground, usual size).
LAYOUTS = {"": "", "left": "on the left", "right": "on the right", "middle": "in the middle",
           "jumping": "jumping", "distance": "small in the distance", "close": "close up"}
PAIR_LAYOUTS = ("", "jumping")  # two subjects: first named on the left, second on the right

SCENES = {
    "snow": "in a snowy field", "beach": "on a beach at night", "forest": "in a forest",
    "desert": "in a desert", "city": "on a city street", "sea": "under the sea",
    "meadow": "in a meadow with flowers", "moon": "on the moon",
}
HORIZON = {"snow": 34, "beach": 40, "forest": 44, "desert": 36, "city": 42, "sea": 54,
           "meadow": 30, "moon": 38}  # first ground row of each scene


@dataclass(frozen=True)
class Identity:
    """What the prompt never says. accessory_colour is None when accessory == "none"."""
    colour: str
    pattern: str
    accessory: str
    accessory_colour: str | None

    def distance(self, other: "Identity") -> float:
        """Fraction of the four attributes that differ (0 = same look, 1 = nothing shared)."""
        return float(np.mean([self.colour != other.colour, self.pattern != other.pattern,
                              self.accessory != other.accessory,
                              self.accessory_colour != other.accessory_colour]))


@dataclass(frozen=True)
class Subject:
    """One subject in an image: kind, identity, horizontal centre and feet row (pixels), size r
    (pixels; the creature's half width)."""
    kind: str
    identity: Identity
    x: float
    feet: float
    r: float


@dataclass(frozen=True)
class ImageSpec:
    """Everything an image shows. subjects are ordered as named in the prompt (= left to right
    for two). texture_seed draws the background's texture (stars, flowers, windows ...)."""
    scene: str
    layout: str
    subjects: tuple[Subject, ...]
    texture_seed: int

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(s.kind for s in self.subjects)

    @property
    def prompt(self) -> str:
        return make_prompt(self.kinds, self.layout, self.scene)


def make_prompt(kinds, layout: str, scene: str) -> str:
    """The prompt for subject kind(s), a layout key and a scene key."""
    words = [STYLE, " and ".join(KINDS[k] for k in kinds), LAYOUTS[layout], SCENES[scene]]
    return " ".join(w for w in words if w)


def parse_prompt(prompt: str) -> tuple[tuple[str, ...], str, str]:
    """(kinds in order of mention, layout key, scene key) of a world prompt; ValueError if the
    prompt names no subject kind or no scene."""
    text = prompt.lower()
    kinds = tuple(k for _, k in sorted((text.find(p), k) for k, p in KINDS.items() if p in text))
    scene = next((k for k, p in SCENES.items() if p in text), None)
    if not kinds or scene is None:
        raise ValueError(f"not a story-world prompt (needs a subject kind and a scene): {prompt!r}")
    layout = next((k for k, p in LAYOUTS.items() if p and p in text), "")
    return kinds, layout, scene


def all_prompts() -> list[str]:
    """Every prompt the world makes, plus the empty prompt (the unconditional one)."""
    prompts = [make_prompt((k,), lay, s) for s in SCENES for k in KINDS for lay in LAYOUTS]
    pairs = [(a, b) for a in KINDS for b in KINDS if a != b]
    prompts += [make_prompt(p, lay, s) for s in SCENES for p in pairs for lay in PAIR_LAYOUTS]
    return prompts + [""]


def random_identity(rng: np.random.Generator) -> Identity:
    colours = list(COLOURS)
    colour = colours[rng.integers(len(colours))]
    accessory = ACCESSORIES[rng.integers(len(ACCESSORIES))]
    others = [c for c in colours if c != colour]
    acc_colour = None if accessory == "none" else others[rng.integers(len(others))]
    return Identity(colour, PATTERNS[rng.integers(len(PATTERNS))], accessory, acc_colour)


def _placement(rng: np.random.Generator, layout: str, scene: str) -> tuple[float, float, float]:
    """(x, feet, r) for one subject with a single-subject layout."""
    u = rng.uniform
    x, feet, r = u(14, 50), u(53, 59), u(9.5, 11.0)
    if layout == "left":
        x = u(13, 20)
    elif layout == "right":
        x = u(44, 51)
    elif layout == "middle":
        x = u(29, 35)
    elif layout == "jumping":
        x, feet = u(18, 46), u(28, 34)
    elif layout == "distance":
        x, feet, r = u(12, 52), HORIZON[scene] + u(1, 4), u(4.5, 5.5)
    elif layout == "close":
        x, feet, r = u(28, 36), u(60, 63), u(17, 19)
    return x, feet, r


def random_spec(rng: np.random.Generator, *, scene: str | None = None, layout: str | None = None,
                kinds: tuple[str, ...] | None = None, identities: tuple[Identity, ...] | None = None,
                pair_probability: float = 0.2) -> ImageSpec:
    """A random image; any of scene, layout, kinds (1 or 2 different kinds) and identities
    may be fixed. Layouts for two subjects are PAIR_LAYOUTS."""
    scene = scene or list(SCENES)[rng.integers(len(SCENES))]
    if kinds is None:
        names = list(KINDS)
        first = names[rng.integers(len(names))]
        kinds = ((first, next(k for k in names if k != first)) if rng.random() < pair_probability
                 else (first,))
    pair = len(kinds) == 2
    choices = PAIR_LAYOUTS if pair else tuple(LAYOUTS)
    layout = choices[rng.integers(len(choices))] if layout is None else layout
    if layout not in choices:
        raise ValueError(f"layout {layout!r} is not one of {choices} for {len(kinds)} subject(s)")
    identities = identities or tuple(random_identity(rng) for _ in kinds)
    u = rng.uniform
    if pair:
        lo, hi = (28, 34) if layout == "jumping" else (53, 59)
        places = [(u(14, 19), u(lo, hi), u(8.5, 10.0)), (u(45, 50), u(lo, hi), u(8.5, 10.0))]
    else:
        places = [_placement(rng, layout, scene)]
    subjects = tuple(Subject(k, i, *p) for k, i, p in zip(kinds, identities, places))
    return ImageSpec(scene, layout, subjects, int(rng.integers(2**31)))


def with_identities(spec: ImageSpec, identities: tuple[Identity, ...]) -> ImageSpec:
    """The same image with other identities (for references of a consistent subject)."""
    return replace(spec, subjects=tuple(replace(s, identity=i) for s, i in zip(spec.subjects, identities)))
