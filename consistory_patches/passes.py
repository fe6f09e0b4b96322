"""The pass protocol: which pass a UNet call is, as one typed value in transformer_options.

The sampler calls the UNet once or more per step (its own pass). The pack's wrapper stages
add calls of their own with the same latents: query blending's *vanilla* pass (sharing
off, its self-attention queries kept, §4.2) and one-pass injection's *DIFT* pass (the
previous step's clean-image estimate re-noised to the DIFT timestep, §4.3). Every patch
reads ``pass_of(extra)`` to know which call it is in; a call without a Pass is the
sampler's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

PASS_KEY = "consistory_pass"
STORY_KEY = "consistory_story"  # transformer_options: the clone's Story (consistory_patches.story)


class PassKind(Enum):
    SAMPLER = "sampler"  # the sampler's own call: follows the schedule, shares, records
    VANILLA = "vanilla"  # query blending's pass: shares nothing, keeps its attn1 queries
    DIFT = "dift"        # one-pass injection's feature pass, off the sampler's schedule


@dataclass(frozen=True)
class Pass:
    """kind: which call this is; queries: layer (block, id, index) -> q (B, P, heads*d),
    filled by a VANILLA pass and blended into a SAMPLER pass with strength ``blend``;
    noise_seed: the re-noising seed of a DIFT pass (anchors replayed from a bank use it);
    anchor_rows: where a bank's anchors are replayed with an anchor cache, the call's access
    to it (consistory_patches.anchor_cache.AnchorRows), else None."""
    kind: PassKind = PassKind.SAMPLER
    queries: dict | None = None
    blend: float | None = None
    noise_seed: int | None = None
    anchor_rows: object | None = None

    def __deepcopy__(self, memo):
        return self

    @property
    def is_sampler(self) -> bool:
        return self.kind is PassKind.SAMPLER

    def blended(self, layer: tuple, q):
        """q blended with the vanilla pass's q of the same layer (§4.2), or q as it is."""
        if self.blend is None or layer not in self.queries:
            return q
        return self.blend * self.queries[layer] + (1 - self.blend) * q


SAMPLER_PASS = Pass()


def pass_of(options: dict) -> Pass:
    """The pass of a call, from its transformer_options (or a patch's ``extra``)."""
    return options.get(PASS_KEY) or SAMPLER_PASS


def args_pass(args: dict) -> Pass:
    """The pass of a UNet wrapper call {"input", "timestep", "c", "cond_or_uncond"}."""
    return pass_of(args["c"].get("transformer_options", {}))


def args_story(args: dict):
    """The Story of the clone a UNet wrapper call samples with (None without ConsiStory)."""
    return args["c"].get("transformer_options", {}).get(STORY_KEY)


def with_pass(args: dict, p: Pass, **options) -> dict:
    """A copy of wrapper args whose transformer_options carry pass ``p`` (and ``options``)."""
    c = dict(args["c"])
    c["transformer_options"] = {**c.get("transformer_options", {}), PASS_KEY: p, **options}
    return {**args, "c": c}
