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
FULL_WIDTH = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
                  hidden_size=3072, mlp_ratio=4.0, num_heads=24, axes_dim=[16, 56, 56], theta=10000,
                  patch_size=2, qkv_bias=True, guidance_embed=True)


def models(classes, n: int, args):
    """{configuration: patched model} on one Flux, and the sampling inputs for n images."""
    import torch
    from consistory_testing.pack import pack_module, run_node
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
    base = timer.patch(model)
    values = pack_module(classes, "consistory_patches.values")
    story = values.StorySubject(prompts=tuple(f"scene {i}" for i in range(n)), subjects=(("a man", ("man",)),),
                                positions=tuple(((5,),) for _ in range(n)), word_subject=(0,), token_length=args.text)
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


def sample(model, positive, latent, steps):
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent, 1)
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
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", choices=("full", "tiny"), default="full", help="tiny: the test's Flux (a quick check)")
    p.add_argument("--double", type=int, default=1, help="double-stream blocks (Flux.1: 19)")
    p.add_argument("--single", type=int, default=2, help="single-stream blocks (Flux.1: 38)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (tokens: (size/16)^2)")
    p.add_argument("--text", type=int, default=256, help="T5 tokens (schnell 256, dev 512)")
    p.add_argument("--images", default="1,2,4")
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
    import psutil
    out = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "machine": torch.cuda.get_device_name() if args.device == "cuda" else
           f"{psutil.cpu_count()} CPU cores, {psutil.virtual_memory().total / GIB:.0f} GiB",
           "date": time.strftime("%Y-%m-%d"), "by_images": results, "activation_growth_gib_per_image": growth}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(table(out))
    if args.readme:
        args.readme.write_text(replace_between(args.readme.read_text(), args.marker, table(out)))


if __name__ == "__main__":
    main()
