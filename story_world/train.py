"""Train the story world's UNet on this CPU: ``python -m story_world.train --out PATH``.

Data are drawn on the fly from the world (``world.random_spec`` -> ``render`` ->
``latent_map.encode``). Objective: epsilon prediction on the host's discrete SDXL schedule
(1000 steps, scaled-linear betas), called exactly as the host's ``BaseModel.apply_model``
calls the UNet: input ``(x0 + sigma * eps) / sqrt(sigma^2 + 1)``, timestep
``model_sampling.timestep(sigma)``, ``context`` = the text encoder's output, ``y`` =
pooled text + size embedding from the host's own ``encode_adm`` at 256 x 256. Loss: MSE on
eps. 10% of the samples get the empty prompt (for CFG).
AdamW, warm-up then cosine decay over ``--steps`` or ``--minutes`` of training, whichever
runs out first (so the schedule ends annealed on a slow or busy machine); bf16 autocast; an
EMA of the weights is what is saved (fp16, every ``--save-minutes`` and at the end).

Threads: on a 2-core machine shared with other jobs, 2 OpenMP threads can be 10x slower
than 1 (spin-waiting on a busy core), and 1.7x faster when the machine is free; the loop
times both from time to time and uses the faster (``ThreadChooser``).
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

UNCOND_PROBABILITY = 0.1


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    p.add_argument("--steps", type=int, default=20000, help="at most this many steps")
    p.add_argument("--minutes", type=float, default=72.0, help="at most this long (training loop)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="at most this many torch threads")
    p.add_argument("--save-minutes", type=float, default=10.0)
    p.add_argument("--log-every", type=int, default=50)
    return p.parse_args(argv)


class PromptTable:
    """Context (P, 77, 64) and y (P, 1568) of every world prompt, computed once (the text
    encoder is frozen)."""

    def __init__(self, model, clip, prompts: list[str]):
        from .model import encode_text, size_conditioning
        encoded = [encode_text(clip, p) for p in prompts]
        self.index = {p: i for i, p in enumerate(prompts)}
        self.context = torch.cat([c for c, _ in encoded])
        self.y = size_conditioning(model, torch.cat([q for _, q in encoded])).float()


def _batch(rng: np.random.Generator, table: PromptTable, size: int):
    """(x0 (B, 4, 32, 32), context (B, 77, 64), y (B, 1568)) of freshly drawn world images."""
    from .latent_map import encode
    from .render import render
    from .world import random_spec
    specs = [random_spec(rng) for _ in range(size)]
    x0 = encode(np.stack([render(s)[0] for s in specs]))
    rows = torch.tensor([table.index["" if rng.random() < UNCOND_PROBABILITY else s.prompt] for s in specs])
    return x0, table.context[rows], table.y[rows]


def unet_input(model, x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor):
    """(x_in (B, 4, h, w), timestep (B,)): what the host's ``apply_model`` hands the UNet for
    the noisy latent ``x0 + sigma * eps`` at noise level sigma (B,)."""
    ms = model.model_sampling
    return ms.calculate_input(sigma, x0 + sigma[:, None, None, None] * eps), ms.timestep(sigma).float()


def diffusion_loss(model, x0, context, y, gen: torch.Generator) -> torch.Tensor:
    """Eps MSE at uniform random timesteps (the plain DDPM loss SDXL was trained with). No
    down-weighting of the nearly clean steps (min-SNR): they are where a small model learns
    to remove the last of the noise."""
    ms = model.model_sampling
    sigma = ms.sigmas[torch.randint(0, len(ms.sigmas), (x0.shape[0],), generator=gen)]
    eps = torch.randn(x0.shape, generator=gen)
    x_in, timestep = unet_input(model, x0, eps, sigma)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = model.diffusion_model(x_in, timestep, context=context, y=y)
    return (pred.float() - eps).pow(2).mean()


def _lr(step: int, elapsed: float, args) -> float:
    """Linear warm-up, then cosine from lr to lr/10 over the steps or minutes left."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, max((step - args.warmup) / max(1, args.steps - args.warmup), elapsed / (args.minutes * 60)))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class ThreadChooser:
    """Picks the faster of 1..max_threads torch threads as the machine's load changes: keeps
    a smoothed time per step for each count, and every ``every`` steps runs ``probe`` steps
    with each other count to refresh its time."""

    def __init__(self, max_threads: int, every: int = 50, probe: int = 3):
        self.counts = list(range(1, max_threads + 1))
        self.every, self.probe = every, probe
        self.best, self.seconds = self.counts[-1], {}

    def threads_for(self, step: int) -> int:
        others = [c for c in self.counts if c != self.best]
        slot = (step % self.every) // self.probe
        return others[slot] if slot < len(others) else self.best

    def record(self, threads: int, seconds: float) -> None:
        old = self.seconds.get(threads)
        self.seconds[threads] = seconds if old is None else 0.7 * old + 0.3 * seconds
        self.best = min(self.seconds, key=self.seconds.get)


def train(args) -> None:
    from .model import build_sdxl, build_text_encoder, init_unet, save_weights
    from .world import all_prompts
    torch.manual_seed(args.seed)
    model = build_sdxl()
    unet = model.diffusion_model
    init_unet(unet, args.seed)
    unet.train().requires_grad_(True)
    clip = build_text_encoder()
    table = PromptTable(model, clip, all_prompts())
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    rng, gen = np.random.default_rng(args.seed), torch.Generator().manual_seed(args.seed)
    n_params = sum(p.numel() for p in unet.parameters())
    print(f"UNet parameters: {n_params:,}; prompts: {len(table.index)}; steps: {args.steps}, "
          f"batch {args.batch}, max {args.minutes} min", flush=True)
    threads = ThreadChooser(args.threads)
    start = last_save = time.time()
    running, step = None, 0

    def save(final: bool):
        info = {"steps": step, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                "minutes": round((time.time() - start) / 60, 1), "loss": round(running or 0.0, 5),
                "final": final}
        save_weights(args.out, ema, clip, info)

    # The host's transformer blocks add residuals in place (x += n), which autograd refuses
    # for tensors it saved; saving copies makes the unchanged host module trainable.
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: t):
        while step < args.steps and time.time() - start < args.minutes * 60:
            torch.set_num_threads(threads.threads_for(step))
            began = time.time()
            for group in opt.param_groups:
                group["lr"] = _lr(step, began - start, args)
            loss = diffusion_loss(model, *_batch(rng, table, args.batch), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            decay = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema.parameters(), unet.parameters()):
                    e.lerp_(p, 1 - decay)
            if step > 0:  # the first step also allocates
                threads.record(torch.get_num_threads(), time.time() - began)
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            elapsed = time.time() - start
            if step % args.log_every == 0 or step == args.steps:
                per_step = elapsed / step
                left = min(per_step * (args.steps - step), args.minutes * 60 - elapsed)
                print(f"step {step} loss {running:.4f} lr {group['lr']:.2e} {per_step:.2f} s/step "
                      f"threads {threads.best} elapsed {elapsed / 60:.1f} min left {left / 60:.1f} min",
                      flush=True)
            if time.time() - last_save > args.save_minutes * 60:
                save(final=False)
                last_save = time.time()
    save(final=True)
    print(f"saved {args.out} after {step} steps, {(time.time() - start) / 60:.1f} min", flush=True)


def main(argv=None) -> None:
    args = _parse(argv)
    args.out = args.out.expanduser().resolve()  # the host changes directory
    repo = str(Path(__file__).resolve().parent.parent)
    if repo not in sys.path:
        sys.path.append(repo)
    from consistory_run.host import Host
    Host.start()
    train(args)


if __name__ == "__main__":
    main()
