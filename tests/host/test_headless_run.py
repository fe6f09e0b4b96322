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
    assert "sampling 2 images of 128x96 px" in proc.stdout and "(128x96 px images)" in proc.stdout, proc.stdout
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
    # the terminal says the size of the files it writes, not the host's latent size in pixels
    assert "of 64x64 px" in proc.stdout and "(64x64 px images)" in proc.stdout and "256x256" not in proc.stdout, \
        proc.stdout
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


def fake_checkpoint(path: Path, tensors: dict) -> Path:
    import torch
    from safetensors.torch import save_file
    save_file({name: torch.zeros(shape) for name, shape in tensors.items()}, str(path))
    return path


@pytest.mark.parametrize("kind,reason", [
    ("five bytes", "header too small (the file has 5 bytes"),
    ("an anchor bank", "it holds 6 tensors but no diffusion model"),
    ("a LoRA", "it holds 2 tensors but no diffusion model")])
def test_a_file_that_is_no_checkpoint_is_one_line_before_the_host_starts(tmp_path, kind, reason):
    """A file whose header shows it is no checkpoint: one line saying so and what to give
    instead, exit 2, before the host starts; no run folder is left behind."""
    if kind == "five bytes":
        ckpt = tmp_path / "model.safetensors"
        ckpt.write_bytes(b"abcde")
    elif kind == "an anchor bank":
        ckpt = REPO / "tests" / "fixtures" / "bank_format1.safetensors"  # inside the repository, too
    else:
        ckpt = fake_checkpoint(tmp_path / "lora.safetensors", {"lora_unet_a.lora_up.weight": (4, 4),
                                                                "lora_unet_a.lora_down.weight": (4, 4)})
    out = tmp_path / "story"
    proc = subprocess.run([sys.executable, "-m", "consistory_run", "--out", str(out), "--ckpt", str(ckpt)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr  # one line
    assert proc.stderr.startswith(f"error: {ckpt} is not a checkpoint ComfyUI can read: ") and reason in proc.stderr, \
        proc.stderr
    assert "give a whole checkpoint (model, text encoder and VAE in one file" in proc.stderr
    assert proc.stdout == ""  # no host start, no CPU warning
    assert not out.exists()


def test_a_file_the_stock_loader_fails_on_is_one_line_naming_the_file_and_no_run_folder_is_left(tmp_path):
    """A safetensors file with a diffusion model's key prefix that the host's loader cannot
    read: the loader's reason in one line naming the user's path (not the host's temporary
    link), no CPU warning for the 1024² default before it, no host log lines, exit 1, and no
    empty run folder left; only that file is registered for the loader (no link in the output
    folder)."""
    ckpt = fake_checkpoint(tmp_path / "odd.safetensors", {f"model.diffusion_model.layer{i}.weight": (2,) for i in range(6)})
    out = tmp_path / "story"
    (out / "run_001").mkdir(parents=True)  # an earlier run's folder stays
    proc = subprocess.run([sys.executable, "-m", "consistory_run", "--out", str(out), "--ckpt", str(ckpt)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "%|" not in line]
    assert len(errors) == 1 and errors[0].startswith(f"error: {ckpt} is not a checkpoint ComfyUI can read: "), \
        proc.stderr[-3000:]
    assert "Could not detect model type of: " + str(ckpt) in errors[0] and "consistory-ckpt-" not in errors[0]
    assert "note:" not in proc.stdout and "a long time" not in proc.stdout  # no warning before the loader ran
    assert sorted(p.name for p in out.iterdir()) == ["run_001"]
    assert not list(out.rglob("comfyui-consistory")) and not (out / ".custom_nodes").exists()


def test_the_loaders_failure_is_said_with_the_users_path_and_a_missing_key_in_words():
    from consistory_run.__main__ import loader_problem
    from consistory_run.host import GraphError
    links = {"/tmp/consistory-ckpt-x1/a.safetensors": "/home/me/a.safetensors"}
    missing = GraphError("KeyError: ...", "CheckpointLoaderSimple", "KeyError",
                         "'model.diffusion_model.input_blocks.0.0.weight'")
    assert loader_problem(missing, links) == \
        "the loader found no tensor 'model.diffusion_model.input_blocks.0.0.weight' in it"
    other = GraphError("RuntimeError: ...", "CheckpointLoaderSimple", "RuntimeError",
                       "ERROR: Could not detect model type of: /tmp/consistory-ckpt-x1/a.safetensors")
    assert loader_problem(other, links) == "RuntimeError: ERROR: Could not detect model type of: /home/me/a.safetensors"


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
    assert "--threads" in text and proc.stdout.startswith("usage: ")


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
    (["--width", "512"], "the story-world model draws 64x64 images only"),
    (["--threads", "-1"], "--threads -1 must be 0"),
    (["--steps", "many"], "argument --steps: invalid int value: 'many'"),
    (["--tiny", "--ckpt", "x.safetensors"], "give --ckpt or --tiny, not both"),
    (["--ckpt", "no_such_model.safetensors"], "checkpoint not found: no_such_model.safetensors; looked in")])
def test_bad_options_are_one_line_before_the_host_starts(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "consistory_run", "--out", str(tmp_path / "o"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1, proc.stderr  # no usage block
    assert "Traceback" not in proc.stderr and "starting the ComfyUI host" not in proc.stdout
    assert not (tmp_path / "o").exists()


def test_the_story_world_model_takes_its_one_size_as_the_pixels_it_writes_or_as_before():
    from consistory_run.__main__ import parse
    for size in ("64", "256"):
        a = parse(["--width", size, "--height", size])
        assert (a.width, a.height) == (256, 256)  # the host's size for the model's 32 x 32 latents
    assert parse(["--tiny", "--width", "64", "--height", "64"]).width == 64


@pytest.mark.parametrize("model", [[], ["--tiny"], ["--ckpt", "sd_xl_base_1.0.safetensors"]])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_cpu_hint_suggests_only_options_the_chosen_model_accepts(model, threads, monkeypatch):
    """The hint after a slow second step names options; with the model's own options they
    parse (the story-world model draws one size: no --width/--height for it)."""
    import re
    from consistory_run import __main__ as cli
    monkeypatch.setattr(cli, "cores", lambda: 2)
    a = cli.parse(model)
    hint = cli.faster_hint(a, threads)
    options = re.findall(r"--[a-z-]+ \d+", hint)
    suggested = [word for option in options for word in option.split()]
    b = cli.parse(model + suggested)  # exits (SystemExit) on an option this model refuses
    assert b.steps <= a.steps and b.width * b.height <= a.width * a.height
    if not model:
        assert "--width" not in hint and "--height" not in hint
    if "--ckpt" not in model:  # one thread was the small models' fastest (benchmarks/cli_threads.py)
        assert ("--threads 1" in hint) == (threads != 1) and f"--threads {threads + 1}" not in hint, hint


def test_thread_count_comes_from_the_flag_then_omp_num_threads_then_the_models_default():
    from consistory_run.__main__ import thread_count
    assert thread_count(3, "world", {"OMP_NUM_THREADS": "2"}) == (3, "--threads")
    assert thread_count(None, "world", {"OMP_NUM_THREADS": "2"}) == (2, "OMP_NUM_THREADS")
    assert thread_count(None, "world", {}) == (1, "the default")  # benchmarks/cli_threads.py
    assert thread_count(None, "tiny", {"OMP_NUM_THREADS": ""}) == (1, "the default")
    assert thread_count(None, "ckpt", {}) == (0, "torch's choice, the default")


def test_the_runner_computes_with_the_threads_it_says(tmp_path):
    """Without --threads and OMP_NUM_THREADS, torch computes with the runner's default (one
    thread); --threads N gives it N; the runner reports what torch uses."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    args = [sys.executable, "-m", "consistory_run", "--tiny", "--steps", "1", "--width", "64", "--height", "64",
            "--scene", "in a park"]
    said = []
    for extra in ([], ["--threads", "2"]):
        proc = subprocess.run(args + ["--out", str(tmp_path / "o"), *extra], cwd=REPO, capture_output=True,
                              text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        said.append(next(line.strip() for line in proc.stdout.splitlines() if "torch computes with" in line))
    assert said[0].startswith("torch computes with 1 CPU thread (the default;"), said
    assert said[1].startswith("torch computes with 2 CPU threads (--threads;"), said


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
