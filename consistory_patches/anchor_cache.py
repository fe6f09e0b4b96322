"""Reused anchors at the cost of plain sampling (§4.4): what a bank's anchors give the new
images, kept once instead of recomputed at every call.

A new image depends on its anchors only through, per model evaluation:
  - "k"/"v": their subject keys and values in shared attention (the pool entries of the
    images before the first new one, (heads, T_a, d) per layer and CFG chunk),
  - "maps": their cross-attention maps of the subject words (the subject masks),
  - "features": their DIFT features (one-pass injection's pass),
  - "inject": their injected attention outputs at their subject patches, which injection
    pulls from,
  - "x0": their denoised estimate (the next DIFT pass re-noises it).
None of these depends on the new images (anchors see only anchors). So where an evaluation
is not kept yet, the replay stage first runs the UNet on the anchors alone, only to keep
their parts (``AnchorRows.recording``: nothing of that call reaches the run), then on the
new images with those parts, as every later run does: the new images are computed the
same way, to the bit, whether the cache was filled by this run, an earlier one, another
process or a file, and whichever new images the first run had beside them.

The cache belongs to one Use Anchors node's model; it is emptied when the method
settings, the UNet's weights (a sample of every tensor) or the model's patches change.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass

import torch

from .host_api import patch_kinds

PLACES = ("cpu", "device")
# 2: the "inject" entries are the anchors' outputs after injection (targets injected in turn,
# as the reference does); a file of format 1 (outputs before injection) is recomputed
FILE_FORMAT = "consistory.anchor_cache.2"


@dataclass(frozen=True)
class AnchorRows:
    """One UNet call's access to the cache. recording: the call holds the anchors alone (the
    first ``anchors`` images of the story, in each chunk) and runs only to keep their parts;
    else it holds the new images and the anchors' parts are given. Keys: (evaluation, pass
    kind, context length) of the call."""
    cache: "AnchorCache"
    evaluation: int
    kind: str
    context: int
    anchors: int
    recording: bool

    @property
    def absent(self) -> int:
        """How many leading images of the story are not rows of this call."""
        return 0 if self.recording else self.anchors

    def images(self, story_images: int) -> slice:
        """The story's images (of ``story_images``) that are rows of this call."""
        return slice(0, self.anchors) if self.recording else slice(self.anchors, story_images)

    def _key(self, part: str, layer, chunk: int) -> tuple:
        return self.evaluation, self.kind, self.context, chunk, part, layer

    def keep(self, part: str, layer, chunk: int, value: torch.Tensor) -> None:
        self.cache.put(self._key(part, layer, chunk), value)

    def take(self, part: str, layer, chunk: int, like: torch.Tensor) -> torch.Tensor:
        return self.cache.get(self._key(part, layer, chunk), like)

    def rows(self, part: str, layer, chunk: int, x: torch.Tensor) -> torch.Tensor:
        """x (rows of one chunk as this call has them, ...) -> the rows of every image of
        the story, kept anchors first (playing); recording, x (the anchors' rows) is kept."""
        if self.recording:
            self.keep(part, layer, chunk, x)
            return x
        return torch.cat([self.take(part, layer, chunk, x), x])


class AnchorCache:
    """The cache of one bank (``bank_key``: its digest). place: "cpu" (kept in CPU memory,
    moved to the device layer by layer as a step needs it) or "device" (kept where the UNet runs)."""

    def __init__(self, anchors: int, place: str = "cpu", bank_key: bytes = b""):
        if place not in PLACES:
            raise ValueError(f"anchor cache place {place!r}: one of {PLACES}")
        self.anchors, self.place, self.bank_key = anchors, place, bank_key
        self.identity = None
        self.entries: dict = {}
        self.complete: set = set()  # (evaluation, pass kind, context length, chunk) fully kept
        self.calls = {"played": 0, "recorded": 0}  # UNet calls on the new images / the anchors alone

    def __deepcopy__(self, memo):
        return self

    def use(self, identity: str) -> None:
        """Entries are for ``identity`` (method settings, weights, patches): other ones are dropped."""
        if identity != self.identity:
            if self.entries:
                logging.info("ConsiStory Use Anchors: the model or settings changed; the anchor cache starts again")
            self.identity, self.entries, self.complete = identity, {}, set()

    def kept(self, evaluation: int, kind: str, context: int, chunks) -> bool:
        """Every chunk's parts of that evaluation and pass kind are kept."""
        return all((evaluation, kind, context, c) in self.complete for c in chunks)

    def slot(self, evaluation: int, kind: str, context: int, recording: bool) -> AnchorRows:
        """The access of a call at ``evaluation``: recording (the anchors alone) or playing."""
        self.calls["recorded" if recording else "played"] += 1
        return AnchorRows(self, evaluation, kind, context, self.anchors, recording)

    def done(self, rows: AnchorRows, chunks) -> None:
        """A recording call finished: its chunks' parts are all kept."""
        for c in chunks:
            self.complete.add((rows.evaluation, rows.kind, rows.context, c))

    def put(self, key: tuple, value: torch.Tensor) -> None:
        value = value.detach()
        self.entries[key] = value.to("cpu", copy=True) if self.place == "cpu" else value.clone()

    def get(self, key: tuple, like: torch.Tensor) -> torch.Tensor:
        if key not in self.entries:
            raise KeyError(f"ConsiStory Use Anchors: the anchor cache has no {key[4]!r} entry for model "
                           f"evaluation {key[0]} ({key[1]} pass); this is a bug, please report it")
        value = self.entries[key]
        if self.place == "device" and value.device != like.device:  # loaded from a file: moved once
            value = self.entries[key] = value.to(like.device)
        return value.to(like.device, like.dtype, non_blocking=True)

    def take_x0(self, evaluation: int) -> torch.Tensor | None:
        """The anchors' denoised estimate kept at ``evaluation`` (cond chunk), or None."""
        found = [v for k, v in self.entries.items() if k[0] == evaluation and k[4] == "x0"]
        return found[0] if found else None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.entries.values())

    def summary(self) -> str:
        evaluations = len({k[0] for k in self.complete})
        where = "CPU memory" if self.place == "cpu" else "device memory"
        return (f"{self.anchors} anchors, {evaluations} model evaluations, {self.nbytes / 2**20:.1f} MiB in {where}")

    # -- a file beside the bank -------------------------------------------------------
    def save(self, path) -> None:
        """Writes the entries and their identity as a .safetensors file."""
        from safetensors.torch import save_file
        names = {f"e{i}": key for i, key in enumerate(self.entries)}
        tensors = {name: self.entries[key].contiguous().cpu() for name, key in names.items()}
        meta = {"format": FILE_FORMAT, "identity": self.identity, "anchors": str(self.anchors),
                "keys": json.dumps({n: list(k) for n, k in names.items()}),
                "complete": json.dumps(sorted(list(c) for c in self.complete))}
        save_file(tensors, str(path), metadata=meta)

    def load(self, path, identity: str) -> bool:
        """Takes the entries of a file made for ``identity``; False (nothing taken) when the
        file is for other settings, weights or anchors, or is not a cache file."""
        from safetensors import safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FILE_FORMAT or meta.get("identity") != identity \
                        or meta.get("anchors") != str(self.anchors):
                    return False
                keys = json.loads(meta["keys"])
                entries = {_key(keys[name]): f.get_tensor(name) for name in f.keys()}
                complete = {_key(c) for c in json.loads(meta["complete"])}
        except Exception as e:  # noqa: BLE001 - a broken cache file is recomputed, never fatal
            logging.warning(f"ConsiStory Use Anchors: the anchor cache file {path} cannot be read ({e}); "
                            "recomputing it")
            return False
        self.identity, self.entries, self.complete = identity, entries, complete
        return True


def bank_digest(bank) -> bytes:
    """A digest of what a bank is: its story and settings, and every value of its tensors
    (schedule, latents, conditioning, a user's subject masks)."""
    h = hashlib.sha1(json.dumps(bank.description.to_json(), sort_keys=True).encode())
    for name, tensor in sorted(bank.tensors().items()):  # a few MB even at 1024²: all of it
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
    return h.digest()


def cache_identity(bank: bytes, method: dict, weights: str, options: dict) -> str:
    """What an anchor cache's entries depend on besides the bank: the Query Blend / Feature
    Injection settings, the sampled model's fingerprint ``weights`` (checkpoint and LoRAs:
    host_api.sampled_model_fingerprint) and the kinds of patches on the model (another pack's
    attention changes the anchors)."""
    h = hashlib.sha1(bank)
    h.update(json.dumps(method, sort_keys=True).encode())
    h.update(weights.encode())
    h.update(patch_kinds(options).encode())
    return h.hexdigest()


KEPT_CACHES = 2  # banks whose caches stay in memory (the most recently used)
_CACHES: OrderedDict = OrderedDict()


def cache_for(bank, place: str) -> AnchorCache:
    """The anchor cache of a bank (the same for every Use Anchors run with this bank, so new
    prompts reuse it); the caches of the KEPT_CACHES banks used last are kept."""
    key = (bank_digest(bank), place)
    if key not in _CACHES:
        _CACHES[key] = AnchorCache(bank.anchors, place, key[0])
    _CACHES.move_to_end(key)
    while len(_CACHES) > KEPT_CACHES:
        _CACHES.popitem(last=False)
    return _CACHES[key]


def _key(items: list) -> tuple:
    """A JSON list back to an entry key (layers are lists in JSON, tuples in keys)."""
    return tuple(tuple(x) if isinstance(x, list) else x for x in items)
