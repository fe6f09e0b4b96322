"""What ConsiStory costs against vanilla SDXL sampling: time per step, whole generations,
UNet calls and peak activation memory, for N images, on a full-size SDXL UNet with random weights.

How (all in one process, so ratios are measured in the same run):
1. Per-step costs on the full-size UNet (``--unet sdxl``; ``tiny`` for a quick check), on the
   CPU or a CUDA GPU (``--device``, ``--dtype``): short runs of each configuration, repeated and
   interleaved (vanilla, sdsa, blend, injection, reuse, vanilla, ...); a wrapper under the
   pack's times every UNet call (synchronizing the GPU around it) and tags it with its step
   and pass. Step 0 of every run is a plain step (no masks yet); steps >= 1 give the cost of a
   shared, blended, injected or reused step.
2. The mix of step kinds in a real schedule (``--steps``, default 50 DDIM steps, paper
   settings) is counted by running that schedule on the tiny SDXL-shaped model: which
   steps blend, which inject, how many UNet calls. Counts do not depend on model size.
3. Whole-generation seconds = counted steps x measured per-step seconds; ratios against
   vanilla.
4. Peak activation memory: one more, untimed run of each configuration inside
   ``LiveTensorBytes`` (benchmarks/activation_memory.py): the most bytes of tensors that
   sampling created and held at once, beyond the weights; on CUDA also the allocator's peak
   above the bytes allocated before the run. Its growth per image is the least-squares slope
   over the N run. The process's peak resident memory (sampled) is reported too.

    .venv/bin/python benchmarks/sdxl_cost.py --unet sdxl --size 256 --images 1,2,4 --repeats 2 \\
        --json benchmarks/results/sdxl_cost.json --plot benchmarks/results/sdxl_cost.png
    python benchmarks/sdxl_cost.py --device cuda --json benchmarks/results/sdxl_cost_cuda.json \\
        --plot benchmarks/results/sdxl_cost_cuda.png    # 1024 px, N = 1,2,4,8, fp16
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.append(str(Path(__file__).resolve().parents[1]))
from consistory_testing.pack import pack_module, run_node  # noqa: E402

ANCHORS = 2
CONFIGS = ("vanilla", "sdsa", "sdsa+blend", "sdsa+inject", "reuse (2 anchors)", "reuse (cached)")
PROBE_STEPS = 3  # step 0 plain, steps 1-2 with the configuration's step kind (--probe-steps)
SDXL = dict(model_channels=320, transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_middle=10,
            transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], context_dim=2048, adm_in_channels=2816)
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# --size, --images, --repeats when not given: one GPU command finishes in minutes
DEFAULTS = {"cpu": dict(size=512, images="1,2,4,8", repeats=3), "cuda": dict(size=1024, images="1,2,4,8", repeats=3)}
GIB = 2**30


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
    """MODEL -> MODEL: (sigma, pass, rows, seconds) per UNet call, where pass is the pack's
    PassKind value: "sampler" (the sampler's own call), "vanilla" (query blending's pass) or
    "dift" (one-pass injection's feature pass). The timer sits under the pack's wrappers, so
    each pass is a call of its own: in the 2024 host's single wrapper slot (the pack's wrapper
    chains what it finds there), in today's host around the diffusion model (inside the
    pack's apply-model wrapper). ``cuda``: the GPU is synchronized before and after each call."""

    KEY = "consistory_benchmark"

    def __init__(self, cuda: bool = False):
        import torch
        self.calls = []
        self.sync = torch.cuda.synchronize if cuda else (lambda: None)

    def patch(self, model):
        m = model.clone()
        try:
            from comfy.patcher_extension import WrappersMP
        except ImportError:  # the 2024 host
            m.set_model_unet_function_wrapper(lambda apply_model, args: self.time(
                lambda: apply_model(args["input"], args["timestep"], **args["c"]), args["input"],
                args["c"]["transformer_options"]))
            return m

        def diffusion_model(executor, *args, **kwargs):  # (x, ..., transformer_options): a UNet's or Flux's
            options = kwargs.get("transformer_options", args[-1])
            return self.time(lambda: executor(*args, **kwargs), args[0], options)

        m.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, self.KEY, diffusion_model)
        return m

    def time(self, call, x, options: dict):
        """Runs ``call`` (one UNet call on ``x``), recording its sigma, pass, rows and seconds."""
        from consistory_patches.passes import pass_of
        self.sync()
        start = time.perf_counter()
        out = call()
        self.sync()
        self.calls.append((float(options["sigmas"][0]), pass_of(options).kind.value, x.shape[0],
                           time.perf_counter() - start))
        return out


def story(classes, n):
    from consistory_testing.pack import synthetic_story
    return synthetic_story(classes, n)


def build_unet(kind: str, device, dtype: str):
    """The host's SDXL model, full-size (``sdxl``) or tiny, with random weights, on ``device`` in
    ``dtype``, in a ModelPatcher that loads and offloads there (the weights stay put)."""
    import comfy.model_patcher
    import torch
    from consistory_testing import tiny_models
    config = dict(tiny_models.TINY_UNET, **(SDXL if kind == "sdxl" else {}), dtype=getattr(torch, DTYPES[dtype]))
    model = tiny_models.tiny_sdxl_unet(0, config).model.to(device)
    model.device = device  # where today's host's ModelPatcher finds the weights
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


class Bench:
    """The configurations of one model and batch size, as functions that sample ``steps``.
    Conditioning and latents are made on the CPU; the host moves them to the model's device."""

    def __init__(self, classes, model, n, size, steps, blend_end, inject_range, reuse=True):
        import comfy.sample
        import torch
        self.classes, self.n, self.steps = classes, n, steps
        self.timer = CallTimer(cuda=model.load_device.type == "cuda")
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
        sdsa_node, blend_node, inject_node = (classes[k] for k in ("ConsiStorySDSA", "ConsiStoryQueryBlend",
                                                                      "ConsiStoryFeatureInjection"))
        (sdsa,) = run_node(sdsa_node, base, story(classes, n), 0.5, 0, 0, 0.0, 1.0, "output (paper)")
        (blend,) = run_node(blend_node, sdsa, 0.9, 0.81836735, blend_end)
        (inject,) = run_node(inject_node, sdsa, 0.8, *inject_range, 261, 0)
        (full,) = run_node(inject_node, blend, 0.8, *inject_range, 261, 0)
        self.models = {"vanilla": base, "sdsa": sdsa, "sdsa+blend": blend, "sdsa+inject": inject,
                       "full (fast)": full}
        self.bank_bytes = self.cache = None
        if reuse:
            (anchors,) = run_node(sdsa_node, base, story(classes, ANCHORS), 0.5, 0, ANCHORS, 0.0, 1.0, "output (paper)")
            made = self.sample(anchors, slice(0, ANCHORS))
            (bank,) = run_node(classes["ConsiStoryAnchorBank"], anchors, {"samples": made})
            self.bank = bank
            use = classes["ConsiStoryUseAnchors"]
            (self.models["reuse (2 anchors)"],) = run_node(use, base, bank, story(classes, n), False, "off")
            (cached,) = run_node(use, base, bank, story(classes, n), False, "CPU memory")
            self.sample(cached)  # the first run replays the anchors and fills the anchor cache
            self.models["reuse (cached)"] = cached
            self.bank_bytes = sum(t.numel() * t.element_size() for t in bank.tensors().values())
            self.cache = pack_module(classes, "consistory_patches.anchor_cache").cache_for(bank, "cpu")
        self.full_models = (blend, inject_node)

    def sample(self, model, rows=None):
        import comfy.sample
        rows = rows or slice(ANCHORS, None)
        return comfy.sample.sample(model, self.noise[rows], self.steps, 5.0, "ddim", "ddim_uniform",
                                   self.positive(rows), self.negative, self.latent[rows], seed=1, disable_pbar=True)

    def exact(self):
        blend, inject_node = self.full_models
        first = self.sample(blend)
        (features,) = run_node(self.classes["ConsiStoryCollectFeatures"], blend, {"samples": first})
        (second,) = run_node(inject_node, blend, 0.8, 0.1, 0.33, 261, 0, features)
        return self.sample(second)

    def generate(self, name):
        return self.exact() if name == "full (exact)" else self.sample(self.models[name])

    def run(self, name):
        """Samples once; returns the timed calls (sigma, pass, rows, seconds) and the peak RSS."""
        self.timer.calls.clear()
        with PeakMemory() as mem:
            self.generate(name)
        return list(self.timer.calls), mem.peak

    def activations(self, name):
        """Samples once, untimed, inside LiveTensorBytes (which slows every op); returns it."""
        from benchmarks.activation_memory import LiveTensorBytes
        gc.collect()
        with LiveTensorBytes() as mem:
            self.generate(name)
        return mem


def steps_of(calls):
    """[{pass: seconds}] per step in schedule order: a call at a new sigma starts a step
    (a blended step's vanilla pass comes first); DIFT calls run at their own sigma."""
    steps, last = [], None
    for sigma, kind, _, seconds in calls:
        if kind != "dift" and sigma != last:
            steps.append({})
            last = sigma
        steps[-1][kind] = steps[-1].get(kind, 0) + seconds
    return steps


def schedule_mix(steps, device, dtype):
    """Counts of step kinds in a real schedule of ``steps`` DDIM steps with the paper's settings,
    from running it on the tiny model: {kind: count} and the UNet calls of each configuration."""
    from consistory_run.host import Host
    classes = Host.start().nodes.NODE_CLASS_MAPPINGS
    bench = Bench(classes, build_unet("tiny", device, dtype), 2, 64, steps, 0.1, (0.1, 0.33))
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
    for name in ("vanilla", "sdsa", "sdsa+blend", "full (fast)", "full (exact)", "reuse (2 anchors)", "reuse (cached)"):
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


def measure(bench: Bench, configs: list, repeats: int, mix: dict) -> dict:
    """One N: timed runs of the configurations, interleaved and repeated (medians), then one
    untimed run of each inside the activation tracker."""
    step_s = {c: [] for c in configs}
    plain_s, dift_s, rss, rows = [], [], {c: 0 for c in configs}, {}
    for _ in range(repeats):
        for c in configs:
            calls, mem = bench.run(c)
            rows[c] = statistics.median(r for _, kind, r, _ in calls if kind == "sampler")
            steps = steps_of(calls)
            step_s[c].append(statistics.mean(sum(v for k, v in s.items() if k != "dift") for s in steps[1:]))
            rss[c] = max(rss[c], mem)
            if c == "vanilla":
                plain_s.append(statistics.mean(s["sampler"] for s in steps))
            if c == "sdsa+inject":
                dift_s.append(sum(s.get("dift", 0) for s in steps))
    med = {c: statistics.median(v) for c, v in step_s.items()}
    plain, dift = statistics.median(plain_s), statistics.median(dift_s) if dift_s else None
    gen = generations(mix, med, plain, dift)
    act = {c: bench.activations(c) for c in configs}
    row = {"seconds_per_step": med, "plain_step_seconds": plain, "dift_call_seconds": dift, "unet_rows": rows,
           "step_ratio": {c: statistics.median([s / v for s, v in zip(step_s[c], step_s["vanilla"])]) for c in configs},
           "generation_seconds": gen, "generation_ratio": {c: g / gen["vanilla"] for c, g in gen.items()},
           "peak_activation_gib": {c: m.peak / GIB for c, m in act.items()},
           "activation_ratio": {c: m.peak / act["vanilla"].peak for c, m in act.items()},
           "peak_rss_gib": {c: v / GIB for c, v in rss.items()},
           "peak_rss_ratio": {c: v / rss["vanilla"] for c, v in rss.items()}, "bank_bytes": bench.bank_bytes}
    if bench.cache is not None:
        row["anchor_cache"] = cache_size(bench.cache)
    if act["vanilla"].cuda_peak is not None:
        row["peak_vram_gib"] = {c: m.cuda_peak / GIB for c, m in act.items()}
    return row


def cache_size(cache) -> dict:
    """An anchor cache's bytes: in all, per shared step (the anchors' shared attention, as
    attention inputs or keys and values: steps after the first, where the masks exist) and
    per step for its other parts."""
    shared, other, steps = 0, 0, set()
    for key, t in cache.entries.items():
        evaluation, part = key[0], key[4]
        steps.add(evaluation)
        if part in ("x", "xv", "k", "v"):
            shared += t.numel() * t.element_size()
        else:
            other += t.numel() * t.element_size()
    n = max(len(steps), 1)
    return {"bytes": cache.nbytes, "evaluations": len(steps), "shared_bytes_per_step": shared / max(n - 1, 1),
            "other_bytes_per_step": other / n, "element_bytes": next(iter(cache.entries.values())).element_size()}


def cache_at(size: dict, pixels: int, at: int = 1024, steps: int = 50, element_bytes: int = 2) -> float:
    """Bytes of the same cache at ``at``² px, ``steps`` steps, fp16: every part grows with the
    patches (the masks cover the same share of the image) and with the steps."""
    scale = (at / pixels) ** 2 * element_bytes / size["element_bytes"]
    return scale * (size["shared_bytes_per_step"] * (steps - 1) + size["other_bytes_per_step"] * steps)


def slopes(by_images: dict) -> dict:
    """Least-squares growth of each configuration's peak activation, GiB per image, over the N run."""
    ns = sorted(by_images, key=int)
    if len(ns) < 2:
        return {}
    return {c: statistics.linear_regression([int(n) for n in ns],
                                            [by_images[n]["peak_activation_gib"][c] for n in ns]).slope
            for c in by_images[ns[0]]["peak_activation_gib"]}


def report(n: int, r: dict, a, counted: dict) -> None:
    """The table of one N: step costs, activation memory, process memory, whole generations."""
    vram = "peak_vram_gib" in r
    print(f"\nN={n}, {a.size}x{a.size}, median of {a.repeats} interleaved repeats; activation memory from one "
          "untimed run" + ("; VRAM: the CUDA allocator's peak above the weights" if vram else ""))
    print(f"  {'configuration':20s} {'s/step':>8s} {'x vanilla':>9s} {'act. GiB':>9s} {'x vanilla':>9s}"
          + (f" {'VRAM GiB':>9s}" if vram else "") + f" {'process GiB':>11s} {'x vanilla':>9s}")
    for c in r["seconds_per_step"]:
        print(f"  {c:20s} {r['seconds_per_step'][c]:8.3g} {r['step_ratio'][c]:9.3f} "
              f"{r['peak_activation_gib'][c]:9.3g} {r['activation_ratio'][c]:9.3f}"
              + (f" {r['peak_vram_gib'][c]:9.3g}" if vram else "")
              + f" {r['peak_rss_gib'][c]:11.2f} {r['peak_rss_ratio'][c]:9.3f}")
    if "anchor_cache" in r:
        size = r["anchor_cache"]
        print(f"  anchor cache (2 anchors, {size['evaluations']} steps here): {size['bytes'] / 2**20:.1f} MiB; "
              f"at 1024x1024, {a.steps} steps, fp16, same mask coverage: {cache_at(size, a.size, steps=a.steps) / GIB:.2f} GiB")
    print(f"  whole generation of {a.steps} steps (counted steps x measured step costs):")
    for c, g in r["generation_seconds"].items():
        print(f"    {c:20s} {g:9.1f} s  {r['generation_ratio'][c]:6.3f} x vanilla  ({counted[c]} UNet calls)")


def parse(argv=None):
    """The options, with the device's defaults filled in; exits 2 when --device cuda has no GPU."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--unet", choices=["sdxl", "tiny"], default="sdxl")
    p.add_argument("--device", choices=list(DEFAULTS), default="cpu",
                   help="where the UNet runs (cuda needs a CUDA build of torch and a GPU)")
    p.add_argument("--dtype", choices=list(DTYPES), help="UNet weights (default fp16 on cuda, fp32 on cpu)")
    p.add_argument("--size", type=int, help="image side in pixels (default 512 on cpu, 1024 on cuda)")
    p.add_argument("--images", help="batch sizes N, comma-separated (default 1,2,4,8)")
    p.add_argument("--steps", type=int, default=50, help="steps of the whole generation")
    p.add_argument("--repeats", type=int, help="interleaved timed repeats (default 3)")
    p.add_argument("--probe-steps", type=int, default=PROBE_STEPS,
                   help="steps of each timed run: the first is plain, the others of the configuration's kind (>= 2)")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"configurations to time, comma-separated (vanilla always): {', '.join(CONFIGS)}")
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path)
    a = p.parse_args(argv)
    for k, v in DEFAULTS[a.device].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.dtype = a.dtype or ("fp16" if a.device == "cuda" else "fp32")
    a.json, a.plot = (x.resolve() if x else None for x in (a.json, a.plot))  # the host changes directory
    if a.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch: the host then runs on the CPU too
    import torch
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error(f"--device cuda: this torch ({torch.__version__}) sees no CUDA GPU; "
                "install a CUDA build of torch on a machine with one, or use --device cpu")
    return a


def main() -> None:
    a = parse()
    from consistory_run.host import Host
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    classes = host.nodes.NODE_CLASS_MAPPINGS
    import torch
    torch.set_grad_enabled(False)
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if a.device == "cuda" else f"cpu ({psutil.cpu_count()} cores)"
    print(f"device: {name}, {a.dtype}", flush=True)
    mix, counted = schedule_mix(a.steps, device, a.dtype)
    print(f"schedule: {a.steps} DDIM steps = {mix}; UNet calls per generation: {counted}", flush=True)
    start = time.perf_counter()
    model = build_unet(a.unet, device, a.dtype)
    params = list(model.model.parameters())
    weights = sum(p.numel() * p.element_size() for p in params) / GIB
    print(f"{a.unet} UNet: {sum(p.numel() for p in params) / 1e9:.2f} B parameters, {weights:.2f} GiB of weights, "
          f"built in {time.perf_counter() - start:.0f} s", flush=True)
    configs = ["vanilla"] + [c for c in CONFIGS if c != "vanilla" and c in a.configs.split(",")]
    results = {"unet": a.unet, "device": name, "dtype": a.dtype, "weights_gib": weights, "size": a.size,
               "steps": a.steps, "repeats": a.repeats, "schedule_mix": mix, "unet_calls": counted,
               "machine": f"{psutil.cpu_count()} CPU cores, {psutil.virtual_memory().total / GIB:.0f} GiB",
               "date": time.strftime("%Y-%m-%d"), "by_images": {}}
    for n in [int(x) for x in a.images.split(",")]:
        bench = Bench(classes, model, n, a.size, a.probe_steps, 1.0, (0.0, 1.0),
                      reuse=any(c.startswith("reuse") for c in configs))
        results["by_images"][n] = measure(bench, configs, a.repeats, mix)
        results["activation_slope_gib_per_image"] = slopes(results["by_images"])
        report(n, results["by_images"][n], a, counted)
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(results, indent=1) + "\n")
    if results["activation_slope_gib_per_image"]:
        print(f"\nactivation growth over N = {a.images} (least squares), GiB per image:")
        for c, s in results["activation_slope_gib_per_image"].items():
            print(f"  {c:20s} {s:9.3g}")
    if a.plot:
        plot(results, a.plot)


def plot(results, path: Path) -> None:
    """Three panels against N: whole-generation time / vanilla, process memory, activation memory."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by = results["by_images"]
    ns = sorted(by, key=int)
    xs = [int(n) for n in ns]
    fig, (time_ax, rss_ax, act_ax) = plt.subplots(1, 3, figsize=(16, 4.6))
    unet = "full-size SDXL UNet" if results["unet"] == "sdxl" else "tiny SDXL-shaped UNet"
    fig.suptitle(f"{unet} (random weights), {results['size']}x{results['size']} px, {results['steps']} steps; "
                 f"{results['device']}, {results['dtype']}, {results['machine'].split(', ')[-1]} RAM; {results['date']}",
                 fontsize=10)
    for c in by[ns[0]]["generation_ratio"]:
        if c != "vanilla":
            time_ax.plot(xs, [by[n]["generation_ratio"][c] for n in ns], "o-", label=c)
    time_ax.axhline(1, color="grey", lw=0.8)
    time_ax.set(xlabel="images N", ylabel="time / vanilla (whole generation)", xticks=xs, title="time against vanilla")
    for c in by[ns[0]]["peak_rss_gib"]:
        rss_ax.plot(xs, [by[n]["peak_rss_gib"][c] for n in ns], "o-", label=c)
    rss_ax.set(xlabel="images N", ylabel="peak resident memory, RSS (GiB)", xticks=xs,
               title="process memory (weights included)")
    vram = "peak_vram_gib" in by[ns[0]]
    for c in by[ns[0]]["peak_activation_gib"]:
        (line,) = act_ax.plot(xs, [by[n]["peak_activation_gib"][c] for n in ns], "o-", label=c)
        if vram:
            act_ax.plot(xs, [by[n]["peak_vram_gib"][c] for n in ns], "--", color=line.get_color())
    act_ax.set(xlabel="images N", ylabel="peak live tensors (GiB)" + ("; dashed: CUDA allocator" if vram else ""),
               xticks=xs, title="activation memory (beyond the weights)")
    for ax in (time_ax, rss_ax, act_ax):
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
