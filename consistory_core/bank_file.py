"""Anchor banks: a subject kept in a file and reused for new prompts (paper §4.4).

New images attend to [self ; anchors]. Instead of the anchors' keys and values per layer
and step (gigabytes at 1024²), a bank keeps what recomputes them exactly: the anchors'
UNet input latents at every model evaluation of the sampler, in the order it made them,
and their conditioning. Reuse runs the anchors' rows again beside the new images in the
same UNet calls, so the anchors' keys, values, masks and correspondence features are what
they were when the bank was made. For 2 anchors at 1024² and 50 one-evaluation steps that
is 50 x 2 x 4 x 128 x 128 fp32 = 26 MB of latents plus about 3 MB of conditioning (twice
the latents for samplers that evaluate twice per step, such as heun).

Format 2 keeps one entry per evaluation (a sampler may evaluate twice at one sigma with
other inputs: heun's correction, then the next step). Format 1 kept one entry per sigma,
descending: that is the evaluation order of every one-evaluation sampler, so format-1
files read as format 2 unchanged. Format 3 adds banks made from photos (origin "photo":
the inputs are an edit-friendly inversion, consistory_core.inversion) and, optionally, the
anchors' subject masks given by the user (tensor ``subject_masks``, (k, h, w) in [0, 1]).
A bank is written in the lowest format that holds it, so a generated bank stays format 2
and older versions of the pack keep reading it.

The file is a .safetensors file. Its metadata holds ``format``, ``version`` and ``info``
(the JSON of a ``BankDescription``), plus a summary for people and file browsers
(model family, schedule, latent size, anchors, subject words, token counts) that is
written from the description and checked against it and the tensors on load.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import torch

from .settings import MaskSettings, SettingsError, SharingSettings, check_version

FORMAT = "consistory-anchor-bank"
FINGERPRINT_OF = "checkpoint and weight patches"
VERSION = 3  # 1: one entry per sigma (the first release); 2: one entry per model evaluation; 3: photo banks
ORIGINS = ("generated", "photo")


class BankError(ValueError):
    """A bank file or a bank's use does not fit; the message names what differs."""


@dataclass(frozen=True)
class BankDescription:
    """What a bank's anchors are: their prompts and subject tokens, the sharing settings
    they were made with, and the model and schedule they need.

    positions[i][k]: token positions of subject word k in anchor prompt i (a context of
    token_length tokens); word_subject[k]: the subject of word k; subjects[s] = (text, words).
    """
    prompts: tuple
    subjects: tuple
    positions: tuple
    word_subject: tuple
    token_length: int
    sharing: SharingSettings = field(default_factory=SharingSettings)
    schedule: str = ""
    model_family: str = ""
    context_dim: int = 0
    model_fingerprint: str = ""  # weights and weight patches (LoRAs); "" in format-1 banks
    model_patches: str = ""      # the same for people: "none", "264 weights patched, strengths 0.8"
    # what model_fingerprint hashes: FINGERPRINT_OF (the checkpoint's weights and the patcher's record
    # of its LoRAs); "" in older banks (the weights as they were loaded, LoRAs written into them)
    fingerprint_of: str = ""
    method: dict = field(default_factory=dict)  # {"blend": settings or None, "injection": settings or None}
    origin: str = "generated"  # "photo": the anchors are inverted photos (format 3)

    @property
    def anchors(self) -> int:
        return len(self.prompts)

    def to_json(self) -> dict:
        """The ``info`` JSON (sharing settings flat under "settings", as in format 1)."""
        s = self.sharing
        settings = {"dropout": s.dropout, "dropout_seed": s.dropout_seed, "anchors": s.anchors,
                    "start_percent": s.start_percent, "end_percent": s.end_percent, "blocks": s.blocks,
                    "window": s.masks.window, "resolution": s.masks.resolution,
                    "threshold_scale": s.masks.threshold_scale}
        return {"prompts": list(self.prompts), "subjects": [[t, list(w)] for t, w in self.subjects],
                "positions": [[list(p) for p in words] for words in self.positions],
                "word_subject": list(self.word_subject), "token_length": self.token_length,
                "settings": settings, "schedule": self.schedule, "model_family": self.model_family,
                "context_dim": self.context_dim, "model_fingerprint": self.model_fingerprint,
                "model_patches": self.model_patches, "method": self.method,
                **({"fingerprint_of": self.fingerprint_of} if self.fingerprint_of else {}),
                **({"origin": self.origin} if self.origin != "generated" else {})}

    @classmethod
    def from_json(cls, info: dict, version: int = VERSION) -> "BankDescription":
        """Reads the ``info`` of a bank of format ``version`` (1 .. VERSION)."""
        check_version("anchor bank", version, VERSION)
        s = info["settings"]
        sharing = SharingSettings(
            dropout=s["dropout"], dropout_seed=s["dropout_seed"], anchors=s.get("anchors", 0),
            start_percent=s["start_percent"], end_percent=s["end_percent"], blocks=s["blocks"],
            masks=MaskSettings(window=s["window"], resolution=s["resolution"],
                               threshold_scale=s["threshold_scale"]))
        return cls(prompts=tuple(info["prompts"]),
                   subjects=tuple((t, tuple(w)) for t, w in info["subjects"]),
                   positions=tuple(tuple(tuple(p) for p in words) for words in info["positions"]),
                   word_subject=tuple(info["word_subject"]), token_length=int(info["token_length"]),
                   sharing=sharing, schedule=info.get("schedule", ""),
                   model_family=info.get("model_family", ""), context_dim=int(info.get("context_dim", 0)),
                   model_fingerprint=info.get("model_fingerprint", ""), model_patches=info.get("model_patches", ""),
                   fingerprint_of=info.get("fingerprint_of", ""),
                   method=info.get("method") or {}, origin=info.get("origin", "generated"))


@dataclass
class AnchorBank:
    """sigmas (E,) float64: the sigma of each model evaluation of the sampler, in its order
    (falling; a sigma repeats where the sampler evaluated twice at it);
    inputs (E, k, C, h, w): the anchors' UNet input latents of those evaluations;
    conditioning: chunk ("cond" / "uncond") -> {"context": (k, L, D), "y": (k, A)};
    description: what the anchors are and how they were made;
    subject_masks (k, h, w) in [0, 1]: the anchors' subject masks where a user gave them
    (photo banks), else None (the masks come from cross-attention when the bank is used)."""
    sigmas: torch.Tensor
    inputs: torch.Tensor
    conditioning: dict
    description: BankDescription
    passes: torch.Tensor | None = None  # (E,) 0 / 1: the pass of each evaluation (two-pass injection)
    subject_masks: torch.Tensor | None = None
    source: str | None = field(default=None, compare=False)  # the file it was loaded from, if any

    @property
    def format_version(self) -> int:
        """The lowest format that holds this bank."""
        return 3 if self.description.origin != "generated" or self.subject_masks is not None else 2

    def evaluations(self, second_pass: bool | None) -> list:
        """The bank's evaluation indices of one pass (None or a one-pass bank: all of them)."""
        if self.passes is None or second_pass is None:
            return list(range(len(self.sigmas)))
        return (self.passes == int(second_pass)).nonzero().squeeze(1).tolist()

    @property
    def anchors(self) -> int:
        return self.inputs.shape[1]

    @property
    def latent_hw(self) -> tuple:
        return tuple(self.inputs.shape[-2:])

    def is_at(self, index: int, sigma: float) -> bool:
        """Whether evaluation ``index`` of the bank was at ``sigma``."""
        return 0 <= index < len(self.sigmas) and \
            abs(float(self.sigmas[index]) - sigma) <= 1e-5 * max(1.0, abs(sigma))

    def mismatch(self, index: int, sigma: float, place: int | None = None) -> BankError:
        """The error for a sampler whose evaluation ``index`` of the bank (the ``place``-th of
        its pass) is at ``sigma`` where the bank's is not."""
        number = (index if place is None else place) + 1
        if index >= len(self.sigmas):
            where = f"the bank has only {number - 1}"
        else:
            where = f"the bank's is at sigma {float(self.sigmas[index]):.6g}"
        return BankError(
            f"the sampler's model evaluation {number} is at sigma {sigma:.6g}; {where}: the bank was made "
            f"with another sampler or schedule ({self.description.schedule or '?'}); use the bank's sampler, "
            "scheduler, steps and denoise")

    def check_model(self, model_family: str, context_dim: int, model_fingerprint: str = "",
                    model_patches: str = "", fingerprint_of: str = "") -> None:
        d = self.description
        want = (d.model_family, d.context_dim)
        have = (model_family, context_dim)
        if want != have:
            names = ("model family", "text context width")
            diff = "; ".join(f"{n}: bank {w}, model {h}" for n, w, h in zip(names, want, have) if w != h)
            raise BankError(f"the bank was made with another kind of model ({diff})")
        if d.model_fingerprint and model_fingerprint and d.model_fingerprint != model_fingerprint:
            if not d.fingerprint_of and d.model_patches not in ("", "none") and d.model_patches == model_patches:
                # an older bank made with LoRAs hashed them written into the weights: its weights
                # cannot be compared with the checkpoint's; its LoRAs' count and strengths can
                logging.info(f"anchor bank: made by an older version with LoRAs ({d.model_patches}); "
                             "the same LoRAs and strengths are on this model, the checkpoint is not checked")
                return
            raise BankError(f"the bank was made with other model weights or LoRAs (bank: weights "
                            f"{d.model_fingerprint}, patches: {d.model_patches or '?'}; this model: weights "
                            f"{model_fingerprint}, patches: {model_patches}); use the bank's checkpoint and LoRAs "
                            "at the same strengths")

    def check_method(self, method: dict, first_pass: bool = False) -> None:
        """Query Blend's and Feature Injection's settings of the reuse, against the bank's (of
        its first pass, for a two-pass bank's first pass; format-1 banks did not record them).
        A photo bank's anchors do not depend on them: any settings go."""
        if not self.description.method or self.description.origin == "photo":
            return
        want = self.description.method.get("first_pass") if first_pass else self.description.method
        names = {"blend": "ConsiStory Query Blend", "injection": "ConsiStory Feature Injection"}
        for part, name in names.items():
            wanted, have = want.get(part), method.get(part)
            if wanted != have:
                said = lambda v: "not used" if v is None else \
                    ", ".join(f"{k} {v[k]}" for k in sorted(v) if k != "version")
                raise BankError(f"the bank's anchors were made with {name} {said(wanted)}; this run has it "
                                f"{said(have)}: use the same {name} settings as when the bank was made")

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
        if self.passes is not None:
            out["passes"] = self.passes.long().contiguous()
        if self.subject_masks is not None:
            out["subject_masks"] = self.subject_masks.float().contiguous()
        for chunk, c in self.conditioning.items():
            for name, t in c.items():
                out[f"{chunk}.{name}"] = t.float().contiguous()
        return out

    def metadata(self) -> dict:
        d = self.description
        return {"format": FORMAT, "version": str(self.format_version), "info": json.dumps(d.to_json(), sort_keys=True),
                "model_family": d.model_family, "schedule": d.schedule,
                "latent_size": "x".join(map(str, self.latent_hw)), "anchors": str(self.anchors),
                "subject_words": json.dumps([[t, list(w)] for t, w in d.subjects]),
                "token_counts": json.dumps([d.token_length] * d.anchors)}

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
                version = int(meta.get("version", "0"))
                if version > VERSION:
                    raise BankError(f"{path} is a format version {version} bank; this version of "
                                    f"comfyui-consistory reads format versions up to {VERSION}: update the pack")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except BankError:
            raise
        except Exception as e:  # safetensors raises its own errors on a truncated or corrupted file
            raise BankError(f"{path} cannot be read as a .safetensors file (truncated or corrupted?): {e}") from None
        try:
            description = BankDescription.from_json(json.loads(meta["info"]), version)
            conditioning: dict = {}
            for key, t in tensors.items():
                if "." in key:
                    chunk, name = key.split(".", 1)
                    conditioning.setdefault(chunk, {})[name] = t
            bank = cls(tensors["sigmas"], tensors["inputs"], conditioning, description, tensors.get("passes"),
                       tensors.get("subject_masks"))
        except SettingsError as e:
            raise BankError(f"{path}: {e}") from None
        except (KeyError, ValueError, TypeError) as e:
            raise BankError(f"{path} is an incomplete anchor bank (missing {e})") from None
        if bank.inputs.shape[0] != bank.sigmas.shape[0] or "cond" not in conditioning:
            raise BankError(f"{path} is an inconsistent anchor bank ({bank.inputs.shape[0]} latents "
                            f"for {bank.sigmas.shape[0]} sigmas)")
        summary = {"anchors": str(bank.anchors), "latent_size": "x".join(map(str, bank.latent_hw))}
        for key, value in summary.items():
            if key in meta and meta[key] != value:
                raise BankError(f"{path} is an inconsistent anchor bank (its header says {key} {meta[key]}, "
                                f"its tensors {value})")
        if description.origin not in ORIGINS:
            raise BankError(f"{path} is an anchor bank of unknown origin {description.origin!r}")
        masks = bank.subject_masks
        if masks is not None and (masks.ndim != 3 or masks.shape[0] != bank.anchors):
            raise BankError(f"{path} is an inconsistent anchor bank (subject masks {tuple(masks.shape)} "
                            f"for {bank.anchors} anchors)")
        if bank.anchors != description.anchors:
            raise BankError(f"{path} is an inconsistent anchor bank ({bank.anchors} anchor latents for "
                            f"{description.anchors} anchor prompts)")
        bank.source = str(path)
        return bank
