"""The main job: `python -m consistory_run` in a fresh process writes the story and its masks."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def test_headless_run_writes_images_and_mask_overlays(tmp_path):
    out = tmp_path / "story"
    args = [sys.executable, "-m", "consistory_run", "--out", str(out), "--steps", "3",
            "--width", "128", "--height", "96", "--scene", "walking in a park", "--scene", "reading a book"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no --ckpt: using a tiny SDXL-shaped model" in proc.stdout
    images = sorted(out.glob("story_0*.png"))
    masks = sorted(out.glob("story_masks_*.png"))
    assert len(images) == 2 and len(masks) == 2
    for path in images + masks:
        assert Image.open(path).size == (128, 96)
    # the overlays are the images tinted where the subject is: same size, not identical
    assert not np.array_equal(np.asarray(Image.open(images[0])), np.asarray(Image.open(masks[0])))
