"""benchmarks/sdxl_cost.py still runs on the host in use (CONSISTORY_HOST or COMFYUI_PATH,
passed through) and measures what it says: a tiny, short run, its JSON and its plot."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, "benchmarks/sdxl_cost.py", "--unet", "tiny"]


def bench(*args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(BENCH + list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = bench("--device", "cpu", "--size", "64", "--images", "1,2", "--steps", "6", "--repeats", "1",
                 "--json", str(out / "x.json"), "--plot", str(out / "x.png"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "x.json").read_text()), out / "x.png", proc.stdout


def test_every_configuration_is_timed_and_its_activation_memory_measured(run):
    results, _, _ = run
    assert set(results["by_images"]) == {"1", "2"}
    for r in results["by_images"].values():
        assert set(r["seconds_per_step"]) == set(r["peak_activation_gib"]) == set(r["activation_ratio"])
        assert len(r["seconds_per_step"]) == 6
        assert all(s > 0 for s in r["seconds_per_step"].values())
        assert all(g > 0 for g in r["peak_activation_gib"].values())
        assert r["activation_ratio"]["vanilla"] == 1
        assert all(g > 0 for g in r["peak_rss_gib"].values())
        assert "peak_vram_gib" not in r  # on the CPU
    assert results["device"].startswith("cpu") and results["dtype"] == "fp32"


def test_activation_memory_grows_with_n_and_with_shared_attention(run):
    results, _, _ = run
    assert results["activation_slope_gib_per_image"]["vanilla"] > 0
    two = results["by_images"]["2"]["peak_activation_gib"]
    assert two["sdsa"] > two["vanilla"]  # shared attention adds the other image's keys


def test_cached_reuse_runs_the_unet_on_the_new_images_only(run):
    """Replayed anchors add 2 rows per CFG chunk to every sampler call; from the anchor cache
    the calls have the rows of plain sampling, and the cache's size is reported."""
    results, _, _ = run
    for n, r in results["by_images"].items():
        rows = r["unet_rows"]
        assert rows["vanilla"] == 2 * int(n)  # cond and uncond
        assert rows["reuse (2 anchors)"] == 2 * (int(n) + 2)
        assert rows["reuse (cached)"] == rows["vanilla"]
        assert r["anchor_cache"]["bytes"] > 0 and r["anchor_cache"]["shared_bytes_per_step"] > 0
    assert results["unet_calls"]["reuse (cached)"] == results["unet_calls"]["vanilla"]


def test_the_passes_of_the_pack_are_told_apart(run):
    """The timer sees the pack's passes as calls of their own: one DIFT call per generation,
    and no pass taken for a step of its own."""
    results, _, _ = run
    assert results["schedule_mix"]["dift_calls"] == 1
    assert results["unet_calls"]["full (fast)"] == results["unet_calls"]["vanilla"] + 1
    assert results["schedule_mix"]["steps"] == results["unet_calls"]["vanilla"]


def test_the_plot_is_a_png_and_the_table_is_printed(run):
    _, png, stdout = run
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "act. GiB" in stdout and "process GiB" in stdout and "activation growth" in stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_with_exit_2(tmp_path):
    proc = bench("--device", "cuda", "--json", str(tmp_path / "x.json"))
    assert proc.returncode == 2
    assert "--device" in proc.stderr and "CUDA" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_the_anchor_cache_benchmark_measures_sizes_memory_and_steps(tmp_path):
    """benchmarks/anchor_cache_cost.py on the tiny model: the cache as attention inputs holds
    less than as keys and values (their shared parts: half), the file's run holds less
    anonymous memory than the cache in memory, and every configuration is timed."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "benchmarks/anchor_cache_cost.py", "--unet", "tiny", "--size", "64",
                           "--steps", "3", "--images", "1", "--repeats", "1", "--json", str(tmp_path / "x.json")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads((tmp_path / "x.json").read_text())["by_images"]["1"]
    inputs, keys = row["sizes"]["inputs"], row["sizes"]["keys and values"]
    shared = lambda size, parts: sum(p.get(x, 0) for p in size["parts_per_evaluation"].values() for x in parts)
    assert shared(inputs, ("x",)) > 0 and shared(inputs, ("k", "v")) == 0
    assert 2 * shared(inputs, ("x",)) == shared(keys, ("k", "v"))   # the tiny UNet's heads x d equal its channels
    assert inputs["bytes"] < keys["bytes"]
    assert set(row["seconds_per_step"]) == {"plain", "cached", "file", "file (cold)", "over budget", "off"}
    assert all(s > 0 for s in row["seconds_per_step"].values()) and row["step_ratio"]["plain"] == 1
    assert "does not fit in the 1e-09 GB cache budget" in proc.stderr
