"""What ConsiStory costs on Flux.1 against plain sampling: time per step and peak activation
memory for N images, on the host's Flux class at full width (hidden 3072, 24 heads of 128,
T5 context 4096) with a few of its blocks and random weights (today's host only).

As benchmarks/sdxl_cost.py, in one process: each configuration samples a few steps (step 0
is plain: no masks yet; steps >= 1 share, blend or inject), the runs interleaved and
repeated; a wrapper under the pack's times every model call. The per-step ratio is a shared
step's seconds over a plain step's, measured side by side; the peak activation memory is
one more, untimed run of each configuration inside ``LiveTensorBytes``, its growth per image
the least-squares slope over N. Flux's usual settings: cfg 1 (no uncond chunk), euler,
simple schedule.

Reuse of a bank (§4.4, ``--reuse-images``): two anchors sampled with SDSA into a bank, then Use
Anchors on N new prompts with the anchor cache (its first run records it; the timed runs play
it: the model runs on the new images alone) and with it off (the anchors replayed in every
call), against plain sampling of the same N new images, paired and interleaved: a whole run's
seconds over the plain run's beside it, the median of the repeats' ratios.

    CONSISTORY_HOST=0.3.75 .venv/bin/python benchmarks/flux_cost.py --double 1 --single 2 --size 256 \\
        --text 256 --images 1,2,4 --json benchmarks/results/flux_cost.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))

from benchmarks.report import replace_between  # noqa: E402
from benchmarks.sdxl_cost import DTYPES, GIB, CallTimer, steps_of  # noqa: E402

CONFIGS = ("vanilla", "sdsa", "sdsa+blend", "sdsa+inject")
REUSE = ("plain", "reuse (cached)", "reuse (off)")
ANCHORS = 2
FULL_WIDTH = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
                  hidden_size=3072, mlp_ratio=4.0, num_heads=24, axes_dim=[16, 56, 56], theta=10000,
                  patch_size=2, qkv_bias=True, guidance_embed=True)


def flux_model(args):
    """(the Flux of ``args``, random weights, with a CallTimer under the pack's wrappers; the timer)."""
    import torch
    from consistory_testing.tiny_models import TINY_FLUX, tiny_flux
    config = dict(FULL_WIDTH, depth=args.double, depth_single_blocks=args.single) if args.width == "full" else \
        dict(TINY_FLUX, context_in_dim=4096, vec_in_dim=768)
    model = tiny_flux(0, config=dict(config, dtype=getattr(torch, DTYPES[args.dtype])))
    if args.device == "cuda":  # the weights stay on the GPU (loaded and offloaded there)
        import comfy.model_patcher
        device = torch.device("cuda")
        model.model.to(device)
        model.model.device = device
        model = comfy.model_patcher.ModelPatcher(model.model, load_device=device, offload_device=device)
    timer = CallTimer(cuda=args.device == "cuda")
    return timer.patch(model), timer


def flux_story(classes, n: int, text: int):
    """A StorySubject of n prompts, the subject word "man" at T5 token 5."""
    from consistory_testing.pack import pack_module
    values = pack_module(classes, "consistory_patches.values")
    return values.StorySubject(prompts=tuple(f"scene {i}" for i in range(n)), subjects=(("a man", ("man",)),),
                               positions=tuple(((5,),) for _ in range(n)), word_subject=(0,), token_length=text)


def models(classes, n: int, args):
    """{configuration: patched model} on one Flux, and the sampling inputs for n images."""
    import torch
    from consistory_testing.pack import run_node
    base, timer = flux_model(args)
    story = flux_story(classes, n, args.text)
    sdsa_node, blend, inject = (classes[k] for k in ("ConsiStorySDSA", "ConsiStoryQueryBlend",
                                                        "ConsiStoryFeatureInjection"))
    (sdsa,) = run_node(sdsa_node, base, story, 0.5, 0, 0, 0.0, 1.0, "output (paper)")
    built = {"vanilla": base, "sdsa": sdsa, "sdsa+blend": run_node(blend, sdsa, 0.9, 0.81836735, 1.0)[0],
             "sdsa+inject": run_node(inject, sdsa, 0.8, 0.0, 1.0, 261, 0)[0]}  # windows over the whole probe
    g = torch.Generator().manual_seed(0)
    positive = [[torch.randn(n, args.text, 4096, generator=g) * 0.1,
                 {"pooled_output": torch.randn(n, 768, generator=g), "guidance": 3.5}]]
    latent = torch.zeros(n, 16, args.size // 8, args.size // 8)
    return built, timer, positive, latent


def sample(model, positive, latent, steps, noise=None):
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent, 1) if noise is None else noise
    return comfy.sample.sample(model, noise, steps, 1.0, "euler", "simple", positive, positive, latent, seed=1,
                               disable_pbar=True)


def generation_ratio(med: dict, steps: int = 28) -> float:
    """The full method (SDSA + Query Blend + one-pass injection, the paper's windows) over plain
    sampling for a whole ``steps``-step Flux run, from the measured seconds per step of each
    kind: step 0 plain (no masks yet), blend and injection steps at the paper's windows
    (consistory_core.schedule.window_steps), one DIFT call counted as a plain step."""
    from consistory_core.schedule import window_steps
    blend, inject = set(window_steps(steps, 0.0, 0.1)), set(window_steps(steps, 0.1, 0.33))
    total = 2 * med["vanilla"]  # step 0 and the DIFT call
    for step in range(1, steps):
        total += med["sdsa"] + (med["sdsa+blend"] - med["sdsa"]) * (step in blend) \
            + (med["sdsa+inject"] - med["sdsa"]) * (step in inject)
    return total / (steps * med["vanilla"])


def measure(classes, n: int, args) -> dict:
    from benchmarks.activation_memory import LiveTensorBytes
    built, timer, positive, latent = models(classes, n, args)
    args.parameters = sum(p.numel() for p in built["vanilla"].model.diffusion_model.parameters())
    step_s = {c: [] for c in CONFIGS}
    for _ in range(args.repeats):
        for c in CONFIGS:
            timer.calls.clear()
            sample(built[c], positive, latent, args.probe_steps)
            steps = steps_of(timer.calls)
            step_s[c].append(statistics.mean(sum(v for k, v in s.items() if k != "dift") for s in steps[1:]))
    act = {}
    for c in CONFIGS:
        with LiveTensorBytes() as mem:
            sample(built[c], positive, latent, args.probe_steps)
        act[c] = mem.peak / GIB
    med = {c: statistics.median(v) for c, v in step_s.items()}
    return {"seconds_per_step": med, "full_method_28_steps_ratio": generation_ratio(med),
            "step_ratio": {c: statistics.median([s / v for s, v in zip(step_s[c], step_s["vanilla"])])
                           for c in CONFIGS},
            "peak_activation_gib": act, "activation_ratio": {c: act[c] / act["vanilla"] for c in CONFIGS}}


class Reuse:
    """Reuse of a bank of ANCHORS anchors for n new prompts (§4.4) on one Flux: plain sampling of
    the new images, Use Anchors with the anchor cache (recorded by a first run here) and
    with it off. Every image's noise and conditioning are its rows of one batch [anchors ; new]."""

    def __init__(self, classes, n: int, args):
        import comfy.sample
        import torch
        from consistory_testing.pack import pack_module, run_node
        self.args = args
        base, self.timer = flux_model(args)
        g = torch.Generator().manual_seed(0)
        total = ANCHORS + n
        context, pooled = torch.randn(total, args.text, 4096, generator=g) * 0.1, torch.randn(total, 768, generator=g)
        self.positive = lambda rows: [[context[rows], {"pooled_output": pooled[rows], "guidance": 3.5}]]
        self.latent = torch.zeros(total, 16, args.size // 8, args.size // 8)
        self.noise = comfy.sample.prepare_noise(self.latent, 1)
        (anchors,) = run_node(classes["ConsiStorySDSA"], base, flux_story(classes, ANCHORS, args.text), 0.5, 0,
                              ANCHORS, 0.0, 1.0, "output (paper)")
        made = self.sample(anchors, slice(0, ANCHORS))
        (bank,) = run_node(classes["ConsiStoryAnchorBank"], anchors, {"samples": made})
        use, new = classes["ConsiStoryUseAnchors"], flux_story(classes, n, args.text)
        self.models = {"plain": base, "reuse (cached)": run_node(use, base, bank, new, False, "CPU memory")[0],
                       "reuse (off)": run_node(use, base, bank, new, False, "off")[0]}
        self.cache = pack_module(classes, "consistory_patches.anchor_cache").cache_for(bank, "cpu")
        self.sample(self.models["reuse (cached)"])  # the first run records the anchor cache
        self.recorded = dict(self.cache.calls)

    def sample(self, model, rows=None):
        rows = rows or slice(ANCHORS, None)
        return sample(model, self.positive(rows), self.latent[rows], self.args.probe_steps, self.noise[rows])

    def run(self, name: str) -> tuple:
        """(seconds of one whole run, the model calls' rows) of configuration ``name``."""
        self.timer.sync()
        self.timer.calls.clear()
        start = time.perf_counter()
        self.sample(self.models[name])
        self.timer.sync()
        return time.perf_counter() - start, [rows for _, _, rows, _ in self.timer.calls]


def measure_reuse(classes, n: int, args) -> dict:
    """Whole-run seconds of plain sampling, cached reuse and replaying reuse of n new images,
    interleaved and repeated; ratios: the median of each repeat's ratio to its plain run."""
    from benchmarks.sdxl_cost import cache_size
    bench = Reuse(classes, n, args)
    seconds, rows = {c: [] for c in REUSE}, {}
    for _ in range(args.repeats):
        for c in REUSE:
            s, rows[c] = bench.run(c)
            seconds[c].append(s)
    played = bench.cache.calls["played"] - bench.recorded["played"]
    if bench.cache.calls["recorded"] != bench.recorded["recorded"] or not played:
        raise RuntimeError(f"the anchor cache was not played: {bench.cache.calls} (after recording: {bench.recorded})")
    return {"run_seconds": {c: statistics.median(v) for c, v in seconds.items()},
            "run_ratio": {c: statistics.median([s / p for s, p in zip(seconds[c], seconds["plain"])]) for c in REUSE},
            "model_rows": {c: max(r) for c, r in rows.items()}, "anchor_cache": cache_size(bench.cache)}


def reuse_table(results: dict) -> str:
    """Markdown: reuse of a bank against plain sampling, one row per N (empty without reuse results)."""
    reuse = results.get("reuse") or {}
    if not reuse:
        return ""
    a = results["settings"]
    when = f" ({results['reuse_date']})" if results.get("reuse_date") not in (None, results.get("date")) else ""
    lines = ["", f"Reusing a bank of {ANCHORS} anchors (§4.4) for N new prompts{when}, same model and settings, "
             f"{a['probe_steps']}-step runs: whole-run seconds (medians of {a['repeats']} interleaved repeats; × plain: "
             "the median of the repeats' ratios to the plain run of the same N new images beside them). cached: Use "
             "Anchors' anchor cache, recorded by a first run, played (the model runs on the new images alone); off: "
             "the anchors replayed in every model call.", "",
             "| N | plain (s) | cached (s) | cached × plain | off (s) | off × plain | model rows cached / off | anchor cache (MiB) |",
             "|---|---|---|---|---|---|---|---|"]
    for n, r in sorted(reuse.items(), key=lambda x: int(x[0])):
        s, ratio, rows = r["run_seconds"], r["run_ratio"], r["model_rows"]
        lines.append(f"| {n} | {s['plain']:.2f} | {s['reuse (cached)']:.2f} | {ratio['reuse (cached)']:.3f} | "
                     f"{s['reuse (off)']:.2f} | {ratio['reuse (off)']:.3f} | {rows['reuse (cached)']} / "
                     f"{rows['reuse (off)']} | {r['anchor_cache']['bytes'] / 2**20:.1f} |")
    return "\n".join(lines) + "\n"


def table(results: dict) -> str:
    """Markdown: the settings, then one row per N and configuration."""
    a = results["settings"]
    model = (f"Flux.1 at full width ({a['parameters'] / 1e6:.0f} M parameters: {a['double']} double-stream and "
             f"{a['single']} single-stream blocks of Flux.1's 19 and 38" if a["width"] == "full" else
             f"The tests' tiny Flux ({a['parameters'] / 1e6:.1f} M parameters")
    lines = [f"{model}, random weights), {a['size']}x{a['size']} px "
             f"({(a['size'] // 16) ** 2} image tokens) and {a['text']} T5 tokens, cfg 1, euler; {results['machine']}, "
             f"{a.get('dtype', 'fp32')}, {results['date']}; medians of {a['repeats']} interleaved repeats of {a['probe_steps']}-step runs "
             "(a step's cost: its steps after the first, which has no masks yet; a DIFT call is not a step; "
             "step × plain: the median of the repeats' ratios, each measured side by side). "
             "Activation memory: the most bytes of tensors alive at once beyond the weights, one untimed run.", "",
             "| N | configuration | s/step | step × plain | peak activation (GiB) | activation × plain |",
             "|---|---|---|---|---|---|"]
    for n, r in sorted(results["by_images"].items(), key=lambda x: int(x[0])):
        for c in CONFIGS:
            lines.append(f"| {n} | {c} | {r['seconds_per_step'][c]:.2f} | {r['step_ratio'][c]:.3f} | "
                         f"{r['peak_activation_gib'][c]:.3f} | {r['activation_ratio'][c]:.3f} |")
    lines += ["", "The full method (SDSA + Query Blend + one-pass injection, the paper's windows) over a whole "
              "28-step run, from these step costs: " + ", ".join(
                  f"N = {n}: {r['full_method_28_steps_ratio']:.2f}×"
                  for n, r in sorted(results["by_images"].items(), key=lambda x: int(x[0]))) + "."]
    growth = results.get("activation_growth_gib_per_image") or {}
    if growth:
        lines += ["", "Activation memory grows per image (least squares over N): " +
                  ", ".join(f"{c} {g:.4f} GiB" for c, g in growth.items()) + "."]
    return "\n".join(lines) + "\n" + reuse_table(results)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", choices=("full", "tiny"), default="full", help="tiny: the test's Flux (a quick check)")
    p.add_argument("--double", type=int, default=1, help="double-stream blocks (Flux.1: 19)")
    p.add_argument("--single", type=int, default=2, help="single-stream blocks (Flux.1: 38)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (tokens: (size/16)^2)")
    p.add_argument("--text", type=int, default=256, help="T5 tokens (schnell 256, dev 512)")
    p.add_argument("--images", default="1,2,4")
    p.add_argument("--reuse-images", default="1,4", help="N new prompts of the bank reuse measurement ('' for none)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--probe-steps", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), help="default: fp32 on the CPU, fp16 on CUDA")
    p.add_argument("--json", type=Path)
    p.add_argument("--readme", type=Path, help="write the table between the file's two <!-- MARKER --> lines")
    p.add_argument("--marker", default="flux-performance-table")
    p.add_argument("--from-json", type=Path, help="no run: the table of an earlier run's JSON (with --readme)")
    args = p.parse_args(argv)
    for name in ("json", "readme"):  # the host's start changes the working directory
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    args.dtype = args.dtype or ("fp16" if args.device == "cuda" else "fp32")
    if args.from_json:
        text = table(json.loads(args.from_json.read_text()))
        if args.readme:
            args.readme.write_text(replace_between(args.readme.read_text(), args.marker, text))
        print(text)
        return
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        p.exit(2, "--device cuda: this torch sees no CUDA GPU\n")
    from consistory_run.host import Host
    torch.set_grad_enabled(False)
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    classes = host.nodes.NODE_CLASS_MAPPINGS
    results = {}
    for n in map(int, args.images.split(",")):
        results[n] = r = measure(classes, n, args)
        print(f"N={n}: " + "  ".join(f"{c} {r['step_ratio'][c]:.3f}x step, {r['peak_activation_gib'][c]:.3f} GiB"
                                      for c in CONFIGS), flush=True)
    ns = sorted(results)
    growth = {c: statistics.linear_regression(ns, [results[n]["peak_activation_gib"][c] for n in ns]).slope
              for c in CONFIGS} if len(ns) > 1 else {}
    print("activation growth per image (GiB): " + "  ".join(f"{c} {g:.4f}" for c, g in growth.items()))
    reuse = {}
    for n in (int(x) for x in args.reuse_images.split(",") if x.strip()):
        reuse[n] = r = measure_reuse(classes, n, args)
        print(f"reuse N={n}: cached {r['run_ratio']['reuse (cached)']:.3f}x plain, off {r['run_ratio']['reuse (off)']:.3f}x "
              f"plain (model rows {r['model_rows']}), anchor cache {r['anchor_cache']['bytes'] / 2**20:.1f} MiB", flush=True)
    import psutil
    out = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "machine": torch.cuda.get_device_name() if args.device == "cuda" else
           f"{psutil.cpu_count()} CPU cores, {psutil.virtual_memory().total / GIB:.0f} GiB",
           "date": time.strftime("%Y-%m-%d"), "by_images": results, "activation_growth_gib_per_image": growth, "reuse": reuse,
           "reuse_date": time.strftime("%Y-%m-%d")}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(table(out))
    if args.readme:
        args.readme.write_text(replace_between(args.readme.read_text(), args.marker, table(out)))


if __name__ == "__main__":
    main()
