"""No silent no-op: did each ConsiStory patch act in a model call?

Each model call the pack's UNet wrapper runs (``story.run_stages``) carries an
``Engagement`` in its transformer_options; ConsiStory's patches count into it, and the
wrapper checks it when the call returns, against what the schedule says should have happened
in that call:

- SDSA: the attention patch (a UNet's attn1 replace, a DiT's attention override) was called
  in a layer or block it knows, and on a UNet the attn2 patch that finds the subject masks;
- Query Blend: where it blends, some layer mixed in the vanilla pass's queries;
- Feature Injection: where it injects, a UNet's attn1 output patch was called (its one-pass
  features also need the output block patch: ``injection.OnePassFeatures`` checks that);
- the wrapper itself: a patch called without the call's Engagement means the host ran the
  model without the pack's UNet wrapper, so no stage (blend, injection's features, Use
  Anchors' replay) ran.

Without these checks a node after the ConsiStory nodes that puts its own patch in their
place, or a host that stops calling a hook, makes every image come out unshared without a word.
"""
from __future__ import annotations

from .host_api import host_version

ENGAGED_KEY = "consistory_engaged"
FLUX_MIN_HOST = "0.3.75"  # the oldest ComfyUI the Flux tests run on (it names the blocks)
COUNTS = ("named", "unnamed", "masks", "blended", "output_patch")


class NotEngaged(RuntimeError):
    """A ConsiStory patch did not act in a model call where it should have."""


class Engagement:
    """What ConsiStory's patches saw in one model call: attention calls in layers or blocks it
    knows (``named``) and, on a DiT, in blocks the host did not name (``unnamed``); attn2
    patch calls (``masks``); layers that blended vanilla queries in (``blended``); attn1
    output patch calls (``output_patch``)."""

    def __init__(self):
        for name in COUNTS:
            setattr(self, name, 0)

    def __deepcopy__(self, memo):
        return self

    def check(self, dit: bool, node: str = "ConsiStory SDSA", blending: bool = False,
              injecting: bool = False) -> None:
        """Raises NotEngaged, naming the cause, for the first patch that should have acted and
        did not. ``node``: the node whose model it is (SDSA or Use Anchors); ``blending`` /
        ``injecting``: Query Blend / Feature Injection act in this call by their schedule."""
        version = host_version()
        if not self.named:
            if dit and self.unnamed:
                raise NotEngaged(f"{node}: Flux blocks are not named by this ComfyUI ({version}), so nothing "
                                 f"would be shared; Flux needs ComfyUI {FLUX_MIN_HOST} or later")
            what = ("the attention override ConsiStory put on this Flux model was not called: a node after the "
                    "ConsiStory nodes replaced it (ComfyUI's Model Attention Backend, or another pack's attention "
                    "override that does not call the one it finds)") if dit else \
                ("the self-attention patch ConsiStory put on this model was not called: a node after the "
                 "ConsiStory nodes replaced it (another pack's attn1 replace on the same layers)")
            raise NotEngaged(f"{node}: {what}; put that node before the ConsiStory nodes")
        if not dit and not self.masks:
            raise NotEngaged(f"{node}: this ComfyUI ({version}) did not call the cross-attention (attn2) patch "
                             "that finds the subject masks, or a node after the ConsiStory nodes removed it, so "
                             "nothing would be shared")
        if blending and not self.blended:
            raise NotEngaged(f"ConsiStory Query Blend: no layer got the vanilla pass's queries at a step where it "
                             f"blends: this ComfyUI ({version}) did not hand the pass ConsiStory's wrapper marked "
                             "through to the attention patches (transformer_options), so nothing would be blended")
        if injecting and not dit and not self.output_patch:
            raise NotEngaged(f"ConsiStory Feature Injection: this ComfyUI ({version}) did not call the attn1 output "
                             "patch it injects with, or a node after Feature Injection removed it, so nothing would "
                             "be injected")


def count(options: dict, what: str = "named") -> None:
    """One call of a ConsiStory patch (``what``: one of COUNTS) into the call's Engagement.
    A call without one ran outside the pack's UNet wrapper: NotEngaged."""
    seen = options.get(ENGAGED_KEY)
    if seen is None:
        raise NotEngaged(f"ConsiStory: this ComfyUI ({host_version()}) ran the model without the UNet wrapper "
                         "ConsiStory put on it (its APPLY_MODEL wrapper), or a node after the ConsiStory nodes "
                         "removed it: the anchors, query blending and one-pass feature injection would not run; "
                         "put that node before the ConsiStory nodes")
    setattr(seen, what, getattr(seen, what) + 1)
