"""The method on a DiT's joint attention (Flux.1), through the host's attention override.

Flux has no cross-attention: its double-stream blocks attend over [text ; image] with a
projection per stream, its single-stream blocks over the same joint sequence with one, and
RoPE puts each token's position into its query and key before attention. The host calls
``transformer_options["optimized_attention_override"](func, q, k, v, heads, ...)`` for
every attention with q, k, v (B, heads, L, d) after RoPE, and names the block in
transformer_options ("block_type" "double"/"single", "block_index"). One override per clone
does all of the method there:

- subject masks (§4.1): on the double blocks of the sampler's pass, the cond chunk's image
  queries against its text keys (softmax over the text tokens, as a cross-attention), the
  subject words' maps into the run's mask tracker at the image token grid;
- SDSA with dropout and anchors (§4.1, §4.2, §4.4): on the sharing blocks each image's
  queries also see the other images' subject image keys (``shared_joint_attention``),
  those keys moved beside the image's own positions (``DIT_POSITIONS``: AlignedGen's ShiftPE);
- query blending (§4.2): the vanilla pass keeps the image queries of the sharing blocks;
- DIFT features and injection (§4.3): the image tokens' attention output of the feature
  block is the correspondence feature map; on the sharing blocks the cond chunk's subject
  tokens' outputs are pulled toward their matches;
- reused anchors with an anchor cache (§4.4, consistory_patches.anchor_cache): a call on the
  anchors alone keeps their moved pool keys and values ("k"/"v" per block and chunk), subject
  maps ("maps"), DIFT features and injected outputs; a call on the new images alone takes them
  (the anchors are the first ``absent`` images of the story, not rows of the call).

Where none of it acts the override calls the host's attention (or the override another
pack put there first) with the call's own arguments, so it gives what the unpatched model
gives. The token layout (text length, image grid) comes from the innermost wrapper stage
(``TokenLayoutStage``), which reads it off the call's context and latent. The override counts
each call into the call's ``engagement.Engagement`` (by named block or not), which the
wrapper checks: a host that does not name the blocks (ComfyUI before 0.3.75) or a node after
ConsiStory that replaced the override would otherwise leave every image unshared.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from einops import rearrange

from ..consistory_core.masks import head_token_maps
from ..consistory_core.positions import rotate_pairs
from ..consistory_core.sdsa import joint_pool, shared_joint_attention
from ..consistory_core.settings import DIT_POSITIONS
from .chunks import COND
from .engagement import count
from .passes import PassKind, STORY_KEY, pass_of, with_pass

OVERRIDE_KEY = "optimized_attention_override"  # transformer_options, today's host (ComfyUI 0.3.60+)
TOKENS_KEY = "consistory_dit_tokens"

# Which blocks share, for each choice of SDSA's "blocks" (named after a UNet's): the paper
# shares in the UNet's up blocks, the later half of the network, which renders appearance
# after the down blocks set the layout; a DiT's later half is its single-stream blocks (Flux:
# 38 of 57 blocks, after the 19 double-stream ones).
DIT_BLOCK_GROUPS = {
    ("output",): ("single",),
    ("middle", "output"): ("double late", "single"),
    ("input", "middle", "output"): ("double", "single"),
}


def is_dit(diffusion_model) -> bool:
    """A Flux-layout DiT (double-stream blocks, then single-stream blocks, RoPE embedder) with
    text first in the joint sequence, whose attention the pack patches."""
    if not all(hasattr(diffusion_model, a) for a in ("double_blocks", "single_blocks", "pe_embedder")):
        return False
    return not any(getattr(b, "flipped_img_txt", False) for b in diffusion_model.double_blocks)


def is_flux(model) -> bool:
    """A Flux.1 model (dev, schnell and their fine-tunes; the host's ``model_base.Flux``): the
    DiT the pack patches. Its relatives with the same blocks but other text encoders or
    modulation (Flux.2, Chroma) are not, until tested."""
    return type(model.model).__name__ == "Flux" and is_dit(model.model.diffusion_model)


def override_supported() -> bool:
    """The host routes every attention through transformer_options' override (ComfyUI 0.3.60+)."""
    try:
        from comfy.ldm.modules.attention import wrap_attn  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class TokenLayout:
    """A call's joint sequence: ``text`` tokens first, then the image's ``grid`` (h, w) tokens
    row by row, then whatever the model appends (Kontext's reference tokens)."""
    text: int
    grid: tuple

    @property
    def image(self) -> slice:
        return slice(self.text, self.text + self.grid[0] * self.grid[1])


class TokenLayoutStage:
    """Innermost wrapper stage: the call's TokenLayout into its transformer_options (the text
    length after any stage extended the context, the latent's patch grid)."""

    def __init__(self, patch_size: int):
        self.patch_size = patch_size

    def __deepcopy__(self, memo):
        return self

    def __call__(self, call, args):
        h, w = args["input"].shape[-2:]
        p = self.patch_size
        layout = TokenLayout(args["c"]["c_crossattn"].shape[1], (-(-h // p), -(-w // p)))
        options = args["c"].get("transformer_options", {})
        return call(with_pass(args, pass_of(options), **{TOKENS_KEY: layout}))


def block_sets(diffusion_model, groups: tuple) -> tuple:
    """(sharing blocks, mask blocks, feature block) as ("double"|"single", index)."""
    double, single = len(diffusion_model.double_blocks), len(diffusion_model.single_blocks)
    named = {"double": [("double", i) for i in range(double)],
             "double late": [("double", i) for i in range(double // 2, double)],
             "single": [("single", i) for i in range(single)]}
    share = frozenset(b for group in DIT_BLOCK_GROUPS[tuple(groups)] for b in named[group])
    return share, frozenset(named["double"]), ("double", double - 1)


class JointAttention:
    """The override of one patched DiT (see the module's docstring). story: the clone's Story
    (its run, mask recorder's token weights, shared attention's plans, DIFT capture)."""

    def __init__(self, story, diffusion_model, positions: str, previous=None):
        self.story, self.run = story, story.run
        self.embedder = diffusion_model.pe_embedder
        self.share, self.mask_blocks, self.feature_block = block_sets(diffusion_model, story.run.sharing.block_groups)
        self.positions, self.previous = positions, previous
        self._rotations: dict = {}
        self._warned: set = set()

    def __deepcopy__(self, memo):
        return self

    def __call__(self, func, q, k, v, heads, *args, transformer_options=None, **kwargs):
        options = transformer_options or {}

        def host(q_):
            if self.previous is not None:
                return self.previous(func, q_, k, v, heads, *args, transformer_options=transformer_options, **kwargs)
            return func(q_, k, v, heads, *args, transformer_options=transformer_options, **kwargs)

        layout, block = options.get(TOKENS_KEY), (options.get("block_type"), options.get("block_index"))
        named = block[0] in ("double", "single")
        count(options, "named" if named else "unnamed")
        if layout is None or not named or not kwargs.get("skip_reshape"):
            return host(q)
        if kwargs.get("mask") is not None or q.shape[2] < layout.image.stop:
            self.warn_once("another node set an attention mask" if kwargs.get("mask") is not None else
                           f"the joint sequence has {q.shape[2]} tokens, fewer than its {layout.text} text and "
                           f"{layout.image.stop - layout.text} image tokens")
            return host(q)
        run, p, story = self.run, pass_of(options), options.get(STORY_KEY) or self.story
        sigma = run.sync_patch(options)
        chunks = run.patch_chunks(q.shape[0], options)
        image, cached = layout.image, p.anchor_rows  # cached: the call's anchor cache access, or None
        if p.is_sampler and block in self.mask_blocks and chunks.cond_rows is not None:
            self.record_masks(q, k, layout, chunks.cond_rows, block, cached)
        if p.kind is PassKind.VANILLA:  # query blending's pass: keep the image queries, share nothing
            if block in self.share:
                p.queries[block] = q[:, :, image]
            return host(q)
        if block in self.share and p.blend is not None:
            if block in p.queries:
                count(options, "blended")
            q = q.clone()
            q[:, :, image] = p.blended(block, q[:, :, image])
        out = None
        if block in self.share and run.sharing_at(sigma):
            plan = story.attention.plan(layout.grid, q.device)
            if not plan.empty:
                parts = []
                for c in range(len(chunks)):
                    rows = chunks.rows(c)
                    parts.append(self.shared(q[rows], k[rows], v[rows], plan, layout, block, chunks.order[c], cached))
                out = rearrange(torch.cat(parts), "b h l d -> b l (h d)")
        if out is None:
            out = host(q)
        rows = chunks.cond_rows
        if rows is None or p.kind is PassKind.VANILLA:
            return out
        features = lambda: rearrange(out[rows, image], "n (h w) c -> n c h w", h=layout.grid[0]).clone()
        if block == self.feature_block:
            story.dift.keep(features, options)
        injector = story.injector
        if p.is_sampler and injector is not None and block in self.share and injector.active(sigma):
            out = out.clone()
            out[rows, image] = injector.injected(out[rows, image], layout.grid, block, cached)
        return out

    def warn_once(self, why: str) -> None:
        """Logs once per patched model why its attention goes unshared (another node's doing)."""
        if why not in self._warned:
            self._warned.add(why)
            logging.warning(f"ConsiStory on Flux: {why}; those attention calls run unshared")

    def record_masks(self, q, k, layout: TokenLayout, rows: slice, block: tuple, cached=None) -> None:
        """The subject words' maps of the cond chunk's images (N, K, P) into the run's tracker.
        cached: the call's anchor cache access (§4.4): recording (rows: the anchors alone),
        their maps (k, K, P) are kept and are no step of the run; playing (rows: the new
        images), the kept ones are put in front."""
        weights = self.story.masks.token_weights_for(layout.text, q.device)
        if cached is not None:
            weights = weights[cached.images(weights.shape[0])]
        maps = head_token_maps(q[rows, :, layout.image], k[rows, :, :layout.text], weights)
        if cached is not None:
            maps = cached.rows("maps", block, COND, maps)
            if cached.recording:
                return
        self.run.tracker.add(maps, layout.grid)

    def shared(self, q, k, v, plan, layout: TokenLayout, block: tuple, chunk: int, cached=None) -> torch.Tensor:
        """SDSA of one CFG chunk (``chunk``: 0 cond, 1 uncond): q, k, v (n, heads, L, d) of the
        images the call holds -> (n, heads, L, d). cached: the call's anchor cache access
        (§4.4): recording (the anchors alone), their moved pool keys and values (heads, T_a, d)
        are kept; playing (the new images, the anchors' ``absent`` rows missing), they are
        taken as the pool's first entries."""
        move = self.reposition(layout.grid, q.device)
        first = cached.absent if cached is not None else 0
        kept = None
        if cached is not None and not cached.recording:
            kept = cached.take("k", block, chunk, k), cached.take("v", block, chunk, v)
            if kept[0].shape[1] != plan.entries_before(first):
                raise ValueError(f"ConsiStory Use Anchors: the anchor cache has {kept[0].shape[1]} shared keys of "
                                 f"the anchors at {block}, this step's masks {plan.entries_before(first)}; this is "
                                 "a bug, please report it")
        pool = joint_pool(k, v, plan, layout.text, first, kept, move)
        if cached is not None and cached.recording:
            before = plan.entries_before(cached.anchors)
            cached.keep("k", block, chunk, pool[0][:, :before])
            cached.keep("v", block, chunk, pool[1][:, :before])
        return shared_joint_attention(q, k, v, plan, layout.text, first, pool)

    def reposition(self, grid: tuple, device):
        """The pool keys' move (ShiftPE): one more rotation by w on the width axis, so a key of
        another image at (i, j) sits at (i, j + w), beside the image rather than on it; None
        where the keys keep their positions."""
        if self.positions != DIT_POSITIONS[0]:
            return None
        key = (grid, device)
        if key not in self._rotations:
            delta = torch.zeros(1, 1, len(self.embedder.axes_dim), device=device)
            delta[..., -1] = float(grid[1])
            self._rotations[key] = self.embedder(delta)[0, 0, 0]  # (d/2, 2, 2)
        rotation = self._rotations[key]
        return lambda keys: rotate_pairs(keys, rotation)
