"""The main job: `python -m consistory_run` in a fresh process writes the story and its masks."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def test_headless_run_writes_images_and_mask_overlays(tmp_path):
    out = tmp_path / "story"
    args = [sys.executable, "-m", "consistory_run", "--out", str(out), "--steps", "3", "--tiny",
            "--width", "128", "--height", "96", "--scene", "walking in a park", "--scene", "reading a book"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--tiny: a tiny SDXL-shaped model" in proc.stdout
    run = out / "run_001"
    images = [run / "01_walking_in_a_park.png", run / "02_reading_a_book.png"]
    masks = [run / "01_walking_in_a_park_mask.png", run / "02_reading_a_book_mask.png"]
    assert sorted(run.iterdir()) == sorted(images + masks)
    for path in images + masks:
        assert Image.open(path).size == (128, 96)
    # the overlays are the images tinted where the subject is: same size, not identical
    assert not np.array_equal(np.asarray(Image.open(images[0])), np.asarray(Image.open(masks[0])))


def test_without_a_checkpoint_the_story_world_model_draws_the_story_and_the_plain_story_beside_it(tmp_path):
    """The README's first command: the trained story-world model, ConsiStory and plain sampling
    with the same seed, and a sheet with both rows."""
    out = tmp_path / "story"
    proc = subprocess.run([sys.executable, "-m", "consistory_run", "--out", str(out), "--steps", "6"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the story-world model trained in this repository" in proc.stdout
    run = out / "run_001"
    names = sorted(p.name for p in run.iterdir())
    stems = ["01_on_the_left_in_a_snowy_field", "02_jumping_in_a_forest", "03_on_a_city_street",
             "04_small_in_the_distance_on_the_moon"]
    assert names == sorted([f"{s}{x}.png" for s in stems for x in ("", "_mask", "_plain")] + ["story_vs_plain.png"])
    story = [np.asarray(Image.open(run / f"{s}.png")) for s in stems]
    plain = [np.asarray(Image.open(run / f"{s}_plain.png")) for s in stems]
    assert story[0].shape == (64, 64, 3)  # the latent map decodes 32 x 32 latents to 64 x 64 images
    assert not all(np.array_equal(a, b) for a, b in zip(story[1:], plain[1:]))  # ConsiStory changed the images
    assert Image.open(run / "story_vs_plain.png").size == (4 * 256, 2 * (256 + 22))


def test_a_checkpoint_given_as_a_file_path_reaches_the_stock_loader(host, tmp_path, monkeypatch):
    import folder_paths
    from consistory_run.host import absolute_if_file
    (tmp_path / "my_sdxl.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    path = absolute_if_file("my_sdxl.safetensors")  # relative to where the user ran the command
    assert path == str(tmp_path / "my_sdxl.safetensors")
    if hasattr(folder_paths, "filename_list_cache"):
        monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "checkpoints",
                        (list(folder_paths.folder_names_and_paths["checkpoints"][0]), {".safetensors", ".ckpt"}))
    assert host.checkpoint(path) == "my_sdxl.safetensors"
    assert "my_sdxl.safetensors" in folder_paths.get_filename_list("checkpoints")
    assert host.checkpoint("sd_xl_base_1.0.safetensors") == "sd_xl_base_1.0.safetensors"  # a name stays a name


def test_a_checkpoint_path_inside_the_repository_fails_fast_with_one_line(tmp_path):
    """--ckpt naming a file inside the repository: only that file is registered for the stock
    loader (not its folder, which the host would walk recursively), and no link is left in
    the output folder; a file that is not a checkpoint is one line of error, in seconds."""
    import time
    out = tmp_path / "story"
    fake = REPO / "tests" / "fixtures" / "bank_format1.safetensors"  # a safetensors file, not a checkpoint
    args = [sys.executable, "-m", "consistory_run", "--out", str(out), "--steps", "2", "--width", "128",
            "--height", "128", "--ckpt", str(fake)]
    start = time.monotonic()
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert time.monotonic() - start < 120
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "CheckpointLoaderSimple" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception during processing" not in proc.stderr  # said once
    assert not list(out.rglob("comfyui-consistory")) and not (out / ".custom_nodes").exists()


def test_help_lists_every_option_with_its_default():
    proc = subprocess.run([sys.executable, "-m", "consistory_run", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for option in ("--out", "--subject", "--words", "--scene", "--style", "--negative", "--seed", "--width",
                   "--height", "--steps", "--cfg", "--sampler", "--scheduler", "--dropout", "--anchors",
                   "--no-blend", "--no-inject", "--ckpt", "--tiny"):
        assert option in text, option
    assert "the paper's 2 with more than 2 scenes" in text and "(default: ddim_uniform)" in text and "automatic, the head nouns" in text


def test_the_cli_runs_the_workflows_method_with_two_subjects_and_automatic_words(tmp_path):
    """Query Blend and one-pass Feature Injection are on by default (as in consistory_story.json);
    --subject / --words repeat; without --words the words are found from each subject."""
    from consistory_run.__main__ import parse
    a = parse(["--subject", "a red fox", "--subject", "an old man with a hat"])
    assert a.blend and a.inject and a.words is None and a.anchors == 2
    assert not parse(["--no-blend", "--no-inject"]).blend
    out = tmp_path / "story"
    args = [sys.executable, "-m", "consistory_run", "--out", str(out), "--steps", "3", "--width", "128", "--tiny",
            "--height", "128", "--subject", "a red fox", "--subject", "an old man with a hat",
            "--scene", "in a park", "--scene", "at the beach", "--scene", "in a kitchen"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((out / "run_001").glob("0*_mask.png"))) == 3
    proc = subprocess.run(args[:3] + ["--subject", "a", "--subject", "b", "--words", "x"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "2 --subject but 1 --words" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--dropout", "1.5"], "--dropout 1.5 is outside 0..1"),
    (["--anchors", "5"], "--anchors 5 but 4 scenes"),
    (["--width", "100"], "--width 100 must be a multiple of 8"),
    (["--steps", "0"], "--steps 0 must be at least 1"),
    (["--width", "512"], "the story-world model draws 256x256 only"),
    (["--tiny", "--ckpt", "x.safetensors"], "give --ckpt or --tiny, not both"),
    (["--ckpt", "no_such_model.safetensors"], "checkpoint not found: no_such_model.safetensors; looked in")])
def test_bad_options_are_one_line_before_the_host_starts(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "consistory_run", "--out", str(tmp_path / "o"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "starting the ComfyUI host" not in proc.stdout


def test_each_run_has_its_own_folder_and_the_hosts_start_up_noise_is_one_line(tmp_path):
    out = tmp_path / "story"
    args = [sys.executable, "-m", "consistory_run", "--out", str(out), "--steps", "2", "--width", "64", "--tiny",
            "--height", "64", "--scene", "in a park", "--scene", "at the beach"]
    for _ in range(2):
        proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["run_001", "run_002"]
    assert sorted(p.name for p in (out / "run_002").iterdir()) == [
        "01_in_a_park.png", "01_in_a_park_mask.png", "02_at_the_beach.png", "02_at_the_beach_mask.png"]
    said = proc.stdout + proc.stderr
    for noise in ("IMPORT FAILED", "Traceback", "Total VRAM", "No module named"):
        assert noise not in said, noise
    assert "ComfyUI is up on cpu" in proc.stdout


def test_the_runner_is_a_command_that_works_from_any_folder(tmp_path):
    """setup.sh installs the runner (pip install -e .): `consistory-run` and `python -m
    consistory_run` work outside the repository; relative --out is the caller's folder."""
    command = Path(sys.executable).parent / "consistory-run"
    assert command.is_file(), "run scripts/setup.sh (pip install -e .) first"
    for args in ([str(command)], [sys.executable, "-m", "consistory_run"]):
        proc = subprocess.run(args + ["--out", "story", "--tiny", "--steps", "1", "--width", "64", "--height", "64",
                                      "--scene", "in a park"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "story").iterdir()) == ["run_001", "run_002"]
    assert (tmp_path / "story" / "run_002" / "01_in_a_park.png").is_file()
