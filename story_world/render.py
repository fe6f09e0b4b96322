"""Drawing the story world: backgrounds per scene and subjects, as float RGB in [0, 1].

``render(spec) -> (image (SIZE, SIZE, 3) float32, masks (S, SIZE, SIZE) bool)``; masks are
the subjects' silhouettes (accessory included) in the order of ``spec.subjects``. Shapes
are hard-edged and flat-coloured so that a small diffusion model can learn them; every
background has some random texture (from ``spec.texture_seed``).

``BACKGROUND`` lists, per scene, each colour a background pixel may have and the rows where
it may appear: the reader's background model.
"""
from __future__ import annotations

import numpy as np

from .world import COLOURS, HORIZON, SIZE, SPOT_WHITEN, STRIPE_DARKEN, ImageSpec, Subject

_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5  # pixel centres
WHITE, BLACK, GREY = (0.97, 0.97, 0.97), (0.05, 0.05, 0.07), (0.35, 0.35, 0.38)

SKY = {"snow": ((0.62, 0.72, 0.84), (0.82, 0.87, 0.92)), "beach": ((0.05, 0.07, 0.20), (0.12, 0.16, 0.34)),
       "forest": ((0.17, 0.38, 0.20), (0.17, 0.38, 0.20)), "desert": ((0.93, 0.86, 0.70), (0.96, 0.92, 0.80)),
       "city": ((0.66, 0.69, 0.74), (0.66, 0.69, 0.74)), "sea": ((0.10, 0.45, 0.62), (0.05, 0.24, 0.45)),
       "meadow": ((0.58, 0.78, 0.95), (0.70, 0.85, 0.97)), "moon": ((0.02, 0.02, 0.05), (0.02, 0.02, 0.05))}
GROUND = {"snow": (0.95, 0.96, 0.98), "beach": (0.62, 0.52, 0.36), "forest": (0.30, 0.24, 0.15),
          "desert": (0.82, 0.66, 0.42), "city": (0.27, 0.27, 0.29), "sea": (0.76, 0.70, 0.50),
          "meadow": (0.33, 0.62, 0.25), "moon": (0.50, 0.50, 0.52)}
TEXTURE = {  # scene -> {name: colour}
    "snow": {"drift": (0.80, 0.85, 0.92)},
    "beach": {"star": (0.92, 0.92, 0.80), "water": (0.10, 0.17, 0.38), "foam": (0.70, 0.75, 0.80),
              "ripple": (0.50, 0.41, 0.27)},
    "forest": {"leaves": (0.27, 0.50, 0.24), "trunk": (0.36, 0.23, 0.13), "litter": (0.22, 0.17, 0.10)},
    "desert": {"sun": (1.00, 0.97, 0.86), "shade": (0.72, 0.56, 0.34)},
    "city": {"wall": (0.30, 0.32, 0.38), "wall2": (0.40, 0.40, 0.45), "window": (0.86, 0.88, 0.94),
             "dash": (0.92, 0.92, 0.92)},
    "sea": {"bubble": (0.62, 0.82, 0.92), "pebble": (0.62, 0.57, 0.40)},
    "meadow": {"cloud": (0.97, 0.98, 1.00), "tuft": (0.24, 0.50, 0.18), "flower": (0.98, 0.98, 0.98),
               "flower2": (0.99, 0.95, 0.65)},
    "moon": {"star": (0.90, 0.90, 0.90), "crater": (0.38, 0.38, 0.40)},
}
_SKY_TEXTURES = {"star", "leaves", "trunk", "sun", "wall", "wall2", "window", "bubble", "cloud"}


def _colour_zones(scene: str) -> list[tuple[tuple[float, float, float], int, int]]:
    """(colour, first row, end row) of every colour of the scene's background."""
    h = HORIZON[scene]
    sky_end, ground_start = h + 5, h - 5  # dunes, trunks and buildings blur the horizon
    zones = [(SKY[scene][0], 0, sky_end), (SKY[scene][1], 0, sky_end), (GROUND[scene], ground_start, SIZE)]
    for name, colour in TEXTURE[scene].items():
        zones.append((colour, 0, sky_end) if name in _SKY_TEXTURES else (colour, ground_start, SIZE))
    return zones


BACKGROUND = {scene: _colour_zones(scene) for scene in SKY}


def _ellipse(cx, cy, rx, ry):
    return ((_X - cx) / rx) ** 2 + ((_Y - cy) / ry) ** 2 <= 1.0


def _box(x0, y0, x1, y1):
    """Pixels whose centres lie in [x0, x1) x [y0, y1)."""
    return (_X >= x0) & (_X < x1) & (_Y >= y0) & (_Y < y1)


def _paint(img, mask, colour):
    img[mask] = colour


def _dots(img, rng, count, y0, y1, colour):
    """count single-pixel dots in rows [y0, y1)."""
    img[rng.integers(y0, y1, count), rng.integers(0, SIZE, count)] = colour


def background(scene: str, rng: np.random.Generator) -> np.ndarray:
    """(SIZE, SIZE, 3) float32: the scene without subjects."""
    h, tex, u, n = HORIZON[scene], TEXTURE[scene], rng.uniform, rng.integers
    top, bottom = (np.array(c, np.float32) for c in SKY[scene])
    t = np.clip(_Y / h, 0, 1)[..., None]
    img = top * (1 - t) + bottom * t
    horizon = h + 2.5 * np.sin(2 * np.pi * _X / 48 + u(0, 2 * np.pi)) if scene == "desert" else h
    _paint(img, _Y >= horizon, GROUND[scene])
    if scene == "snow":
        for _ in range(6):
            _paint(img, _ellipse(u(0, SIZE), u(h + 3, SIZE - 2), u(4, 9), u(1.5, 3)), tex["drift"])
    elif scene == "beach":
        _dots(img, rng, 14, 0, h - 4, tex["star"])
        _paint(img, (_Y >= h) & (_Y < h + 5), tex["water"])
        _paint(img, (_Y >= h + 5) & (_Y < h + 6), tex["foam"])
        phase = u(0, 2 * np.pi)
        for k in range(3):
            wave = h + 10 + 6 * k + 1.5 * np.sin(2 * np.pi * _X / 20 + phase + k)
            _paint(img, np.abs(_Y - wave) < 0.6, tex["ripple"])
    elif scene == "forest":
        for _ in range(10):
            _paint(img, _ellipse(u(0, SIZE), u(0, h - 6), *(2 * [u(2, 4)])), tex["leaves"])
        for _ in range(4):
            x0 = u(-2, SIZE - 2)
            _paint(img, _box(x0, 10, x0 + u(4, 6), h), tex["trunk"])
        for _ in range(10):
            _paint(img, _ellipse(u(0, SIZE), u(h + 2, SIZE), u(1, 2.5), u(0.6, 1.2)), tex["litter"])
    elif scene == "desert":
        _paint(img, _ellipse(u(8, 56), u(6, 14), 4, 4), tex["sun"])
        shade = h + 12 + 2.5 * np.sin(2 * np.pi * _X / 36 + u(0, 2 * np.pi))
        _paint(img, (_Y >= shade) & (_Y < shade + 3), tex["shade"])
    elif scene == "city":
        x0, k = 0.0, 0
        while x0 < SIZE:
            width, roof = u(8, 14), u(8, 24)
            _paint(img, _box(x0, roof, x0 + width, h), tex["wall" if k % 2 == 0 else "wall2"])
            for wy in np.arange(roof + 2, h - 3, 4):
                for wx in np.arange(x0 + 2, x0 + width - 3, 4):
                    if rng.random() < 0.6:
                        _paint(img, _box(wx, wy, wx + 2, wy + 2), tex["window"])
            x0, k = x0 + width, k + 1
        _paint(img, (_Y >= 53) & (_Y < 55) & (((_X + u(0, 10)) % 10) < 5), tex["dash"])
    elif scene == "sea":
        for _ in range(8):
            _paint(img, _ellipse(u(0, SIZE), u(2, h - 4), *(2 * [u(1, 2)])), tex["bubble"])
        for _ in range(5):
            _paint(img, _ellipse(u(0, SIZE), u(h + 2, SIZE), u(1, 2), u(0.6, 1)), tex["pebble"])
    elif scene == "meadow":
        for _ in range(2):
            _paint(img, _ellipse(u(6, 58), u(5, h - 10), u(5, 9), u(2, 3.5)), tex["cloud"])
        for _ in range(30):
            x, y = n(0, SIZE), n(h + 1, SIZE - 2)
            _paint(img, _box(x, y, x + 1, y + 3), tex["tuft"])
        for i in range(18):
            x, y = n(0, SIZE - 1), n(h + 1, SIZE - 1)
            _paint(img, _box(x, y, x + 2, y + 2), tex["flower" if i % 2 else "flower2"])
    elif scene == "moon":
        _dots(img, rng, 14, 0, h - 4, tex["star"])
        for _ in range(6):
            _paint(img, _ellipse(u(0, SIZE), u(h + 3, SIZE - 2), u(3, 7), u(1, 2.5)), tex["crater"])
    return img.astype(np.float32)


def _body(s: Subject, grow: float = 0.0):
    """(body mask, centre row, top row) of a subject's body, grown by ``grow`` pixels."""
    r = s.r
    if s.kind == "creature":
        cy = s.feet - 0.85 * r
        return _ellipse(s.x, cy, r + grow, 0.85 * r + grow), cy, cy - 0.85 * r
    cy = s.feet - 1.0 * r  # robot: box of half height 0.7 r on legs of 0.3 r
    return _box(s.x - 0.8 * r - grow, cy - 0.7 * r - grow, s.x + 0.8 * r + grow, cy + 0.7 * r + grow), cy, cy - 0.7 * r


def _pattern(s: Subject, body, top):
    """(dark mask, light mask) of the body's pattern."""
    none = np.zeros_like(body)
    if s.identity.pattern == "stripes":  # vertical, so that eyes and scarf never hide them all
        thick = max(3.0, 0.28 * s.r)
        return body & (np.floor((_X - s.x + s.r) / thick) % 2 == 1), none
    if s.identity.pattern == "spots":
        step, radius = max(4.0, 0.7 * s.r), max(1.5, 0.25 * s.r)
        row = np.floor((_Y - top) / step)
        dy = (_Y - top) - (row + 0.5) * step
        dx = (_X - s.x - 0.5 * step * (row % 2) + step / 2) % step - step / 2
        return none, body & (dx ** 2 + dy ** 2 <= radius ** 2)
    return none, none


def shades(colour: str) -> dict[str, np.ndarray]:
    """The base, stripe (dark) and spot (light) shades of a palette colour."""
    base = np.array(COLOURS[colour], np.float32)
    return {"base": base, "dark": base * STRIPE_DARKEN, "light": base * (1 - SPOT_WHITEN) + SPOT_WHITEN}


def draw_subject(img: np.ndarray, s: Subject) -> np.ndarray:
    """Draws a subject onto img (in place); returns its (SIZE, SIZE) bool silhouette."""
    r, ident, x = s.r, s.identity, s.x
    body, cy, top = _body(s)
    colour = shades(ident.colour)
    _paint(img, body, colour["base"])
    dark, light = _pattern(s, body, top)
    _paint(img, dark, colour["dark"])
    _paint(img, light, colour["light"])
    mask = body.copy()
    if s.kind == "robot":
        legs = _box(x - 0.525 * r, cy + 0.7 * r, x - 0.275 * r, s.feet) | _box(x + 0.275 * r, cy + 0.7 * r, x + 0.525 * r, s.feet)
        half = max(0.5, 0.06 * r)
        antenna = _box(x - half, top - 0.45 * r, x + half, top)
        ball = _ellipse(x, top - 0.45 * r, *(2 * [max(1.2, 0.16 * r)]))
        _paint(img, legs | antenna, GREY)
        _paint(img, ball, colour["base"])
        mask |= legs | antenna | ball
        eye = max(1.5, 0.17 * r)
        eyes = [_box(x + d - eye, cy - 0.2 * r - eye, x + d + eye, cy - 0.2 * r + eye) for d in (-0.38 * r, 0.38 * r)]
        pupil = max(0.7, 0.08 * r)
        pupils = [_box(x + d - pupil, cy - 0.2 * r - pupil, x + d + pupil, cy - 0.2 * r + pupil) for d in (-0.38 * r, 0.38 * r)]
    else:
        eye, pupil = max(1.3, 0.24 * r), max(0.7, 0.12 * r)
        eyes = [_ellipse(x + d, cy - 0.15 * r, eye, eye) for d in (-0.38 * r, 0.38 * r)]
        pupils = [_ellipse(x + d, cy - 0.15 * r + 0.05 * r, pupil, pupil) for d in (-0.38 * r, 0.38 * r)]
    for e in eyes:
        _paint(img, e, WHITE)
    for p in pupils:
        _paint(img, p, BLACK)
    if ident.accessory == "hat":
        brim_h = max(1.5, 0.18 * r)
        brim_top = top + 0.15 * r - brim_h
        acc = _box(x - 0.65 * r, brim_top, x + 0.65 * r, top + 0.15 * r) | _box(x - 0.4 * r, brim_top - 0.55 * r, x + 0.4 * r, brim_top)
    elif ident.accessory == "scarf":
        band_top = cy + 0.15 * r
        band_end = band_top + max(3.0, 0.25 * r)
        acc = (_body(s, grow=0.5)[0] & (_Y >= band_top) & (_Y < band_end)) | \
            _box(x + 0.3 * r, band_end - 0.5, x + 0.3 * r + max(2.0, 0.2 * r), band_end + 0.35 * r)
    else:
        acc = None
    if acc is not None:
        _paint(img, acc, COLOURS[ident.accessory_colour])
        mask |= acc
    return mask


def render(spec: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """(image (SIZE, SIZE, 3) float32 in [0, 1], masks (S, SIZE, SIZE) bool) of an image spec."""
    img = background(spec.scene, np.random.default_rng(spec.texture_seed))
    masks = np.stack([draw_subject(img, s) for s in spec.subjects])
    return img, masks
