"""Cost of ConsiStory configurations against vanilla sampling, measured in one run.

The stock sampler runs on an SDXL-shaped UNet with random weights (``--unet tiny``, or
``--unet sdxl`` for the full-size SDXL config) through the real ComfyUI host, with
per-image conditioning of the model's shapes. Each repeat runs every configuration in
turn (vanilla, SDSA, ..., vanilla first) so machine drift cancels in the ratios; the
median over repeats is printed, with UNet calls counted by a wrapper on the model.

    .venv/bin/python benchmarks/method_cost.py --images 4 --size 256 --steps 50 --repeats 3
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

CONFIGS = ["vanilla", "sdsa", "sdsa+blend", "sdsa+blend+inject(fast)", "sdsa+blend+inject(exact)",
           "2 anchors + N in one batch", "N reusing 2 anchors (bank)"]
ANCHORS = 2


def story_subject(classes, n: int):
    from consistory_testing.pack import synthetic_story
    return synthetic_story(classes, n)


def build(args):
    """(host node classes, base model, positive, negative, latent, noise) for N + 2 images;
    the first 2 rows are the anchors of the anchor configurations."""
    import torch
    from consistory_testing import tiny_models
    from consistory_run.host import Host
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    classes = host.nodes.NODE_CLASS_MAPPINGS
    if args.unet == "tiny":
        model = tiny_models.tiny_sdxl_unet(0)
    else:
        import comfy.supported_models
        config = dict(tiny_models.TINY_UNET, model_channels=320, transformer_depth=[0, 0, 2, 2, 10, 10],
                      transformer_depth_middle=10, transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10],
                      context_dim=2048, adm_in_channels=2816, num_res_blocks=[2, 2, 2], channel_mult=[1, 2, 4])
        model = tiny_models.tiny_sdxl_unet(0, config)
    unet_config = model.model.model_config.unet_config
    ctx, pooled = unet_config["context_dim"], unet_config["adm_in_channels"] - 6 * 256
    gen = torch.Generator().manual_seed(0)
    n = args.images + ANCHORS
    positive = [[torch.randn(n, 77, ctx, generator=gen), {"pooled_output": torch.randn(n, pooled, generator=gen)}]]
    negative = [[torch.randn(1, 77, ctx, generator=gen), {"pooled_output": torch.randn(1, pooled, generator=gen)}]]
    latent = torch.zeros(n, 4, args.size // 8, args.size // 8)
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent, 1)
    return classes, model, positive, negative, latent, noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unet", choices=["tiny", "sdxl"], default="tiny")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args()
    a.json = a.json.resolve() if a.json else None  # the host changes directory
    configs = a.configs.split(",")

    classes, base, positive_all, negative, latent_all, noise_all = build(a)
    import comfy.sample
    import torch
    from consistory_testing.pack import run_node
    from consistory_testing.probes import ChunkRecorder
    k, n = ANCHORS, a.images
    rows = lambda cond, r: [[cond[0][0][r], {"pooled_output": cond[0][1]["pooled_output"][r]}]]
    positive, latent, noise = rows(positive_all, slice(k, None)), latent_all[k:], noise_all[k:]
    (counted,) = ChunkRecorder().patch(base)
    sdsa_node = classes["ConsiStorySDSA"]
    (sdsa,) = run_node(sdsa_node, counted, story_subject(classes, n), 0.5, 0, 0, 0.0, 1.0, "output (paper)")
    (blend,) = run_node(classes["ConsiStoryQueryBlend"], sdsa, 0.9, 0.81836735, 0.1)
    (fast,) = run_node(classes["ConsiStoryFeatureInjection"], blend, 0.8, 0.1, 0.33, 261, 0)

    def sample(m, pos=positive, lat=latent, noi=noise):
        return comfy.sample.sample(m, noi, a.steps, 5.0, "ddim", "ddim_uniform", pos, negative,
                                   lat, seed=1, disable_pbar=True)

    (in_batch,) = run_node(sdsa_node, counted, story_subject(classes, k + n), 0.5, 0, k, 0.0, 1.0, "output (paper)")
    (anchors_only,) = run_node(sdsa_node, counted, story_subject(classes, k), 0.5, 0, k, 0.0, 1.0, "output (paper)")
    first = sample(anchors_only, rows(positive_all, slice(0, k)), latent_all[:k], noise_all[:k])
    (bank,) = run_node(classes["ConsiStoryAnchorBank"], anchors_only, {"samples": first})
    (reuse,) = run_node(classes["ConsiStoryUseAnchors"], counted, bank, story_subject(classes, n), False)

    def exact():
        first = sample(blend)
        (features,) = run_node(classes["ConsiStoryCollectFeatures"], blend, {"samples": first})
        (second,) = run_node(classes["ConsiStoryFeatureInjection"], blend, 0.8, 0.1, 0.33, 261, 0, features)
        return sample(second)

    runs = {"vanilla": lambda: sample(counted), "sdsa": lambda: sample(sdsa),
            "sdsa+blend": lambda: sample(blend), "sdsa+blend+inject(fast)": lambda: sample(fast),
            "sdsa+blend+inject(exact)": exact,
            "2 anchors + N in one batch": lambda: sample(in_batch, positive_all, latent_all, noise_all),
            "N reusing 2 anchors (bank)": lambda: sample(reuse)}
    seconds = {c: [] for c in configs}
    calls = {}
    with torch.inference_mode():
        runs["vanilla"]()  # warm-up
        for _ in range(a.repeats):
            for c in configs:
                ChunkRecorder.calls.clear()
                start = time.perf_counter()
                runs[c]()
                seconds[c].append(time.perf_counter() - start)
                calls[c] = len(ChunkRecorder.calls)
    result = {"unet": a.unet, "images": n, "bank_bytes": sum(t.numel() * t.element_size() for t in bank.tensors().values()), "size": a.size, "steps": a.steps, "repeats": a.repeats,
              "sampler": "ddim/ddim_uniform, cfg 5 (cond+uncond in one call)", "configs": {}}
    print(f"{a.unet} SDXL-shaped UNet (random weights), {a.images} images {a.size}x{a.size}, {a.steps} steps, "
          f"median of {a.repeats} interleaved repeats")
    print(f"  {'configuration':28s} {'UNet calls':>10s} {'s/generation':>13s} {'x vanilla':>10s}")
    for c in configs:
        ratios = [s / v for s, v in zip(seconds[c], seconds["vanilla"])] if "vanilla" in seconds else [float("nan")]
        med = statistics.median(seconds[c])
        result["configs"][c] = {"unet_calls": calls[c], "seconds_median": med, "ratio_median": statistics.median(ratios),
                                "ratio_min": min(ratios), "ratio_max": max(ratios)}
        print(f"  {c:28s} {calls[c]:10d} {med:13.2f} {statistics.median(ratios):10.3f}"
              f"  (ratio min {min(ratios):.3f}, max {max(ratios):.3f})")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
