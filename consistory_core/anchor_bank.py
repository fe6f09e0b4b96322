"""Anchor banks: a subject kept in a file and reused for new prompts (paper §4.4).

New images attend to [self ; anchors]. Instead of the anchors' keys and values per layer
and step (gigabytes at 1024²), a bank keeps what recomputes them exactly: the anchors'
UNet input latents at every sigma of the schedule and their conditioning. Reuse runs the
anchors' rows again beside the new images in the same UNet calls, so the anchors' keys,
values, masks and correspondence features are what they were when the bank was made.
For 2 anchors at 1024² and 50 steps that is 50 x 2 x 4 x 128 x 128 fp32 = 26 MB of
latents plus about 3 MB of conditioning.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

FORMAT = "consistory-anchor-bank"
VERSION = 1


class BankError(ValueError):
    """A bank file or a bank's use does not fit; the message names what differs."""


@dataclass
class AnchorBank:
    """sigmas (S,) float64, descending: every sigma the UNet was called at;
    inputs (S, k, C, h, w): the anchors' UNet input latents at those sigmas;
    conditioning: chunk ("cond" / "uncond") -> {"context": (k, L, D), "y": (k, A)};
    info: JSON-able facts (prompts, subjects, positions, settings, model family, ...)."""
    sigmas: torch.Tensor
    inputs: torch.Tensor
    conditioning: dict
    info: dict = field(default_factory=dict)

    @property
    def anchors(self) -> int:
        return self.inputs.shape[1]

    @property
    def latent_hw(self) -> tuple:
        return tuple(self.inputs.shape[-2:])

    def input_at(self, sigma: float) -> torch.Tensor:
        """The anchors' input latents (k, C, h, w) at ``sigma``; BankError off the schedule."""
        diff = (self.sigmas - sigma).abs()
        i = int(diff.argmin())
        if diff[i] > 1e-5 * max(1.0, abs(sigma)):
            raise BankError(
                f"the sampler asks for sigma {sigma:.6g}, which is not on the schedule the bank was "
                f"made with ({self.info.get('schedule', '?')}: {len(self.sigmas)} sigmas from "
                f"{float(self.sigmas[0]):.6g} to {float(self.sigmas[-1]):.6g}); use the same sampler, "
                "scheduler, steps and denoise")
        return self.inputs[i]

    def check_model(self, model_family: str, context_dim: int) -> None:
        want = (self.info.get("model_family"), self.info.get("context_dim"))
        have = (model_family, context_dim)
        if want != have:
            names = ("model family", "text context width")
            diff = "; ".join(f"{n}: bank {w}, model {h}" for n, w, h in zip(names, want, have) if w != h)
            raise BankError(f"the bank was made with another kind of model ({diff})")

    def check_latent(self, latent_shape: tuple) -> None:
        """latent_shape (C, h, w) of the sampler's latents."""
        channels, *latent_hw = latent_shape
        if channels != self.inputs.shape[2]:
            raise BankError(f"the bank has {self.inputs.shape[2]}-channel latents, this run {channels}")
        if tuple(latent_hw) != self.latent_hw:
            h, w = self.latent_hw
            raise BankError(f"the bank was made at {w * 8}x{h * 8} px (latent {h}x{w}); this run is "
                            f"{latent_hw[1] * 8}x{latent_hw[0] * 8} px: use the bank's size")

    # -- files ---------------------------------------------------------------------------
    def tensors(self) -> dict:
        out = {"sigmas": self.sigmas.double().contiguous(), "inputs": self.inputs.float().contiguous()}
        for chunk, c in self.conditioning.items():
            for name, t in c.items():
                out[f"{chunk}.{name}"] = t.float().contiguous()
        return out

    def metadata(self) -> dict:
        meta = {"format": FORMAT, "version": str(VERSION), "info": json.dumps(self.info, sort_keys=True)}
        for key in ("model_family", "schedule"):
            meta[key] = str(self.info.get(key, ""))
        meta["latent_size"] = "x".join(map(str, self.latent_hw))
        meta["anchors"] = str(self.anchors)
        meta["subject_words"] = json.dumps(self.info.get("subjects", []))
        meta["token_counts"] = json.dumps(self.info.get("token_counts", []))
        return meta

    def save(self, path) -> None:
        from pathlib import Path
        from safetensors.torch import save_file
        Path(path).unlink(missing_ok=True)  # save_file does not shorten an existing file
        save_file(self.tensors(), str(path), metadata=self.metadata())

    @classmethod
    def load(cls, path) -> "AnchorBank":
        from safetensors import safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise BankError(f"{path} is not a ConsiStory anchor bank (no '{FORMAT}' metadata)")
                if int(meta.get("version", "0")) > VERSION:
                    raise BankError(f"{path} is a version {meta['version']} bank; this pack reads up to {VERSION}")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except BankError:
            raise
        except Exception as e:  # safetensors raises its own errors on a truncated or corrupted file
            raise BankError(f"{path} cannot be read as a .safetensors file (truncated or corrupted?): {e}") from None
        try:
            info = json.loads(meta["info"])
            conditioning: dict = {}
            for key, t in tensors.items():
                if "." in key:
                    chunk, name = key.split(".", 1)
                    conditioning.setdefault(chunk, {})[name] = t
            bank = cls(tensors["sigmas"], tensors["inputs"], conditioning, info)
        except (KeyError, ValueError) as e:
            raise BankError(f"{path} is an incomplete anchor bank (missing {e})") from None
        if bank.inputs.shape[0] != bank.sigmas.shape[0] or "cond" not in conditioning:
            raise BankError(f"{path} is an inconsistent anchor bank ({bank.inputs.shape[0]} latents "
                            f"for {bank.sigmas.shape[0]} sigmas)")
        return bank
