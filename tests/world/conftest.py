"""Shared setup for the story-world tests.

The repo root is appended (never prepended) to sys.path: the repo's ``nodes/`` package must
not shadow the host's ``nodes.py``.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))


@pytest.fixture(scope="session")
def renders():
    """60 random world images with their specs and ground-truth masks (fixed seed)."""
    from story_world.render import render
    from story_world.world import random_spec
    rng = np.random.default_rng(123)
    specs = [random_spec(rng) for _ in range(60)]
    return [(spec, *render(spec)) for spec in specs]
