"""Wall-clock cost of sampling with ConsiStory SDSA against vanilla sampling, same run.

Runs the stock sampler on the tiny SDXL-shaped model (random weights) through the real
host, alternating vanilla and SDSA (vanilla, SDSA, vanilla, ...) so machine drift cancels,
and prints the median time per step of each and their ratio.

    .venv/bin/python benchmarks/step_cost.py --images 4 --size 512 --steps 8 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--size", type=int, default=512, help="image side in pixels")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()

    from consistory_run.host import Host
    from consistory_run import tiny_models
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    import torch
    import comfy.sample
    classes = host.nodes.NODE_CLASS_MAPPINGS
    model, clip, _ = tiny_models.TinySDXLCheckpointLoader().load(0)
    scenes = "\n".join(f"scene number {i}" for i in range(a.images))
    cond, subject, n = classes["ConsiStoryStoryPrompts"]().encode(clip, "an old man with a hat", "man, hat", scenes, "a photo of")
    neg = [[clip.encode_from_tokens(clip.tokenize("blurry"), return_pooled=True)[0],
            {"pooled_output": clip.encode_from_tokens(clip.tokenize("blurry"), return_pooled=True)[1]}]]
    (patched,) = classes["ConsiStorySDSA"]().patch(model, subject, 0.5, 0, 0, 0.0, 1.0, "output (paper)")
    latent = torch.zeros(n, 4, a.size // 8, a.size // 8)
    noise = comfy.sample.prepare_noise(latent, 1)

    def sample(m):
        start = time.perf_counter()
        comfy.sample.sample(m, noise, a.steps, 5.0, "euler", "normal", cond, neg, latent,
                            seed=1, disable_pbar=True)
        return (time.perf_counter() - start) / a.steps

    sample(model), sample(patched)  # warm-up
    times = {"vanilla": [], "sdsa": []}
    for _ in range(a.repeats):
        times["vanilla"].append(sample(model))
        times["sdsa"].append(sample(patched))
    ratios = [s / v for s, v in zip(times["sdsa"], times["vanilla"])]
    print(f"tiny SDXL-shaped UNet, {n} images {a.size}x{a.size}, {a.steps} steps, cfg batched, "
          f"median of {a.repeats} interleaved runs")
    for k, v in times.items():
        print(f"  {k:8s} {statistics.median(v) * 1000:8.1f} ms/step")
    print(f"  ratio sdsa/vanilla per step: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
