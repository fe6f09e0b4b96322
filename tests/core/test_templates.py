"""The example workflows as ComfyUI's template browser shows them (Workflow > Browse Templates):
it lists example_workflows/*.json by file name, and shows a custom node pack's template with
that name as the card's one-line title and, `-` and `_` made spaces, as its description, and
NAME.jpg beside it as the thumbnail (tests/host/test_browser.py checks the real page)."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consistory_run.example_workflows import WORKFLOWS

FOLDER = Path(__file__).resolve().parents[2] / "example_workflows"
NAMES = sorted(p.stem for p in FOLDER.glob("*.json"))
LONGEST = 34  # a title longer is cut on a card 260 px wide (a 1260 px page), where about 37 fit


def name_problems(name: str) -> list[str]:
    """What keeps a file name from reading as a short phrase on a card (empty: nothing)."""
    problems = []
    if not re.fullmatch(r"[A-Z][A-Za-z0-9 .,()]*[A-Za-z0-9)]", name):
        problems.append("starts with a capital, ends with a letter or digit, and holds only letters, digits, "
                        "spaces and . , ( ) (no - or _: the description shows them as spaces; nothing a file "
                        "system or a URL treats specially)")
    if len(name.split(" ")) < 3 or "  " in name:
        problems.append("three or more words, one space apart")
    if len(name) > LONGEST:
        problems.append(f"at most {LONGEST} characters: a longer title is cut on the card")
    if name.lower().startswith(("consistory", "comfyui")):
        problems.append("not the pack's name: the browser shows it as the category already")
    return problems


def test_the_folder_holds_the_built_workflows_with_their_thumbnails_and_nothing_else():
    assert NAMES == sorted(WORKFLOWS) and len(NAMES) >= 9
    assert sorted(p.stem for p in FOLDER.glob("*.jpg")) == NAMES, "every NAME.json has its NAME.jpg, and only they"
    assert sorted(p.stem for p in (FOLDER / "api").glob("*.json")) == NAMES
    others = [p.name for p in FOLDER.iterdir() if p.suffix not in (".json", ".jpg") and p.name not in ("api", "input")]
    assert others == [], "the template browser's folder holds the workflows, their thumbnails, api/ and input/ only"


@pytest.mark.parametrize("name", NAMES)
def test_each_name_reads_as_a_phrase_on_its_card(name):
    assert name_problems(name) == []


def test_the_name_check_refuses_file_like_names():
    for bad in ("consistory_story", "One-subject story", "story", "One subject in four scenes with the paper settings",
                "one subject in four scenes", "Why not: two subjects?"):
        assert name_problems(bad), bad


@pytest.mark.parametrize("name", NAMES)
def test_each_thumbnail_is_a_small_jpeg_picture(name):
    path = FOLDER / f"{name}.jpg"
    assert 5_000 <= path.stat().st_size <= 80_000, f"{path.stat().st_size} bytes: a few tens of KB"
    with Image.open(path) as image:
        assert image.format == "JPEG"
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert 256 <= width <= 512 and 256 <= height <= 512, image.size  # the card shows it at most 256 px tall
        assert abs(width / height - 1) <= 0.25, image.size  # the card's picture area is square
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10, "a picture, not a flat colour"
