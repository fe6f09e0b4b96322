"""Measurements on a batch of generated story-world images and their prompts.

Inputs: images (N, 64, 64, 3) floats in [0, 1] (numpy or torch, e.g. VAEDecode's output)
and the N prompts they were generated from (world prompts: ``world.make_prompt``). The
subjects of each image are read with ``reader`` using the scene its prompt names.

- subject_consistency: how alike the subjects look across the batch (identity distance).
- prompt_alignment: how often the scene and the layout read back as the prompt asked.
- layout_diversity: how much the subjects' position and size vary across the batch.
- mask_iou: overlap of given subject masks (e.g. ConsiStory's) with the subject regions read.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from .reader import SubjectReading, classify_scene, layout_matches, read_subjects
from .world import SIZE, parse_prompt

ATTRIBUTES = ("colour", "pattern", "accessory", "accessory_colour")


def _images(images) -> np.ndarray:
    images = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3):
        raise ValueError(f"expected images (N, {SIZE}, {SIZE}, 3), got {images.shape}")
    return images


def read_batch(images, prompts: list[str]) -> list[list[SubjectReading]]:
    """Per image, the subjects read (as many as its prompt names, fewer if not found)."""
    images = _images(images)
    if len(prompts) != len(images):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    out = []
    for image, prompt in zip(images, prompts):
        kinds, _, scene = parse_prompt(prompt)
        out.append(read_subjects(image, scene, len(kinds)))
    return out


def subject_consistency(images, prompts: list[str], slot: int = 0) -> dict:
    """Identity agreement of the ``slot``-th named subject over all pairs of images where it
    was found. distance: mean ``Identity.distance`` (0 = all alike, 1 = nothing shared);
    same_<attribute>: share of pairs that agree on it; found: share of images where read."""
    readings = read_batch(images, prompts)
    ids = [r[slot].identity for r in readings if len(r) > slot]
    pairs = list(combinations(ids, 2))
    out = {"found": len(ids) / len(readings), "pairs": len(pairs)}
    if not pairs:
        return out | {"distance": float("nan")} | {f"same_{a}": float("nan") for a in ATTRIBUTES}
    out["distance"] = float(np.mean([a.distance(b) for a, b in pairs]))
    for attr in ATTRIBUTES:
        out[f"same_{attr}"] = float(np.mean([getattr(a, attr) == getattr(b, attr) for a, b in pairs]))
    return out


def prompt_alignment(images, prompts: list[str]) -> dict:
    """Shares of images whose background is classified as the prompt's scene (scene), whose
    subjects satisfy the prompt's layout (layout; the right number of subjects included),
    and both."""
    images = _images(images)
    readings = read_batch(images, prompts)
    scene_ok, layout_ok = [], []
    for image, prompt, subjects in zip(images, prompts, readings):
        kinds, layout, scene = parse_prompt(prompt)
        scene_ok.append(classify_scene(image) == scene)
        layout_ok.append(layout_matches(layout, subjects, len(kinds)))
    scene_ok, layout_ok = np.array(scene_ok), np.array(layout_ok)
    return {"scene": float(scene_ok.mean()), "layout": float(layout_ok.mean()),
            "both": float((scene_ok & layout_ok).mean())}


def layout_diversity(images, prompts: list[str], slot: int = 0) -> dict:
    """Spread of the ``slot``-th subject's centroid and size over the batch: standard
    deviations of x, y and size (fractions of the image side), and the mean distance
    between two images' (x, y, size) vectors."""
    readings = read_batch(images, prompts)
    found = np.array([(r[slot].x, r[slot].y, r[slot].size) for r in readings if len(r) > slot]).reshape(-1, 3)
    if len(found) < 2:
        return {"x_std": float("nan"), "y_std": float("nan"), "size_std": float("nan"), "pairwise": float("nan")}
    pairwise = [np.linalg.norm(a - b) for a, b in combinations(found, 2)]
    std = found.std(axis=0)
    return {"x_std": float(std[0]), "y_std": float(std[1]), "size_std": float(std[2]),
            "pairwise": float(np.mean(pairwise))}


def _upsample(masks: np.ndarray) -> np.ndarray:
    """(N, h, w) -> (N, SIZE, SIZE) by nearest neighbour."""
    rows = np.arange(SIZE) * masks.shape[1] // SIZE
    cols = np.arange(SIZE) * masks.shape[2] // SIZE
    return masks[:, rows][:, :, cols]


def mask_iou(masks, images, prompts: list[str]) -> np.ndarray:
    """(N,) IoU of each given mask (N, h, w) (bool, or floats thresholded at 0.5; any
    resolution, resized by nearest neighbour) with the union of the subject regions read
    from the image. 0 where neither has a pixel."""
    masks = np.asarray(masks.detach().cpu() if hasattr(masks, "detach") else masks)
    masks = _upsample(masks > 0.5 if masks.dtype != bool else masks)
    readings = read_batch(images, prompts)
    out = []
    for mask, subjects in zip(masks, readings):
        region = np.zeros((SIZE, SIZE), bool)
        for s in subjects:
            region |= s.mask
        union = (mask | region).sum()
        out.append((mask & region).sum() / union if union else 0.0)
    return np.array(out, dtype=np.float64)
