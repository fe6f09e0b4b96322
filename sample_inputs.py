"""The sample images of the example workflows, put where Load Image finds them.

Two example workflows load an image: "A subject from a photo" (consistory_mug.png) and "Four
scenes with depth ControlNet" (consistory_depth.png). They ship in example_workflows/input/,
but Load Image lists and opens only the files directly in ComfyUI's input folder
(folder_paths.get_input_directory(), which --input-directory moves). So when the pack loads in
a ComfyUI server, each sample is copied there under its own name, which starts with
"consistory_" so that it does not take a name a user's own picture is likely to have:

- a file of that name with the same bytes: left as it is (the usual case after the first start);
- a file of that name with other bytes (or a folder, or a link): left as it is, never replaced;
  the workflow then opens that file;
- a folder that cannot be written (read-only, missing rights): nothing is copied and one
  warning says where the samples are, so they can be copied by hand; the pack loads anyway.

A copy is created with exclusive creation (a file that appears meanwhile is not overwritten),
and a copy that fails half-way is removed. A headless host (the CLI, the tests) has no server
and picks no files from a list: nothing is copied there.
"""
from __future__ import annotations

import filecmp
import logging
import os
import shutil
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "example_workflows" / "input"
PREFIX = "consistory_"

log = logging.getLogger(__name__)


def sample_files(folder: Path = SAMPLES) -> list[Path]:
    """The pack's sample images (regular files, sorted by name)."""
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def place_samples(input_dir: str | os.PathLike, samples: Path = SAMPLES) -> dict:
    """Copies each sample into ``input_dir`` unless a file of its name is there already.

    Returns {"copied": [...], "present": [...], "kept": [...], "error": None or a message}:
    the names copied now, those already there with the same bytes, those whose name another
    file or folder holds (left alone), and why nothing more could be copied. Never raises for
    a folder it cannot write: it logs one warning instead.
    """
    result = {"copied": [], "present": [], "kept": [], "error": None}
    folder = Path(input_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for sample in sample_files(samples):
            target = folder / sample.name
            if os.path.lexists(target):
                same = target.is_file() and not target.is_symlink() and filecmp.cmp(sample, target, shallow=False)
                result["present" if same else "kept"].append(sample.name)
                continue
            try:
                _copy_new(sample, target)
            except FileExistsError:  # it appeared meanwhile: it is not replaced
                result["kept"].append(sample.name)
                continue
            result["copied"].append(sample.name)
    except OSError as e:
        result["error"] = f"{type(e).__name__}: {e.strerror or e}"
        log.warning("ConsiStory: could not put the sample images of the example workflows into ComfyUI's "
                    "input folder %s (%s); copy them by hand from %s if you want them.",
                    folder, result["error"], samples)
    if result["kept"]:
        log.info("ConsiStory: kept the file(s) %s already in %s (not the pack's samples); the example "
                 "workflows load them under these names.", ", ".join(result["kept"]), folder)
    return result


def _copy_new(sample: Path, target: Path) -> None:
    """Writes ``sample``'s bytes to ``target``, which must not exist (FileExistsError if it does);
    a partial file is removed if writing fails."""
    with open(sample, "rb") as source:
        with open(target, "xb") as out:
            try:
                shutil.copyfileobj(source, out)
            except BaseException:
                out.close()
                target.unlink(missing_ok=True)
                raise


def place_samples_on_host() -> dict | None:
    """Places the samples in the host's input folder where the host runs its server (not in a
    headless host); None where there is nothing to do."""
    try:
        import folder_paths
        from server import PromptServer
    except ImportError:
        return None
    if getattr(PromptServer, "instance", None) is None:
        return None
    return place_samples(folder_paths.get_input_directory())
