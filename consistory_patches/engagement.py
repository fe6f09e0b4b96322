"""No silent no-op: did ConsiStory's attention patch act in a model call?

Each model call the pack's UNet wrapper runs (``story.run_stages``) carries an
``Engagement`` in its transformer_options; ConsiStory's attention patch (the UNet's attn1
replace, a DiT's attention override) counts into it, and the wrapper checks it when the call
returns. No count means the patch was never called: a node after the ConsiStory nodes put
its own in its place, or the host does not name a DiT's blocks, and every image would come
out unshared without a word.
"""
from __future__ import annotations

from .host_api import host_version

ENGAGED_KEY = "consistory_engaged"
FLUX_MIN_HOST = "0.3.75"  # the oldest ComfyUI the Flux tests run on (it names the blocks)


class NotEngaged(RuntimeError):
    """ConsiStory's attention patch did not act in a model call where it should have."""


class Engagement:
    """The calls ConsiStory's attention patch saw in one model call: in layers or blocks it
    knows (``named``) and, on a DiT, in blocks the host did not name (``unnamed``)."""

    def __init__(self):
        self.named = self.unnamed = 0

    def __deepcopy__(self, memo):
        return self

    def check(self, dit: bool) -> None:
        """Raises NotEngaged, naming the cause, when no call came through a known layer."""
        if self.named:
            return
        if dit and self.unnamed:
            raise NotEngaged(f"ConsiStory SDSA: Flux blocks are not named by this ComfyUI ({host_version()}), so "
                             f"nothing would be shared; Flux needs ComfyUI {FLUX_MIN_HOST} or later")
        what = ("the attention override ConsiStory put on this Flux model was not called: a node after the "
                "ConsiStory nodes replaced it (ComfyUI's Model Attention Backend, or another pack's attention "
                "override that does not call the one it finds)") if dit else \
            ("the self-attention patch ConsiStory put on this model was not called: a node after the ConsiStory "
             "nodes replaced it (another pack's attn1 replace on the same layers)")
        raise NotEngaged(f"ConsiStory SDSA: {what}; put that node before the ConsiStory nodes")


def count(options: dict, named: bool = True) -> None:
    """One call of ConsiStory's attention patch, into the call's Engagement if it has one."""
    seen = options.get(ENGAGED_KEY)
    if seen is not None:
        if named:
            seen.named += 1
        else:
            seen.unnamed += 1
