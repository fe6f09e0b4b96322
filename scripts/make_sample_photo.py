"""Draws example_workflows/input/consistory_mug.png, the sample "photo" the subject-from-a-photo workflow
loads: a red mug with a white band on a wooden table (no photo can be downloaded here; swap in
your own).

    .venv/bin/python scripts/make_sample_photo.py
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SIZE = 768
OUT = Path(__file__).resolve().parents[1] / "example_workflows" / "input" / "consistory_mug.png"


def main() -> None:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    rng = np.random.default_rng(0)
    wall = np.stack([0.86 - 0.1 * y, 0.83 - 0.1 * y, 0.78 - 0.08 * y], -1)
    grain = 0.05 * np.sin(60 * y + 6 * np.sin(9 * x)) + 0.02 * rng.standard_normal((SIZE, SIZE))
    table = np.stack([0.55 + grain, 0.36 + 0.8 * grain, 0.20 + 0.5 * grain], -1)
    img = np.where((y > 0.58)[..., None], table, wall)
    cx, top, bottom, rx, ry = 0.47, 0.33, 0.78, 0.17, 0.045
    shadow = ((x - cx - 0.05) / 0.26) ** 2 + ((y - bottom - 0.01) / 0.05) ** 2 < 1
    img[shadow] *= 0.6
    body = (np.abs(x - cx) < rx) & (y > top) & (y < bottom) | (((x - cx) / rx) ** 2 + ((y - bottom) / ry) ** 2 < 1)
    shade = np.clip(1.15 - 1.1 * np.abs((x - cx + 0.06) / rx), 0.35, 1.15)[..., None]
    red = np.array([0.78, 0.08, 0.07]) * shade
    band = (y > 0.52) & (y < 0.58)
    img[body] = red[body]
    img[body & band] = (np.array([0.95, 0.94, 0.9]) * shade)[body & band]
    ring = ((x - cx - rx) / 0.11) ** 2 + ((y - 0.55) / 0.13) ** 2
    handle = (ring < 1) & (ring > 0.45) & (x > cx + rx - 0.01)
    img[handle] = (np.array([0.7, 0.07, 0.06]) * 0.9)
    rim = ((x - cx) / rx) ** 2 + ((y - top) / ry) ** 2
    img[rim < 1] = np.array([0.55, 0.05, 0.05])
    img[rim < 0.75] = np.array([0.22, 0.12, 0.08])  # coffee
    pixels = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    pixels.save(OUT, optimize=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
