"""Shared setup for the consistory_core tests.

The repo root is appended (never prepended) to sys.path: the repo has a top-level
``nodes/`` package that must not shadow ComfyUI's ``nodes`` module.
"""
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)


def naive_otsu_threshold(row, bins=256):
    """Otsu from scratch with Python loops on a list of floats.

    256-bin histogram over [min, max] (explicit per-value bin), for every split index t
    (low class = bins 0..t) the between-class variance w0*w1*(mu0-mu1)^2 using bin
    centres, first argmax wins, threshold = centre of bin t. A constant row -> its value.
    """
    values = [float(v) for v in row]
    lo, hi = min(values), max(values)
    if hi == lo:
        return lo
    width = hi - lo
    hist = [0] * bins
    for v in values:
        b = int((v - lo) / width * bins)
        if b >= bins:
            b = bins - 1
        if b < 0:
            b = 0
        hist[b] += 1
    centres = [lo + (b + 0.5) * width / bins for b in range(bins)]
    best_score, best_t = -1.0, None
    for t in range(bins - 1):
        w0 = 0.0
        m0 = 0.0
        for b in range(0, t + 1):
            w0 += hist[b]
            m0 += hist[b] * centres[b]
        w1 = 0.0
        m1 = 0.0
        for b in range(t + 1, bins):
            w1 += hist[b]
            m1 += hist[b] * centres[b]
        if w0 == 0 or w1 == 0:
            score = 0.0
        else:
            mu0, mu1 = m0 / w0, m1 / w1
            score = w0 * w1 * (mu0 - mu1) ** 2
        if score > best_score:
            best_score, best_t = score, t
    return centres[best_t]


@pytest.fixture
def naive_otsu():
    """The loop-based Otsu reference, as a callable row -> threshold."""
    return naive_otsu_threshold
