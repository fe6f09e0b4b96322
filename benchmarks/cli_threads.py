"""How many CPU threads the headless runner should give torch: each run of
`python -m consistory_run` timed with torch's own choice (--threads 0), one thread and one per
core, on the story-world model (its default story: 4 images and their plain twins, 20 steps)
and on the tiny SDXL (--tiny: 4 images, 256x256, 8 steps).

The runs are paired and interleaved: each repeat runs every thread setting once per model,
back to back, in an order that rotates from repeat to repeat, so a machine that gets busier
or quieter in between weighs on all settings alike. Printed: per model and setting, the
median of the sampling time the runner reports ("done in ... s") and of the whole process's
wall time, and the median over repeats of each setting's time divided by the one-thread run
of the same repeat (>1: slower than one thread). Also the load average before and after,
which says how shared the machine was.

    .venv/bin/python benchmarks/cli_threads.py --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {"story-world": [], "tiny SDXL": ["--tiny"]}


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def settings(n_cores: int) -> dict:
    """label -> --threads value (0: torch's own choice)."""
    return {"torch default": 0, "1 thread": 1, f"{n_cores} threads (one per core)": n_cores}


def run_once(model_args: list, threads: int, out: Path) -> dict:
    """One run of the runner in a fresh process: its sampling time and its wall time (s)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "consistory_run", "--out", str(out), "--threads", str(threads),
                           *model_args], cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"the run failed:\n{proc.stderr[-2000:]}")
    sampling = float(re.search(r"\[3/3\] done in ([0-9.]+) s", proc.stdout).group(1))
    said = re.search(r"torch computes with (\d+) CPU thread", proc.stdout)
    return {"sampling_s": sampling, "wall_s": wall, "torch_threads": int(said.group(1))}


def summarize(runs: dict, baseline: str) -> dict:
    """runs[label] = one dict per repeat -> per label: medians of the times and the median over
    repeats of time / the baseline's time in the same repeat."""
    summary = {}
    for label, results in runs.items():
        row = {"torch_threads": results[0]["torch_threads"]}
        for key in ("sampling_s", "wall_s"):
            row[key] = statistics.median(r[key] for r in results)
            row[key.replace("_s", "_ratio")] = statistics.median(
                r[key] / b[key] for r, b in zip(results, runs[baseline]))
        summary[label] = row
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {list(MODELS)}")
    p.add_argument("--json", type=Path, default=None, help="also write the runs and the summary here")
    a = p.parse_args(argv)
    models = a.models.split(",")
    n_cores = cores()
    labels = settings(n_cores)
    runs = {m: {label: [] for label in labels} for m in models}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            order = list(labels)
            order = order[r % len(order):] + order[:r % len(order)]
            for m in models:
                for label in order:
                    result = run_once(MODELS[m], labels[label], Path(tmp) / "out")
                    runs[m][label].append(result)
                    print(f"repeat {r + 1}/{a.repeats}, {m}, {label}: sampling {result['sampling_s']:.1f} s, "
                          f"wall {result['wall_s']:.1f} s", flush=True)
    load_after = os.getloadavg()
    print(f"\n{n_cores} cores; load average (1, 5, 15 min) before {load_before}, after {load_after}; "
          f"medians of {a.repeats} paired, interleaved repeats; ratio: time / one thread's in the same repeat")
    summaries = {}
    for m in models:
        summaries[m] = summarize(runs[m], "1 thread")
        print(f"\n{m}")
        print(f"{'setting':<26}{'torch threads':>14}{'sampling s':>12}{'× 1 thread':>12}{'wall s':>10}{'× 1 thread':>12}")
        for label, row in summaries[m].items():
            print(f"{label:<26}{row['torch_threads']:>14}{row['sampling_s']:>12.1f}{row['sampling_ratio']:>12.2f}"
                  f"{row['wall_s']:>10.1f}{row['wall_ratio']:>12.2f}")
    if a.json:
        a.json.write_text(json.dumps({"cores": n_cores, "repeats": a.repeats, "load_before": load_before,
                                      "load_after": load_after, "runs": runs, "summary": summaries}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
