"""Reading images of the story world back: scene, subject regions, layout and identity.

Works on generated images (decoded latents), not only on clean renders. Images are
(SIZE, SIZE, 3) float arrays in [0, 1] (numpy or torch).

- Subject region: pixels far (> ``TAU`` in RGB) from every colour the scene's background
  may have at that row (and from the blends between two such colours), closed (stripes
  can look like background), holes filled; the ``count`` largest connected parts.
- Layout: centroid, size (sqrt of the area), bottom row, all as fractions of the image side.
- Identity: every pixel of the region (eroded, away from blended edges) is given the
  nearest shade of the palette (base, stripe, spot) or eye/leg colour; the body colour is
  the colour with most pixels; the pattern is the share of its stripe and spot shades
  (away from eyes, legs and the edge); the accessory is the next colour with enough flat
  (base shade) pixels, a hat if they sit at the top of the body, else a scarf.
- Scene: the scene whose background model fits the image best.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations_with_replacement

import numpy as np
from scipy import ndimage

from .render import BACKGROUND, BLACK, GREY, WHITE, shades
from .world import COLOURS, SCENES, SIZE, Identity

TAU = 0.2  # min RGB distance from the background model for a subject pixel
MIN_AREA = 10  # pixels; smaller parts are noise
CLOSE = 5  # closing bridges gaps up to 4 pixels (stripes that look like background)
SHADE_TOLERANCE = 0.25  # pixels farther than this from every shade are not counted
ACCESSORY_SHARE = 0.08  # an accessory needs this share of the body colour's pixels (and >= 4)
HAT_LEVEL = 0.15  # accessory pixels above this fraction of the body height: a hat
STRIPE_SHARE, SPOT_SHARE = 0.1, 0.25  # shares of the body colour's pixels in these shades
EYE_MARGIN = 2  # pixels around eyes and legs left out of the pattern (they blend with the body)

LAYOUT_RULES = {  # layout key -> test on one SubjectReading
    "": lambda s: True,
    "left": lambda s: s.x < 0.40,
    "right": lambda s: s.x > 0.60,
    "middle": lambda s: 0.36 <= s.x <= 0.64,
    "jumping": lambda s: s.bottom < 0.70,
    "distance": lambda s: s.size < 0.19,
    "close": lambda s: s.size > 0.36,
}


@dataclass(frozen=True)
class SubjectReading:
    """A subject found in an image. mask: (SIZE, SIZE) bool; x, y: centroid; size: sqrt(area);
    bottom: one past the lowest row; all fractions of the image side."""
    mask: np.ndarray
    x: float
    y: float
    size: float
    bottom: float
    identity: Identity


def _as_image(image) -> np.ndarray:
    image = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float32)
    if image.shape != (SIZE, SIZE, 3):
        raise ValueError(f"expected a ({SIZE}, {SIZE}, 3) image, got {image.shape}")
    return image


def _segment_distance(pixels: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3) pixels -> distance to the RGB segment from a to b."""
    d = b - a
    length = float(d @ d)
    t = np.zeros(pixels.shape[:-1], np.float32) if length == 0 else np.clip((pixels - a) @ d / length, 0, 1)
    return np.linalg.norm(pixels - a - t[..., None] * d, axis=-1)


def background_distance(image, scene: str) -> np.ndarray:
    """(SIZE, SIZE): each pixel's RGB distance to the scene's background model at its row."""
    image = _as_image(image)
    zones = BACKGROUND[scene]
    out = np.full((SIZE, SIZE), np.inf, np.float32)
    for (ca, a0, a1), (cb, b0, b1) in combinations_with_replacement(zones, 2):
        rows = slice(max(a0, b0), min(a1, b1))
        if rows.start < rows.stop:
            dist = _segment_distance(image[rows], np.array(ca, np.float32), np.array(cb, np.float32))
            out[rows] = np.minimum(out[rows], dist)
    return out


def classify_scene(image) -> str:
    """The scene whose background model fits best (mean distance of the best-fitting 60% of
    pixels, so that a subject does not count)."""
    scores = {}
    for scene in SCENES:
        dist = np.sort(background_distance(image, scene).ravel())
        scores[scene] = float(dist[: int(0.6 * dist.size)].mean())
    return min(scores, key=scores.get)


def subject_masks(image, scene: str, count: int = 1) -> list[np.ndarray]:
    """Up to ``count`` (SIZE, SIZE) bool subject regions, left to right (fewer if not found)."""
    fg = background_distance(image, scene) > TAU
    fg = ndimage.binary_closing(fg, structure=np.ones((CLOSE, CLOSE), bool), border_value=0) | fg
    labels, n = ndimage.label(fg)
    if n == 0:
        return []
    areas = ndimage.sum_labels(fg, labels, index=np.arange(1, n + 1))
    keep = [i + 1 for i in np.argsort(-areas)[:count] if areas[i] >= MIN_AREA]
    masks = [ndimage.binary_fill_holes(labels == k) for k in keep]
    return sorted(masks, key=lambda m: np.nonzero(m)[1].mean())


_SHADE_NAMES = [(c, k) for c in COLOURS for k in ("base", "dark", "light")] + [(None, "eye")] * 2 + [(None, "leg")]
_SHADE_TABLE = np.array([shades(c)[k] for c in COLOURS for k in ("base", "dark", "light")] + [WHITE, BLACK, GREY],
                        np.float32)


def _inner(mask: np.ndarray) -> np.ndarray:
    """The mask away from its edge (where subject and background blend): eroded by one
    pixel, unless it is small."""
    return ndimage.binary_erosion(mask) if mask.sum() >= 60 else mask


def _nearest_shades(pixels: np.ndarray):
    """(colour names, shade names, within tolerance) of (P, 3) pixels' nearest shades."""
    dist = np.linalg.norm(pixels[:, None, :] - _SHADE_TABLE[None], axis=-1)
    nearest = dist.argmin(1)
    colour_of = np.array([c or "" for c, _ in _SHADE_NAMES])[nearest]
    shade_of = np.array([k for _, k in _SHADE_NAMES])[nearest]
    return colour_of, shade_of, dist.min(1) <= SHADE_TOLERANCE


def _pattern(shade_of: np.ndarray, body: np.ndarray) -> str:
    """The pattern from the shades of the body pixels (``body``: which pixels count)."""
    n = max(int(body.sum()), 1)
    dark, light = (body & (shade_of == "dark")).sum() / n, (body & (shade_of == "light")).sum() / n
    if dark >= STRIPE_SHARE and dark >= light:
        return "stripes"
    return "spots" if light >= SPOT_SHARE else "plain"


def read_identity(image, mask: np.ndarray) -> Identity:
    """The identity of the subject in ``mask``; colour "none" if no palette colour is found."""
    image = _as_image(image)
    region = _inner(mask)
    ys = np.nonzero(region)[0]
    colour_of, shade_of, ok = _nearest_shades(image[region])
    counts = {c: int((ok & (colour_of == c)).sum()) for c in COLOURS}
    body = max(counts, key=counts.get)
    if counts[body] == 0:
        return Identity("none", "plain", "none", None)
    in_body = ok & (colour_of == body)
    parts = np.zeros_like(mask)  # eyes and the robot's legs and antenna blend with the body
    parts[region] = ok & ((shade_of == "eye") | (shade_of == "leg"))
    near_parts = ndimage.binary_dilation(parts, iterations=EYE_MARGIN)[region]
    # an edge blended with a dark or bright background looks like a stripe or spot shade
    deep = (ndimage.binary_erosion(mask, iterations=2) if mask.sum() >= 150 else region)[region]
    pattern = _pattern(shade_of, in_body & ~near_parts & deep)
    flat = ok & (shade_of == "base")  # accessories are flat; blends seldom hit a base shade
    others = {c: int((flat & (colour_of == c)).sum()) for c in COLOURS if c != body}
    others = {c: k for c, k in others.items() if k >= max(4, ACCESSORY_SHARE * counts[body])}
    if not others:
        return Identity(body, pattern, "none", None)
    acc = max(others, key=others.get)
    top, bottom = np.percentile(ys[in_body], [10, 90])
    level = (ys[flat & (colour_of == acc)].mean() - top) / max(bottom - top, 1.0)
    return Identity(body, pattern, "hat" if level < HAT_LEVEL else "scarf", acc)


def read_subjects(image, scene: str, count: int = 1) -> list[SubjectReading]:
    """The subjects of an image of a known scene (left to right), with layout and identity."""
    out = []
    for mask in subject_masks(image, scene, count):
        ys, xs = np.nonzero(mask)
        out.append(SubjectReading(mask, (xs.mean() + 0.5) / SIZE, (ys.mean() + 0.5) / SIZE,
                                  float(np.sqrt(mask.sum())) / SIZE, (ys.max() + 1) / SIZE,
                                  read_identity(image, mask)))
    return out


def layout_matches(layout: str, subjects: list[SubjectReading], count: int = 1) -> bool:
    """Whether subjects read from an image satisfy a prompt's layout (two subjects: the first
    named must stand left of the second)."""
    if len(subjects) != count:
        return False
    if count == 2 and not subjects[0].x < 0.5 < subjects[1].x:
        return False
    return all(LAYOUT_RULES[layout](s) for s in subjects)
