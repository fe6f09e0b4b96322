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

Shared attention keeps the anchors' attention *inputs* ("x": the normed hidden states at
their kept subject patches, (T_a, C)) rather than their keys and values, and projects them
again on every call (the layer's own to_k / to_v, a (T_a x C) by (C x C) product): half the
bytes of keys and values. Where another node changed the attention's inputs after the pack
saw them, that layer keeps its keys and values ("k", "v") instead.

Where it is kept ("place"): "cpu" (RAM, moved to the device layer by layer), "device", or
"file": written beside the bank evaluation by evaluation while recording and read back part
by part (consistory_patches.anchor_cache_file), so only the evaluation at hand is in memory.
A cache in memory is sized once its first evaluation with masks is recorded and kept only
if it fits the budget (consistory_patches.anchor_cache_budget); otherwise it is
"transient": each evaluation is recorded, played, and dropped, which is what replaying
the anchors costs, with the same images. The cache belongs to one bank; it is emptied
when the method settings, the UNet's weights (a sample of every tensor) or the model's
patches change.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from .anchor_cache_budget import budget_bytes, free_bytes, free_disk, human, make_room
from .anchor_cache_file import FORMAT, CacheFileReader, CacheFileWriter
from .host_api import patch_kinds

PLACES = ("cpu", "device", "file")
SHARED_PARTS = ("x", "xv", "k", "v")  # the anchors' shared attention, present once there are masks


@dataclass(frozen=True)
class AnchorRows:
    """One UNet call's access to the cache. recording: the call holds the anchors alone (the
    first ``anchors`` images of the story, in each chunk) and runs only to keep their parts;
    else it holds the new images and the anchors' parts are given. Keys: (evaluation, pass
    kind, context length) of the call. inputs: layer -> (context, value) (B, P, C), the
    attention inputs of a recording call, as the attn1 input patch saw them."""
    cache: "AnchorCache"
    evaluation: int
    kind: str
    context: int
    anchors: int
    recording: bool
    inputs: dict = field(default_factory=dict, compare=False)

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

    def has(self, part: str, layer, chunk: int) -> bool:
        return self.cache.has(self._key(part, layer, chunk))

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
    """The cache of one bank (``bank_key``: its digest) in one place (PLACES, see the module).
    keeping: evaluations stay once recorded (False: transient, each dropped when the next is
    recorded); budget_gb: the user's budget for caches in memory (0: SAFE_SHARE of the free)."""

    def __init__(self, anchors: int, place: str = "cpu", bank_key: bytes = b"", budget_gb: float = 0.0):
        if place not in PLACES:
            raise ValueError(f"anchor cache place {place!r}: one of {PLACES}")
        self.anchors, self.place, self.bank_key, self.budget_gb = anchors, place, bank_key, budget_gb
        self.identity, self.path = None, None
        self.entries: dict = {}  # in memory: key -> tensor
        self.complete: set = set()  # (evaluation, pass kind, context length, chunk) fully kept
        self.reader: CacheFileReader | None = None  # a finished file the parts are read from
        self.writer: CacheFileWriter | None = None  # the file being recorded
        self.keeping = place != "file"
        self.estimate: int | None = None  # bytes, once sized
        self._recording = None  # the evaluation recorded last
        self._no_file = False  # the file was refused (no room on its disk)
        self._told: set = set()  # what the log said already (once per cache)
        self.calls = {"played": 0, "recorded": 0}  # UNet calls on the new images / the anchors alone

    def __deepcopy__(self, memo):
        return self

    def use(self, identity: str, path: str | None = None) -> None:
        """Entries are for ``identity`` (method settings, weights, patches): other ones are
        dropped. path (place "file"): the file beside the bank, read if it was made for them."""
        if identity == self.identity:
            return
        if self.entries or self.reader is not None:
            logging.info("ConsiStory Use Anchors: the model or settings changed; the anchor cache starts again")
        self.drop()
        self.identity, self.keeping, self.path = identity, self.place != "file", path
        if path is not None and os.path.isfile(path):
            self._open(path)

    def _open(self, path: str) -> None:
        try:
            reader = CacheFileReader(path)
        except Exception as e:  # noqa: BLE001 - a broken or older cache file is recomputed, never fatal
            logging.warning(f"ConsiStory Use Anchors: the anchor cache file {path} cannot be used ({e}); "
                            "recomputing it")
            return
        if reader.format == FORMAT and reader.identity == self.identity and reader.anchors == self.anchors:
            self.reader, self.complete = reader, set(reader.complete)
            logging.info(f"ConsiStory Use Anchors: anchor cache read from {path} step by step: {self.summary()}")

    def drop(self) -> None:
        """Forgets every entry and what they were for (the file beside the bank stays; a
        partial one is removed)."""
        if self.writer is not None:
            self.writer.abort()
        if self.reader is not None:
            self.reader.close()
        self.entries, self.complete, self.reader, self.writer = {}, set(), None, None
        self.estimate = self._recording = self.identity = None
        self._no_file = False

    def kept(self, evaluation: int, kind: str, context: int, chunks) -> bool:
        """Every chunk's parts of that evaluation and pass kind are kept."""
        return all((evaluation, kind, context, c) in self.complete for c in chunks)

    def slot(self, evaluation: int, kind: str, context: int, recording: bool) -> AnchorRows:
        """The access of a call at ``evaluation``: recording (the anchors alone) or playing."""
        self.calls["recorded" if recording else "played"] += 1
        return AnchorRows(self, evaluation, kind, context, self.anchors, recording)

    def begin(self, evaluation: int, remaining: int, device=None) -> None:
        """A recording call at ``evaluation`` starts (``remaining``: the bank's evaluations
        from it to the last): the one recorded before is whole now and sizes the cache
        (``settle``); a cache that does not keep (transient, or written to its file) lets the
        other evaluations' parts go from memory."""
        previous, self._recording = self._recording, evaluation
        if previous is not None and previous != evaluation:
            self.settle(previous, remaining, device)
        if self.writer is not None and previous is not None and evaluation < previous:
            self.writer.abort()  # a run that stopped half way: the next one writes the file anew
            self.writer = None
        if not self.keeping:
            self._only(evaluation)
        if self.place == "file" and self.writer is None and self.reader is None and self.path is not None \
                and not self._no_file:
            self.writer = CacheFileWriter(self.path, self.identity, self.anchors)

    def _only(self, evaluation: int) -> None:
        """Lets every evaluation's parts but ``evaluation``'s go from memory (a cache that does not keep)."""
        self.entries = {k: v for k, v in self.entries.items() if k[0] == evaluation}
        self.complete = {c for c in self.complete if c[0] == evaluation}

    def done(self, rows: AnchorRows, chunks) -> None:
        """A recording call finished: its chunks' parts are all kept (and appended to the file)."""
        for c in chunks:
            self.complete.add((rows.evaluation, rows.kind, rows.context, c))
        if self.writer is not None:
            self.writer.complete |= {(rows.evaluation, rows.kind, rows.context, c) for c in chunks}
            for key, value in self.entries.items():
                if key[:3] == (rows.evaluation, rows.kind, rows.context) and key[3] in chunks:
                    self.writer.append(key, value)

    def put(self, key: tuple, value: torch.Tensor) -> None:
        value = value.detach()
        self.entries[key] = value.clone() if self.place == "device" else value.to("cpu", copy=True)

    def has(self, key: tuple) -> bool:
        return key in self.entries or (self.reader is not None and key in self.reader)

    def get(self, key: tuple, like: torch.Tensor) -> torch.Tensor:
        if key in self.entries:
            value = self.entries[key]
        elif self.reader is not None and key in self.reader:
            value = self.reader.entry(key)
        else:
            raise KeyError(f"ConsiStory Use Anchors: the anchor cache has no {key[4]!r} entry for model "
                           f"evaluation {key[0]} ({key[1]} pass); this is a bug, please report it")
        return value.to(like.device, like.dtype, non_blocking=True)

    def take_x0(self, evaluation: int) -> torch.Tensor | None:
        """The anchors' denoised estimate kept at ``evaluation`` (cond chunk), or None."""
        keys = [k for k in self.entries if k[0] == evaluation and k[4] == "x0"]
        if keys:
            return self.entries[keys[0]]
        keys = [k for k in (self.reader.keys() if self.reader is not None else ()) if k[0] == evaluation and k[4] == "x0"]
        return self.reader.entry(keys[0]) if keys else None

    @property
    def nbytes(self) -> int:
        """Bytes held in memory (a file's parts are the page cache's, not the cache's)."""
        return sum(t.numel() * t.element_size() for t in self.entries.values())

    def evaluation_bytes(self, evaluation: int) -> tuple[int, bool]:
        """(bytes kept for ``evaluation``, whether they hold shared attention parts)."""
        parts = [(k, t) for k, t in self.entries.items() if k[0] == evaluation]
        return sum(t.numel() * t.element_size() for _, t in parts), any(k[4] in SHARED_PARTS for k, _ in parts)

    # -- the size, the budget, the file ---------------------------------------------------
    def settle(self, evaluation: int, remaining: int, device=None) -> None:
        """``evaluation`` is recorded whole, ``remaining`` are still to record: the first time
        it holds shared parts the whole cache is sized and logged; a cache in memory that
        would not fit its budget (older caches evicted first) stops keeping, a file that
        would not fit the disk is not written. Either way the images are the same."""
        step, shared = self.evaluation_bytes(evaluation)
        if self.estimate is not None or not shared:
            return
        kept = self.writer.nbytes if self.writer is not None else self.nbytes
        self.estimate = kept + step * remaining
        where = {"cpu": "CPU memory", "device": "device memory", "file": f"the file {self.path}"}[self.place]
        logging.info(f"ConsiStory Use Anchors: the anchor cache will take about {human(self.estimate)} in {where} "
                     f"({human(step)} per model evaluation, {remaining} more to record)")
        if self.place == "file":
            free = free_disk(os.path.dirname(os.path.abspath(self.path)))
            if self.estimate - kept > free:
                self.writer.abort()
                self.writer, self._no_file = None, True
                self._refuse(f"anchor cache file of {human(self.estimate)} does not fit in the {human(free)} free on "
                             "its disk: recording the anchors at every step instead (the same images, slower)")
            return
        held = sum(c.nbytes for c in _CACHES.values() if c.place == self.place and c is not self)
        free = free_bytes(self.place, device) if self.budget_gb <= 0 else 0
        budget, chosen = budget_bytes(self.budget_gb, free, held + self.nbytes)
        if make_room(_CACHES, self, self.estimate, budget):
            return
        self.keeping = False
        self._only(evaluation)
        self._refuse(f"anchor cache of {human(self.estimate)} does not fit in {chosen}: replaying the anchors "
                     "instead (the same images, slower: the anchors are computed at every step); choose 'CPU "
                     "memory + file beside the bank' to keep it on disk, or set cache_budget_gb")

    def _refuse(self, message: str) -> None:
        if message not in self._told:
            self._told.add(message)
            logging.warning(f"ConsiStory Use Anchors: {message}")

    def finish(self) -> None:
        """The bank's last evaluation is recorded: the file gets its index and is read from
        now on (its parts leave memory); the size is logged."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                writer.finish()
            except OSError as e:  # e.g. the old file still open elsewhere (Windows)
                writer.abort()
                self._no_file = True
                self._refuse(f"the anchor cache file {self.path} cannot be written ({e}); recording the anchors "
                             "at every step instead (the same images, slower)")
                return
            self.entries = {}
            self._open(self.path)
        if self.keeping or self.reader is not None:
            logging.info(f"ConsiStory Use Anchors: anchor cache ready: {self.summary()}")

    def summary(self) -> str:
        evaluations = len({k[0] for k in self.complete})
        if self.reader is not None:
            return (f"{self.anchors} anchors, {evaluations} model evaluations, {human(self.reader.data_bytes)} "
                    f"in {self.reader.path}")
        where = "CPU memory" if self.place == "cpu" else "device memory"
        return f"{self.anchors} anchors, {evaluations} model evaluations, {self.nbytes / 2**20:.1f} MiB in {where}"


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


_CACHES: OrderedDict = OrderedDict()  # (bank digest, place) -> AnchorCache, least recently used first


def cache_for(bank, place: str, budget_gb: float = 0.0) -> AnchorCache:
    """The anchor cache of a bank in ``place`` (the same for every Use Anchors run with this
    bank, so new prompts reuse it); caches in memory stay until a new one needs their room
    (AnchorCache.settle)."""
    return registered(AnchorCache(bank.anchors, place, bank_digest(bank)), budget_gb)


def forget_caches() -> None:
    """Empties every cache and the registry (a Use Anchors model made before records again)."""
    for cache in _CACHES.values():
        cache.drop()
    _CACHES.clear()


def registered(cache: AnchorCache, budget_gb: float | None = None) -> AnchorCache:
    """The cache of ``cache``'s bank and place in the registry, now the most recently used:
    that one, or ``cache`` itself where there is none (new, or evicted since: then empty).
    budget_gb: the budget of the run that uses it; a cache that did not fit another budget is
    sized again."""
    key = (cache.bank_key, cache.place)
    cache = _CACHES.setdefault(key, cache)
    _CACHES.move_to_end(key)
    if budget_gb is not None and cache.budget_gb != budget_gb:
        cache.budget_gb = budget_gb
        if not cache.keeping and cache.place != "file":
            cache.keeping, cache.estimate = True, None
    return cache
