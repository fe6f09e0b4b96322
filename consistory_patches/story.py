"""A patched story: the parts of the runtime that one model clone uses, and the patching.

``Story`` is a frozen record of the parts (run state, mask recorder, shared attention, DIFT
capture, and the wrapper stages that later nodes add). Each clone's transformer_options
hold their own ``Story`` under STORY_KEY; the parts inside are shared by every clone made
from it (each part's ``__deepcopy__`` returns itself), so the nodes after a sampler read
the state of the run that sampler made.

The pack puts one UNet wrapper on the model (host_api.install_unet_wrapper). At every
call it runs the stages of the *sampled* clone's Story in a fixed nesting, whatever order
the nodes were applied in:

    one-pass DIFT features -> query blend -> anchor replay -> anchor record -> (a DiT's token layout) -> the model

On a DiT (Flux) the attention patches are one attention override (consistory_patches.joint_attention).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import reduce

import torch

from ..consistory_core.settings import SharingSettings
from .anchor_record import AnchorRecorder
from .anchor_replay import AnchorReplay
from .blend_pass import QueryBlendPass
from .dift_capture import DiftCapture, dift_sigma
from .engagement import ENGAGED_KEY, FLUX_MIN_HOST, Engagement
from .host_api import install_unet_wrapper, model_sampling
from .injection import Injector, OnePassFeatures
from .joint_attention import OVERRIDE_KEY, JointAttention, TokenLayoutStage, is_flux, override_supported
from .layers import attention_positions, dift_block, is_unet
from .mask_recorder import MaskRecorder
from .passes import PASS_KEY, SAMPLER_PASS, STORY_KEY, with_pass
from .run_state import StoryRun
from .shared_attention import SharedAttention
from .values import StorySubject
from .windows import Window

DIFT_TIMESTEP = 261  # of 1000: where the paper reads its DIFT features (§4.3)


class UnsupportedModel(ValueError):
    """A model whose layout the pack does not patch (SD3, other DiTs), or a DiT on a host
    without the attention override."""


@dataclass(frozen=True)
class Story:
    """The runtime parts one model clone uses. The first four are made by SDSA / Use Anchors;
    the rest are wrapper stages: recorder (SDSA with anchors), replay (Use Anchors), blend
    (Query Blend), one_pass (Feature Injection without features). A clone's Story is frozen;
    the parts inside are shared by every clone made from it."""
    run: StoryRun
    masks: MaskRecorder
    attention: SharedAttention
    dift: DiftCapture
    recorder: AnchorRecorder | None = None
    replay: AnchorReplay | None = None
    blend: QueryBlendPass | None = None
    one_pass: OnePassFeatures | None = None
    injection: dict | None = None  # Feature Injection's settings and mode (what a bank records)
    injector: Injector | None = None  # Feature Injection's (a DiT's override reads it; a UNet's has a patch)
    tokens: TokenLayoutStage | None = None  # a DiT's: the token layout of each call (innermost stage)

    def method(self) -> dict:
        """What of the method besides sharing changes the anchors: Query Blend's and Feature
        Injection's settings (None where the node is not used)."""
        return {"blend": self.blend.settings.to_json() if self.blend is not None else None,
                "injection": self.injection}

    def __deepcopy__(self, memo):
        return self

    def stages(self) -> tuple:
        """The wrapper stages of this clone, outermost first."""
        return tuple(s for s in (self.one_pass, self.blend, self.replay, self.recorder, self.tokens) if s is not None)


def run_of_samples(model, story: Story, samples: dict, node: str) -> int:
    """The run of ``story`` whose sampler made the LATENT ``samples``; ``node`` names the asker.
    Raises, saying what to do, when the model has not sampled: the host made the patched model
    again after its sampler ran (a cache that drops models between prompts, as ComfyUI 0.38's
    RAM-pressure cache does, while it kept the sampler's output)."""
    if story.run.runs == 0:
        raise ValueError(f"{node}: the model patched by ConsiStory has not sampled since it was made: ComfyUI made "
                         "it again after its sampler ran (it drops cached models when memory is short) and kept "
                         "the sampler's output, so that run is gone; queue the prompt again with a change to the "
                         "sampler (e.g. its seed), or start ComfyUI with --cache-classic")
    return story.run.run_of(model.model.process_latent_in(samples["samples"]))


def story_of(model, node: str) -> Story:
    """The Story of a model patched by ConsiStory SDSA (or Use Anchors); ``node`` names the asker."""
    story = model.model_options.get("transformer_options", {}).get(STORY_KEY)
    if story is None:
        raise ValueError(f"{node}: connect a model patched by ConsiStory SDSA")
    return story


def with_parts(model, story: Story, **parts):
    """A clone of ``model`` whose Story also has ``parts`` (e.g. blend=QueryBlendPass(...))."""
    m = model.clone()
    m.model_options.setdefault("transformer_options", {})[STORY_KEY] = dataclasses.replace(story, **parts)
    install_unet_wrapper(m, run_stages)  # again, in case another pack replaced the wrapper since
    return m


def run_stages(call, args):
    """The pack's UNet wrapper: runs the sampled clone's stages around ``call``, then checks
    that ConsiStory's attention patch acted in it (engagement.Engagement). A call that already
    carries a Pass comes from an outer ConsiStory wrapper and goes straight through."""
    options = args["c"].get("transformer_options", {})
    story = options.get(STORY_KEY)
    if story is None or PASS_KEY in options:
        return call(args)
    story.run.follow(options.get("sample_sigmas"))
    nested = reduce(lambda inner, stage: (lambda a, s=stage, i=inner: s(i, a)), reversed(story.stages()), call)
    seen = Engagement()
    out = nested(with_pass(args, SAMPLER_PASS, **{ENGAGED_KEY: seen}))
    sigma = story.run.clock.sigma  # this call's step, as the patches followed it
    seen.check(dit=story.tokens is not None,
               node="ConsiStory Use Anchors" if story.replay is not None else "ConsiStory SDSA",
               blending=story.blend is not None and story.blend.acts_at(sigma),
               injecting=story.injector is not None and story.injector.active(sigma))
    return out


def existing_attn1_replace(model_options: dict, position: tuple):
    """The attn1 replace another node already put at a position, if any."""
    table = model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})
    return table.get(position) or table.get(position[:2])


def patch_story(model, subject: StorySubject, sharing: SharingSettings, share: torch.Tensor, *,
                replayed: int = 0, given_masks: torch.Tensor | None = None, **parts):
    """(patched clone, its Story): shared attention, mask and DIFT patches of a new run on a
    clone of ``model``. ``replayed``: how many leading images of ``subject`` are anchors
    replayed from a bank (``parts`` then holds replay=AnchorReplay(bank)); given_masks
    (k, H, W): a user's subject masks of the first k images (photo anchors), or None."""
    diffusion_model = model.model.diffusion_model
    dit = is_flux(model)
    if not is_unet(diffusion_model) and not dit:
        raise UnsupportedModel(f"ConsiStory works on UNet models (SDXL, SD 1.5, SD 2.x) and Flux.1; this is a "
                               f"{type(model.model).__name__} model, whose transformer the pack does not patch yet")
    if dit and not override_supported():
        raise UnsupportedModel(f"ConsiStory on Flux needs ComfyUI {FLUX_MIN_HOST} or later (the attention "
                               "override, Flux's blocks named in it); "
                               "update ComfyUI")
    m = model.clone()
    sampling = model_sampling(m)
    run = StoryRun(subject, sharing, share, Window.of(sharing.start_percent, sharing.end_percent, sampling),
                   replayed, given_masks=given_masks)
    dift = DiftCapture(run, None if dit else dift_block(diffusion_model), dift_sigma(sampling, DIFT_TIMESTEP))
    story = Story(run, MaskRecorder(run, diffusion_model), SharedAttention(run, diffusion_model), dift, **parts)
    if sharing.anchors > 0 and replayed == 0:  # keep what ConsiStory Anchor Bank needs
        story = dataclasses.replace(story, recorder=AnchorRecorder(run, min(sharing.anchors, subject.images)))
    if dit:
        story = dataclasses.replace(story, tokens=TokenLayoutStage(diffusion_model.patch_size))
    m.model_options.setdefault("transformer_options", {})[STORY_KEY] = story
    # the sampler's denoised batch, so nodes after a sampler can tell which run made their samples
    m.set_model_sampler_post_cfg_function(lambda args: story.run.note_output(args["denoised"]) or args["denoised"])
    if dit:
        options = m.model_options["transformer_options"]
        options[OVERRIDE_KEY] = JointAttention(story, diffusion_model, sharing.dit_positions,
                                               previous=options.get(OVERRIDE_KEY))
        install_unet_wrapper(m, run_stages)
        return m, story
    # closures, not bound methods: clone() deep-copies what it finds in model_options
    m.set_model_attn2_patch(lambda n, context, value, extra: story.masks.record(n, context, value, extra))
    m.set_model_output_block_patch(lambda h, hsp, extra: story.dift.capture(h, hsp, extra))
    if story.replay is not None and story.replay.cache is not None:  # the anchors' attention inputs
        m.set_model_attn1_patch(lambda n, context, value, extra: story.attention.keep_inputs(n, context, value, extra))
    for position in attention_positions(diffusion_model, sharing.block_groups):
        previous = existing_attn1_replace(m.model_options, position)

        def attend(q, k, v, extra, previous=previous):
            return story.attention.attend(q, k, v, extra, previous)

        m.set_model_attn1_replace(attend, *position)
    install_unet_wrapper(m, run_stages)
    return m, story
