"""Subject masks from cross-attention (§4.1), as an attn2 patch.

On the mask layers (the latent/4 ones by default) of the sampler's passes, the cond
chunk's queries attend to the subject tokens; the maps (N, K words, grid) are resized to
the latent/4 grid and added to the run's SubjectMaskTracker, which keeps the window mean
and thresholds it into masks. The patch recomputes to_q/to_k on those layers only and
returns (n, context, value) unchanged, so it composes with any attn2 replace.
"""
from __future__ import annotations

import torch

from ..consistory_core import downscale_of, repeated_positions, subject_token_maps, token_grid, token_weights
from .chunks import COND
from .engagement import count
from .layers import transformer_block
from .passes import pass_of
from .run_state import StoryRun


class MaskRecorder:
    def __init__(self, run: StoryRun, diffusion_model):
        self.run = run
        self.diffusion_model = diffusion_model
        self._weights: dict = {}  # (context length, device) -> token weights (N, K, L)
        self._attn2: dict = {}    # layer -> its cross-attention module (the UNet's, never changes)
        self._keys: dict = {}     # layer -> (text context, its cross-attention keys), this run
        run.on_new_run(self._keys.clear)

    def __deepcopy__(self, memo):
        return self

    def record(self, n, context, value, extra):
        """attn2 patch: n (B, P, C) normed hidden states, context (B, L, D) text."""
        run = self.run
        count(extra, "masks")
        run.sync_patch(extra)
        latent_hw = tuple(extra["original_shape"][2:])
        if (not pass_of(extra).is_sampler or n.shape[0] != extra["original_shape"][0]
                or downscale_of(latent_hw, n.shape[1]) not in run.sharing.masks.downscales):
            return n, context, value
        rows = run.patch_chunks(n.shape[0], extra).cond_rows
        if rows is None:
            return n, context, value
        layer = (*extra["block"], extra["block_index"])
        if layer not in self._attn2:
            self._attn2[layer] = transformer_block(self.diffusion_model, *layer).attn2
        attn2 = self._attn2[layer]
        q = attn2.to_q(n[rows])
        k = self._text_keys(attn2, layer, context[rows])
        cached = pass_of(extra).anchor_rows  # replayed anchors' maps from an anchor cache
        weights = self.token_weights_for(context.shape[1], q.device)
        if cached is not None:
            weights = weights[cached.images(weights.shape[0])]
        maps = subject_token_maps(q, k, attn2.heads, weights)
        grid = token_grid(latent_hw, n.shape[1])
        low = (-(-latent_hw[0] // 4), -(-latent_hw[1] // 4))  # the recording grid
        if grid != low:
            maps = torch.nn.functional.interpolate(
                maps.reshape(*maps.shape[:2], *grid), size=low, mode="bilinear",
                align_corners=False).flatten(2)
        if cached is not None:
            maps = cached.rows("maps", layer, COND, maps)
            if cached.recording:  # the anchors alone: kept, not a step of the run
                return n, context, value
        run.tracker.add(maps, low)
        return n, context, value

    def _text_keys(self, attn2, layer: tuple, context: torch.Tensor) -> torch.Tensor:
        """attn2.to_k(context), computed once per layer while the text stays the same."""
        cached = self._keys.get(layer)
        if cached is None or cached[0].shape != context.shape or not torch.equal(cached[0], context):
            cached = self._keys[layer] = (context, attn2.to_k(context))
        return cached[1]

    def token_weights_for(self, context_length: int, device) -> torch.Tensor:
        """(N, L, K): averages each subject word's token columns of an L-token context."""
        key = (context_length, device)
        if key not in self._weights:
            subject = self.run.subject
            positions = [[repeated_positions(p, subject.token_length, context_length) for p in words]
                         for words in subject.positions]
            self._weights[key] = token_weights(positions, context_length, device=device)
        return self._weights[key]
