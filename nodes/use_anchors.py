"""ConsiStory Use Anchors: new prompts that share the subject of a saved anchor bank
(paper §4.4). The anchors' rows are replayed from the bank beside the new images in every
UNet call, so new images attend to [self ; anchors] exactly as in one batch with them."""
from __future__ import annotations

import math

import torch

from ..consistory_core import repeated_positions
from ..consistory_core.anchor_bank import BankError
from ..consistory_core.correspondence import image_noise
from .anchor_bank import BANK_TYPE, CHUNK_NAMES, model_facts
from .story_patch import story_model
from .story_run import DIFT_NOISE_SEED_KEY
from .story_types import SUBJECT_TYPE, MaskSettings, StorySubject
from .unet_wrappers import chained, phase_of


def with_anchors(bank, subject: StorySubject) -> StorySubject:
    """The story of [anchors ; new prompts] (same subject words required)."""
    words = [[s, list(w)] for s, w in subject.subjects]
    if [w for _, w in words] != [w for _, w in bank.info["subjects"]]:
        raise BankError(f"the bank's subject words are {[w for _, w in bank.info['subjects']]}, the new "
                        f"prompts' are {[w for _, w in words]}; use the same subject words")
    own, new = bank.info["token_length"], subject.token_length
    length = math.lcm(own, new)
    anchors = tuple(tuple(tuple(repeated_positions(p, own, length)) for p in w) for w in bank.info["positions"])
    news = tuple(tuple(tuple(repeated_positions(p, new, length)) for p in w) for w in subject.positions)
    return StorySubject(prompts=tuple(bank.info["prompts"]) + subject.prompts, subjects=subject.subjects,
                        positions=anchors + news, word_subject=subject.word_subject, token_length=length)


def reuse_mapping(anchors: int, new: int, share_new: bool) -> torch.Tensor:
    """Anchors see each other; new images see the anchors (and each other if share_new)."""
    n = anchors + new
    share = torch.zeros(n, n, dtype=torch.bool)
    share[:anchors, :anchors] = True
    share[anchors:, :anchors] = True
    if share_new:
        share[anchors:, anchors:] = True
    share.fill_diagonal_(False)
    return share


def _repeat_tokens(t: torch.Tensor, length: int) -> torch.Tensor:
    return t.repeat(1, length // t.shape[1], 1)


def replay_wrapper(bank, previous):
    """Puts the anchors' rows in front of each chunk of every UNet call, drops them from the output."""
    k = bank.anchors
    last_x0 = {}  # the anchors' latest denoised prediction (cond chunk), for "dift" passes

    def wrapper(apply_model, args):
        x, order = args["input"], list(args["cond_or_uncond"])
        m = x.shape[0] // len(order)
        if phase_of(args) == "dift":
            seed = args["c"]["transformer_options"][DIFT_NOISE_SEED_KEY]
            sigma = float(args["timestep"][0])
            anchors_x = last_x0["x0"] + sigma * image_noise(seed, tuple(x.shape[1:]), k).to(x)
        else:
            bank.check_latent(tuple(x.shape[1:]))
            anchors_x = bank.input_at(float(args["timestep"][0])).to(x)
        conds = []
        for kind in order:
            name = CHUNK_NAMES.get(kind)
            if name not in bank.conditioning:
                raise BankError(f"the bank has no {name} conditioning (made with CFG 1?); sample with the "
                                "bank's CFG setting")
            conds.append(bank.conditioning[name])
        c = dict(args["c"])
        for key in list(c):
            value = c[key]
            if key in ("c_crossattn", "y", "transformer_options", "control") or not torch.is_tensor(value):
                continue
            if value.shape[0] == x.shape[0]:
                raise BankError(f"Use Anchors cannot replay the anchors with the conditioning {key!r}")
        context = c["c_crossattn"]
        length = math.lcm(context.shape[1], *[cd["context"].shape[1] for cd in conds])
        rows = lambda i: slice(i * m, (i + 1) * m)
        c["c_crossattn"] = torch.cat([t for i, cd in enumerate(conds) for t in (
            _repeat_tokens(cd["context"].to(context), length), _repeat_tokens(context[rows(i)], length))])
        if "y" in c:
            c["y"] = torch.cat([t for i, cd in enumerate(conds) for t in (cd["y"].to(c["y"]), c["y"][rows(i)])])
        if c.get("control") is not None:
            c["control"] = {part: [None if t is None else torch.cat(
                [u for i in range(len(order)) for u in (torch.zeros_like(t[rows(i)][:1]).expand(k, *t.shape[1:]),
                                                        t[rows(i)])]) for t in tensors]
                for part, tensors in c["control"].items()}
        x_ext = torch.cat([t for i in range(len(order)) for t in (anchors_x, x[rows(i)])])
        t_ext = args["timestep"][:1].expand(x_ext.shape[0]).contiguous()
        out = previous(apply_model, {**args, "input": x_ext, "timestep": t_ext, "c": c})
        if phase_of(args) is None and 0 in order:
            start = order.index(0) * (k + m)
            last_x0["x0"] = out[start:start + k].detach()
        return torch.cat([out[i * (k + m) + k:(i + 1) * (k + m)] for i in range(len(order))])

    return wrapper


class UseAnchors:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The SDXL model the bank was made with (not patched by SDSA)."}),
            "bank": (BANK_TYPE, {"tooltip": "From ConsiStory Load Anchor Bank (or Anchor Bank)."}),
            "subject": (SUBJECT_TYPE, {"tooltip": "The new prompts, from ConsiStory Story Prompts, with the "
                        "bank's subject words."}),
            "share_new": ("BOOLEAN", {"default": False, "tooltip": "Also share the subject among the new "
                          "images (the paper: off; each new image sees itself and the anchors)."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "ConsiStory"
    DESCRIPTION = ("Generates any batch of new prompts with the subject of a saved anchor bank. Sample "
                   "with the bank's size, sampler, scheduler and steps; the new prompts' noise is "
                   "independent of the anchors.")

    def patch(self, model, bank, subject, share_new):
        bank.check_model(**model_facts(model))
        story = with_anchors(bank, subject)
        s = bank.info["settings"]
        settings = MaskSettings(window=s["window"], resolution=s["resolution"], threshold_scale=s["threshold_scale"])
        m, run = story_model(model, story, settings, dropout=s["dropout"], dropout_seed=s["dropout_seed"],
                             share=reuse_mapping(bank.anchors, subject.images, share_new),
                             start_percent=s["start_percent"], end_percent=s["end_percent"],
                             blocks=s["blocks"], replayed=bank.anchors)
        m.set_model_unet_function_wrapper(replay_wrapper(bank, chained(m.model_options)))
        return (m,)
