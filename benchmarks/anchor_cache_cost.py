"""The anchor cache (§4.4 reuse) on a full-size SDXL UNet with random weights: its size, the
memory it holds and the time of a reused step, kept in memory, streamed from its file and
over its budget, against plain sampling of the same new images.

In one process, on the bank of benchmarks/sdxl_cost.py (2 anchors sampled with SDSA) given
a subject mask over 30% of each anchor (the bank's subject_masks, as a photo bank has), so
the cache holds what a 30% subject gives, not the random model's masks:
1. Size: the cache recorded as the pack keeps it (the layers' attention inputs) and as it was
   kept before (keys and values: the same code with the input check failing), per model
   evaluation and in all; grown to 1024² and 50 steps by its tokens and evaluations, in fp16.
2. Memory: the process's anonymous resident memory (what it cannot give back) and its
   file-backed resident memory, after a reuse from the cache in memory and from the file.
3. Time: short runs of plain sampling, reuse from the cache in memory, from the file (in
   the page cache, and cold: the file's pages dropped before the run), over its budget
   (each evaluation recorded and played) and with the cache off (anchors replayed beside
   the new images), interleaved and repeated; a wrapper under the pack's times every UNet
   call; a step's seconds are its calls' (after step 0, which has no masks). Ratios against
   plain sampling, paired per repeat, medians.

    .venv/bin/python benchmarks/anchor_cache_cost.py --size 256 --steps 3 --images 1,4 --repeats 2 \\
        --json benchmarks/results/anchor_cache_cost.json
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.append(str(Path(__file__).resolve().parents[1]))
from benchmarks.sdxl_cost import ANCHORS, GIB, Bench, build_unet, story  # noqa: E402
from consistory_testing.pack import pack_module, run_node  # noqa: E402

SUBJECT_SHARE = 0.3
FILE = "CPU memory + file beside the bank"
CONFIGS = ("plain", "cached", "file", "file (cold)", "over budget", "off")


def memory() -> dict:
    """This process's resident memory, anonymous (its own) and file-backed (page cache it maps), GiB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) * 1024 / GIB
    return fields


def subject_masks(k: int, h: int, w: int, share: float):
    """(k, h, w) masks of a centred rectangle over ``share`` of each image."""
    import torch
    side = share ** 0.5
    mask = torch.zeros(k, h, w)
    top, left = round(h * (1 - side) / 2), round(w * (1 - side) / 2)
    mask[:, top:top + round(h * side), left:left + round(w * side)] = 1
    return mask


def drop_page_cache(path: str) -> None:
    """Asks the kernel to forget the file's pages (a cold read next time)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class CacheBench:
    """The reuse configurations of one N on ``bench`` (sdxl_cost.Bench with its bank)."""

    def __init__(self, classes, bench, folder: Path):
        self.classes, self.bench = classes, bench
        bank_file = pack_module(classes, "consistory_core.bank_file")
        h, w = bench.bank.latent_hw
        bank = dataclasses.replace(bench.bank, subject_masks=subject_masks(ANCHORS, h, w, SUBJECT_SHARE))
        bank.save(folder / "bank.safetensors")
        self.bank = bank_file.AnchorBank.load(folder / "bank.safetensors")  # from a file: the file choice
        self.cache_file = str(folder / "bank.anchor_cache")
        self.cache_module = pack_module(classes, "consistory_patches.anchor_cache")
        base = bench.models["vanilla"]
        # the same anchors under other prompt text: a cache of its own (one kept cache is not
        # sized again when a later run asks for a smaller budget)
        other = dataclasses.replace(self.bank, description=dataclasses.replace(
            self.bank.description, prompts=tuple(f"{p} (over budget)" for p in self.bank.description.prompts)))
        use = lambda choice, budget=0.0, bank=self.bank: run_node(
            classes["ConsiStoryUseAnchors"], base, bank, story(classes, bench.n), False, choice, budget)[0]
        self.models = {"plain": base, "cached": use("CPU memory"), "file": use(FILE), "file (cold)": use(FILE),
                       "over budget": use("CPU memory", 1e-9, other), "off": use("off")}

    def sizes(self) -> dict:
        """Bytes of the cache as kept now and as keys and values (the input check made to fail)."""
        shared_attention = pack_module(self.classes, "consistory_patches.shared_attention")
        out, same = {}, shared_attention.SAME_INPUTS
        try:
            for layout, check in (("inputs", same), ("keys and values", -1.0)):
                shared_attention.SAME_INPUTS = check
                self.cache_module.forget_caches()
                self.bench.sample(self.models["cached"])
                (cache,) = self.cache_module._CACHES.values()
                per: dict = {}
                for key, t in cache.entries.items():
                    parts = per.setdefault(key[0], {})
                    parts[key[4]] = parts.get(key[4], 0) + t.numel() * t.element_size()
                out[layout] = {"bytes": cache.nbytes, "evaluations": len(per),
                               "element_bytes": next(iter(cache.entries.values())).element_size(),
                               "parts_per_evaluation": dict(sorted(per.items()))}
        finally:
            shared_attention.SAME_INPUTS = same
        return out

    def held(self) -> dict:
        """Resident memory (GiB) after a reuse, by where the cache is, against none kept."""
        out = {}
        for name in ("off", "cached", "file"):
            self.cache_module.forget_caches()
            if os.path.exists(self.cache_file):
                os.remove(self.cache_file)
            gc.collect()
            before = memory()
            self.bench.sample(self.models[name])  # records
            self.bench.sample(self.models[name])  # plays
            gc.collect()
            after = memory()
            out[name] = {k: after[k] - before[k] for k in after}
        return out

    def run(self, name: str) -> list:
        """Seconds of each step after the first (its UNet calls together), one short run."""
        if name == "file (cold)":
            drop_page_cache(self.cache_file)
        timer = self.bench.timer
        timer.calls.clear()
        self.bench.sample(self.models[name])
        steps: dict = {}
        for sigma, _, _, seconds in timer.calls:
            steps[sigma] = steps.get(sigma, 0.0) + seconds
        return [s for _, s in sorted(steps.items(), reverse=True)][1:]


def measure(cb: CacheBench, configs: list, repeats: int) -> dict:
    cb.cache_module.forget_caches()
    for name in ("cached", "file"):  # the first reuse records (the file once for both file rows)
        if name in configs or f"{name} (cold)" in configs:
            cb.bench.sample(cb.models[name])
    seconds = {c: [] for c in configs}
    for _ in range(repeats):
        for c in configs:
            seconds[c].append(statistics.mean(cb.run(c)))
    ratio = {c: statistics.median(s / p for s, p in zip(seconds[c], seconds["plain"])) for c in configs}
    return {"seconds_per_step": {c: statistics.median(v) for c, v in seconds.items()}, "step_ratio": ratio}


def grown(size: dict, pixels: int, at: int = 1024, steps: int = 50, element_bytes: int = 2) -> float:
    """Bytes of the same cache at ``at``² px, ``steps`` model evaluations, fp16: every part is
    per patch (the mask covers the same share) and per evaluation (those with masks)."""
    per = [sum(parts.values()) for parts in size["parts_per_evaluation"].values()]
    shared = statistics.mean(per[1:]) if len(per) > 1 else per[0]
    return (at / pixels) ** 2 * element_bytes / size["element_bytes"] * (per[0] + shared * (steps - 1))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--unet", choices=["sdxl", "tiny"], default="sdxl")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3, help="steps of each run (step 0 has no masks)")
    p.add_argument("--images", default="1,4")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"configurations to time, comma-separated (plain always): {', '.join(CONFIGS)}")
    p.add_argument("--no-sizes", action="store_true", help="skip the sizes and resident memory (measured at the "
                   "first N otherwise)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    a.configs = ["plain"] + [c for c in CONFIGS if c != "plain" and c in a.configs.split(",")]
    a.json = a.json.resolve() if a.json else None
    return a


def main() -> None:
    a = parse()
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from consistory_run.host import Host
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    classes = host.nodes.NODE_CLASS_MAPPINGS
    import torch
    torch.set_grad_enabled(False)
    model = build_unet(a.unet, torch.device("cpu"), "fp32")
    results = {"unet": a.unet, "size": a.size, "steps": a.steps, "repeats": a.repeats, "subject_share": SUBJECT_SHARE,
               "machine": f"{psutil.cpu_count()} CPU cores, {psutil.virtual_memory().total / GIB:.0f} GiB",
               "date": time.strftime("%Y-%m-%d"), "by_images": {}}
    for n in [int(x) for x in a.images.split(",")]:
        with tempfile.TemporaryDirectory() as folder:
            bench = Bench(classes, model, n, a.size, a.steps, 1.0, (0.0, 1.0))
            cb = CacheBench(classes, bench, Path(folder))
            row = {}
            if n == int(a.images.split(",")[0]) and not a.no_sizes:
                row["sizes"] = cb.sizes()
                row["held_gib"] = cb.held()
            row.update(measure(cb, a.configs, a.repeats))
            results["by_images"][n] = row
            report(n, row, a)
            if a.json:
                a.json.parent.mkdir(parents=True, exist_ok=True)
                a.json.write_text(json.dumps(results, indent=1) + "\n")


def report(n: int, row: dict, a) -> None:
    print(f"\nN={n}, {a.size}x{a.size}, {a.steps} steps, median of {a.repeats} interleaved repeats")
    if "sizes" in row:
        for layout, size in row["sizes"].items():
            print(f"  cache as {layout:16s}: {size['bytes'] / 2**20:8.1f} MiB here ({size['evaluations']} evaluations, "
                  f"{size['element_bytes']}-byte values); at 1024x1024, 50 steps, fp16: "
                  f"{grown(size, a.size) / 1e9:.2f} GB")
        for name, held in row["held_gib"].items():
            print(f"  resident after a reuse, cache {name:7s}: anonymous {held['RssAnon'] * 1024:+8.1f} MiB, "
                  f"file-backed {held['RssFile'] * 1024:+8.1f} MiB")
    for c in row["seconds_per_step"]:
        print(f"  {c:12s} {row['seconds_per_step'][c]:8.3g} s/step  {row['step_ratio'][c]:6.3f} x plain")


if __name__ == "__main__":
    main()
