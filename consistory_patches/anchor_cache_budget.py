"""How much memory anchor caches may hold (§4.4's reuse, kept within a user's machine).

A cache's size is known once the first model evaluation with subject masks is recorded
(the anchors' kept patches at every layer and chunk, in the model's dtype): that
evaluation's bytes times the evaluations left, plus what is kept already. Caches kept in
the same memory (CPU RAM or the device) share one budget: the user's setting, or by
default a safe share of the memory free at that moment plus what the caches hold already
(they are the pack's to give back). To make room the least recently used caches go first,
by bytes; a cache that still does not fit is not kept (its run computes the anchors alone
at every evaluation instead, with the same images).
"""
from __future__ import annotations

import logging
import shutil
from collections import OrderedDict

SAFE_SHARE = 0.5  # of the memory free when a cache is sized


def human(nbytes: float) -> str:
    """Bytes as people read them: 6.1 GB, 37.6 MB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} B"


def free_bytes(place: str, device=None) -> int:
    """Memory free now where a cache of ``place`` lives ("cpu": RAM; "device": the UNet's device)."""
    import comfy.model_management as mm
    import torch
    return int(mm.get_free_memory(torch.device("cpu") if place == "cpu" else device))


def free_disk(path: str) -> int:
    return shutil.disk_usage(path).free


def budget_bytes(setting_gb: float, free: int, held: int) -> tuple[int, str]:
    """(bytes the caches of one memory may hold, how it was chosen): ``setting_gb`` when > 0,
    else SAFE_SHARE of ``free`` plus ``held`` (what those caches hold now)."""
    if setting_gb > 0:
        return int(setting_gb * 1e9), f"the {setting_gb:g} GB cache budget"
    return int(SAFE_SHARE * free) + held, f"{human(SAFE_SHARE * free + held)} ({SAFE_SHARE:.0%} of the free memory)"


def make_room(caches: OrderedDict, cache, needed: int, budget: int) -> bool:
    """Evicts the least recently used other caches of ``cache``'s memory (``caches``: oldest
    first) until they and ``needed`` bytes fit ``budget``; False, evicting nothing, when
    ``needed`` alone does not fit."""
    if needed > budget:
        return False
    others = [key for key, c in caches.items() if c is not cache and c.place == cache.place]
    held = sum(caches[key].nbytes for key in others)
    for key in others:
        if held + needed <= budget:
            break
        evicted = caches.pop(key)
        held -= evicted.nbytes
        logging.info(f"ConsiStory Use Anchors: an older anchor cache ({human(evicted.nbytes)}) made room")
        evicted.drop()
    return held + needed <= budget
