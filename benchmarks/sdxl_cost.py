"""What ConsiStory costs against vanilla SDXL sampling: time per step, whole generations,
UNet calls and peak memory, for N images, on a full-size SDXL UNet with random weights.

How (all in one process, so ratios are measured in the same run):
1. Per-step costs on the full-size UNet (``--unet sdxl``; ``tiny`` for a quick check):
   short runs of each configuration, repeated and interleaved (vanilla, sdsa, blend,
   injection, reuse, vanilla, ...); a wrapper under the pack's times every UNet call and
   tags it with its step and pass. Step 0 of every run is a plain step (no masks yet);
   steps >= 1 give the cost of a shared, blended, injected or reused step.
2. The mix of step kinds in a real schedule (``--steps``, default 50 DDIM steps, paper
   settings) is counted by running that schedule on the tiny SDXL-shaped model: which
   steps blend, which inject, how many UNet calls. Counts do not depend on model size.
3. Whole-generation seconds = counted steps x measured per-step seconds; ratios against
   vanilla. Peak memory = peak resident memory while a configuration runs, sampled.

    .venv/bin/python benchmarks/sdxl_cost.py --unet sdxl --size 256 --images 1,2,4 --repeats 2 \\
        --json benchmarks/results/sdxl_cost.json --plot benchmarks/results/sdxl_cost.png
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.append(str(Path(__file__).resolve().parents[1]))

ANCHORS = 2
CONFIGS = ("vanilla", "sdsa", "sdsa+blend", "sdsa+inject", "reuse (2 anchors)")
PROBE_STEPS = 3  # step 0 plain, steps 1-2 with the configuration's step kind
SDXL = dict(model_channels=320, transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_middle=10,
            transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], context_dim=2048, adm_in_channels=2816)


class PeakMemory:
    """Peak resident set size of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.proc, self.peak, self.running = psutil.Process(), 0, True
        self.base = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


class CallTimer:
    """MODEL -> MODEL, under the pack's wrappers: (sigma, phase, rows, seconds) per UNet call."""

    def __init__(self):
        self.calls = []

    def patch(self, model):
        m = model.clone()

        def wrapper(apply_model, args):
            phase = args["c"].get("transformer_options", {}).get("consistory_phase")
            start = time.perf_counter()
            out = apply_model(args["input"], args["timestep"], **args["c"])
            self.calls.append((float(args["timestep"][0]), phase, args["input"].shape[0], time.perf_counter() - start))
            return out

        m.set_model_unet_function_wrapper(wrapper)
        return m


def story(classes, n):
    from consistory_testing.pack import synthetic_story
    return synthetic_story(classes, n)


class Bench:
    """The configurations of one model and batch size, as functions that sample ``steps``."""

    def __init__(self, classes, model, n, size, steps, blend_end, inject_range, reuse=True):
        import comfy.sample
        import torch
        self.classes, self.n, self.steps, self.timer = classes, n, steps, CallTimer()
        unet = model.model.model_config.unet_config
        ctx, pooled = unet["context_dim"], unet["adm_in_channels"] - 6 * 256
        g = torch.Generator().manual_seed(0)
        total = n + ANCHORS
        cond = torch.randn(total, 77, ctx, generator=g), torch.randn(total, pooled, generator=g)
        self.negative = [[torch.randn(1, 77, ctx, generator=g), {"pooled_output": torch.randn(1, pooled, generator=g)}]]
        self.positive = lambda rows: [[cond[0][rows], {"pooled_output": cond[1][rows]}]]
        latent = torch.zeros(total, 4, size // 8, size // 8)
        self.latent, self.noise = latent, comfy.sample.prepare_noise(latent, 1)
        base = self.timer.patch(model)
        sdsa_node, blend_node, inject_node = (classes[k]() for k in ("ConsiStorySDSA", "ConsiStoryQueryBlend",
                                                                      "ConsiStoryFeatureInjection"))
        (sdsa,) = sdsa_node.patch(base, story(classes, n), 0.5, 0, 0, 0.0, 1.0, "output (paper)")
        (blend,) = blend_node.patch(sdsa, 0.9, 0.82, blend_end)
        (inject,) = inject_node.patch(sdsa, 0.8, *inject_range, 261, 0)
        (full,) = inject_node.patch(blend, 0.8, *inject_range, 261, 0)
        self.models = {"vanilla": base, "sdsa": sdsa, "sdsa+blend": blend, "sdsa+inject": inject,
                       "full (fast)": full}
        self.bank_bytes = None
        if reuse:
            (anchors,) = sdsa_node.patch(base, story(classes, ANCHORS), 0.5, 0, ANCHORS, 0.0, 1.0, "output (paper)")
            made = self.sample(anchors, slice(0, ANCHORS))
            (bank,) = classes["ConsiStoryAnchorBank"]().make(anchors, {"samples": made})
            (self.models["reuse (2 anchors)"],) = classes["ConsiStoryUseAnchors"]().patch(base, bank, story(classes, n), False)
            self.bank_bytes = sum(t.numel() * t.element_size() for t in bank.tensors().values())
        self.full_models = (blend, inject_node)

    def sample(self, model, rows=None):
        import comfy.sample
        rows = rows or slice(ANCHORS, None)
        return comfy.sample.sample(model, self.noise[rows], self.steps, 5.0, "ddim", "ddim_uniform",
                                   self.positive(rows), self.negative, self.latent[rows], seed=1, disable_pbar=True)

    def exact(self):
        blend, inject_node = self.full_models
        first = self.sample(blend)
        (features,) = self.classes["ConsiStoryCollectFeatures"]().collect(blend, {"samples": first})
        (second,) = inject_node.patch(blend, 0.8, 0.1, 0.33, 261, 0, features)
        return self.sample(second)

    def run(self, name):
        """Samples once; returns the timed calls (sigma, phase, rows, seconds) and the peak RSS."""
        self.timer.calls.clear()
        with PeakMemory() as mem:
            if name == "full (exact)":
                self.exact()
            else:
                self.sample(self.models[name])
        return list(self.timer.calls), mem.peak


def steps_of(calls):
    """[{phase: seconds}] per step in schedule order: a call at a new sigma starts a step
    (a blended step's vanilla pass comes first); DIFT calls run at their own sigma."""
    steps, last = [], None
    for sigma, phase, _, seconds in calls:
        if phase != "dift" and sigma != last:
            steps.append({})
            last = sigma
        if phase == "dift":
            steps[-1]["dift"] = steps[-1].get("dift", 0) + seconds
        else:
            steps[-1][phase or "main"] = steps[-1].get(phase or "main", 0) + seconds
    return steps


def schedule_mix(steps):
    """Counts of step kinds in a real schedule of ``steps`` DDIM steps with the paper's settings,
    from running it on the tiny model: {kind: count} and the UNet calls of each configuration."""
    import comfy.model_management  # noqa: F401  (the host is up)
    from consistory_testing import tiny_models
    from consistory_run.host import Host
    classes = Host.start().nodes.NODE_CLASS_MAPPINGS
    bench = Bench(classes, tiny_models.tiny_sdxl_unet(0), 2, 64, steps, 0.1, (0.1, 0.33))
    sampling = bench.models["vanilla"].model.model_sampling
    top, bottom = sampling.percent_to_sigma(0.1), sampling.percent_to_sigma(0.33)
    calls, _ = bench.run("full (fast)")
    mix = {"steps": 0, "plain": 1, "blend": 0, "inject": 0, "dift_calls": 0}
    for i, step in enumerate(steps_of(calls)):
        mix["steps"] += 1
        mix["dift_calls"] += "dift" in step
        if i == 0:
            continue
        sigma = sorted({c[0] for c in calls if c[1] != "dift"}, reverse=True)[i]
        if "vanilla" in step:
            mix["blend"] += 1
        elif bottom <= sigma <= top:
            mix["inject"] += 1
    mix["shared"] = mix["steps"] - 1 - mix["blend"] - mix["inject"]
    counted = {}
    for name in ("vanilla", "sdsa", "sdsa+blend", "full (fast)", "full (exact)", "reuse (2 anchors)"):
        calls, _ = bench.run(name)
        counted[name] = len(calls)
    return mix, counted


def generations(mix: dict, med: dict, plain: float, dift: float | None) -> dict:
    """Whole-generation seconds of each configuration whose step costs were measured:
    counted steps of each kind x the measured cost of that kind (``med``: s/step)."""
    shared_steps = mix["steps"] - 1
    gen = {"vanilla": mix["steps"] * med["vanilla"]}
    if "sdsa" in med:
        gen["sdsa"] = plain + shared_steps * med["sdsa"]
        if "sdsa+blend" in med:
            gen["sdsa+blend"] = plain + mix["blend"] * med["sdsa+blend"] + (shared_steps - mix["blend"]) * med["sdsa"]
            if "sdsa+inject" in med:
                gen["full (fast)"] = gen["sdsa+blend"] + mix["inject"] * (med["sdsa+inject"] - med["sdsa"]) + dift
                gen["full (exact)"] = gen["sdsa+blend"] + gen["full (fast)"] - dift
    for c in med:
        if c.startswith("reuse"):
            gen[c] = mix["steps"] * med[c]
    return gen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unet", choices=["sdxl", "tiny"], default="sdxl")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (512 default; 1024 on a GPU)")
    p.add_argument("--images", default="1,2,4,8", help="batch sizes N, comma-separated")
    p.add_argument("--steps", type=int, default=50, help="steps of the whole generation")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"configurations to time, comma-separated (vanilla always): {', '.join(CONFIGS)}")
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path)
    a = p.parse_args()
    a.json, a.plot = (x.resolve() if x else None for x in (a.json, a.plot))  # the host changes directory

    from consistory_testing import tiny_models
    from consistory_run.host import Host
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    classes = host.nodes.NODE_CLASS_MAPPINGS
    import torch
    torch.set_grad_enabled(False)
    mix, counted = schedule_mix(a.steps)
    print(f"schedule: {a.steps} DDIM steps = {mix}; UNet calls per generation: {counted}", flush=True)
    start = time.perf_counter()
    model = tiny_models.tiny_sdxl_unet(0, dict(tiny_models.TINY_UNET, **SDXL) if a.unet == "sdxl" else None)
    print(f"{a.unet} UNet: {sum(p.numel() for p in model.model.parameters()) / 1e9:.2f} B parameters, "
          f"built in {time.perf_counter() - start:.0f} s", flush=True)
    configs = ["vanilla"] + [c for c in CONFIGS if c != "vanilla" and c in a.configs.split(",")]
    results = {"unet": a.unet, "size": a.size, "steps": a.steps, "repeats": a.repeats, "schedule_mix": mix,
               "unet_calls": counted, "machine": f"{psutil.cpu_count()} CPU cores, "
               f"{psutil.virtual_memory().total / 2**30:.0f} GiB", "date": time.strftime("%Y-%m-%d"), "by_images": {}}
    for n in [int(x) for x in a.images.split(",")]:
        bench = Bench(classes, model, n, a.size, PROBE_STEPS, 0.99, (0.01, 0.99),
                      reuse=any(c.startswith("reuse") for c in configs))
        step_s = {c: [] for c in configs}
        plain_s, dift_s, peak = [], [], {c: 0 for c in configs}
        for _ in range(a.repeats):
            for c in configs:
                calls, mem = bench.run(c)
                steps = steps_of(calls)
                step_s[c].append(statistics.mean(sum(v for k, v in s.items() if k != "dift") for s in steps[1:]))
                peak[c] = max(peak[c], mem)
                if c == "vanilla":
                    plain_s.append(statistics.mean(s["main"] for s in steps))
                if c == "sdsa+inject":
                    dift_s.append(sum(s.get("dift", 0) for s in steps))
        med = {c: statistics.median(v) for c, v in step_s.items()}
        plain, dift = statistics.median(plain_s), statistics.median(dift_s) if dift_s else None
        step_ratio = {c: statistics.median([s / v for s, v in zip(step_s[c], step_s["vanilla"])]) for c in configs}
        gen = generations(mix, med, plain, dift)
        results["by_images"][n] = {
            "seconds_per_step": med, "step_ratio": step_ratio, "plain_step_seconds": plain, "dift_call_seconds": dift,
            "generation_seconds": gen, "generation_ratio": {c: g / gen["vanilla"] for c, g in gen.items()},
            "peak_rss_gib": {c: v / 2**30 for c, v in peak.items()},
            "peak_rss_ratio": {c: v / peak["vanilla"] for c, v in peak.items()}, "bank_bytes": bench.bank_bytes}
        r = results["by_images"][n]
        print(f"\nN={n}, {a.size}x{a.size}, median of {a.repeats} interleaved repeats")
        print(f"  {'configuration':20s} {'s/step':>8s} {'x vanilla':>9s} {'peak GiB':>9s} {'x vanilla':>9s}")
        for c in configs:
            print(f"  {c:20s} {med[c]:8.2f} {step_ratio[c]:9.3f} {r['peak_rss_gib'][c]:9.2f} {r['peak_rss_ratio'][c]:9.3f}")
        print(f"  whole generation of {a.steps} steps (counted steps x measured step costs):")
        for c, g in gen.items():
            print(f"    {c:20s} {g:9.1f} s  {r['generation_ratio'][c]:6.3f} x vanilla  ({counted[c]} UNet calls)")
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(results, indent=1) + "\n")
    if a.plot:
        plot(results, a.plot)


def plot(results, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ns = sorted(results["by_images"], key=int)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c in results["by_images"][ns[0]]["generation_ratio"]:
        if c != "vanilla":
            left.plot([int(n) for n in ns], [results["by_images"][n]["generation_ratio"][c] for n in ns], "o-", label=c)
    left.axhline(1, color="grey", lw=0.8)
    left.set(xlabel="images N", ylabel="time / vanilla (whole generation)", xticks=[int(n) for n in ns],
             title=f"{results['steps']} steps, {results['size']}px, full-size SDXL UNet")
    left.legend(fontsize=8)
    for c in results["by_images"][ns[0]]["peak_rss_gib"]:
        right.plot([int(n) for n in ns], [results["by_images"][n]["peak_rss_gib"][c] for n in ns], "o-", label=c)
    right.set(xlabel="images N", ylabel="peak resident memory (GiB)", xticks=[int(n) for n in ns],
              title=f"{results['machine']}, {results['date']}")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
