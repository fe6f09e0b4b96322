"""ConsiStory Anchor Bank: the anchors of a finished run, as a bank new images can reuse
(paper §4.4; what a bank holds: consistory_core.anchor_bank)."""
from __future__ import annotations

import torch

from ..consistory_core.anchor_bank import AnchorBank
from .unet_wrappers import chained, phase_of, story_run

BANK_TYPE = "CONSISTORY_BANK"
CHUNK_NAMES = {0: "cond", 1: "uncond"}


def record_anchors(m, run, anchors: int) -> None:
    """A UNet wrapper (chaining the one already there) that keeps, for the sampler's own
    calls, the first ``anchors`` images' input latents per sigma and their conditioning."""
    previous = chained(m.model_options)

    def wrapper(apply_model, args):
        if phase_of(args) is None:
            sigma = run.sync(args["timestep"])
            x, order = args["input"], list(args["cond_or_uncond"])
            images = x.shape[0] // len(order)
            if sigma not in run.anchor_inputs:
                run.anchor_inputs[sigma] = x[:anchors].detach().clone()
            for c, kind in enumerate(order):
                name = CHUNK_NAMES.get(kind)
                if name and name not in run.anchor_conditioning:
                    rows = slice(c * images, c * images + anchors)
                    run.anchor_conditioning[name] = {key: args["c"][key][rows].detach().clone()
                                                     for key in ("c_crossattn", "y") if key in args["c"]}
        return previous(apply_model, args)

    m.set_model_unet_function_wrapper(wrapper)
    run.config["recorded_anchors"] = anchors


def model_facts(model) -> dict:
    config = model.model.model_config
    return {"model_family": type(config).__name__,
            "context_dim": int(config.unet_config.get("context_dim") or 0)}


class MakeAnchorBank:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The ConsiStory SDSA model (anchors > 0) the sampler used."}),
            "samples": ("LATENT", {"tooltip": "That sampler's output: makes this node run after it."}),
        }}

    RETURN_TYPES = (BANK_TYPE,)
    RETURN_NAMES = ("bank",)
    FUNCTION = "make"
    CATEGORY = "ConsiStory"
    DESCRIPTION = ("After a sampler run with anchors: what new prompts need to share those anchors' "
                   "subject later (save it with ConsiStory Save Anchor Bank, reuse it with Use Anchors).")

    def make(self, model, samples):
        run = story_run(model, "ConsiStory Anchor Bank")
        k = run.config.get("recorded_anchors")
        if not k:
            raise ValueError("ConsiStory Anchor Bank: the SDSA node has anchors = 0; set anchors to the "
                             "number of images that define the subject (e.g. 2)")
        if not run.anchor_inputs or "cond" not in run.anchor_conditioning:
            raise ValueError("ConsiStory Anchor Bank: nothing recorded; connect the output of a sampler "
                             "that used this model")
        sigmas = sorted(run.anchor_inputs, reverse=True)
        subject = run.subject
        info = {"prompts": list(subject.prompts[:k]), "subjects": [[s, list(w)] for s, w in subject.subjects],
                "positions": [[list(p) for p in words] for words in subject.positions[:k]],
                "word_subject": list(subject.word_subject), "token_length": subject.token_length,
                "token_counts": [subject.token_length] * k, "settings": dict(run.config),
                "latent_channels": int(samples["samples"].shape[1]),
                "schedule": f"{len(sigmas)} model calls from sigma {sigmas[0]:.6g} to {sigmas[-1]:.6g}",
                **model_facts(model)}
        conditioning = {name: {"context": c["c_crossattn"], "y": c["y"]} if "y" in c else {"context": c["c_crossattn"]}
                        for name, c in run.anchor_conditioning.items()}
        bank = AnchorBank(torch.tensor(sigmas, dtype=torch.float64),
                          torch.stack([run.anchor_inputs[s].cpu() for s in sigmas]),
                          {n: {k2: t.cpu() for k2, t in c.items()} for n, c in conditioning.items()}, info)
        return (bank,)
