"""An anchor cache as a file beside its bank (§4.4), written evaluation by evaluation while
the first run records it and read back part by part when a step needs it, so neither the
recording nor the reuse holds the whole cache in memory.

The file is the tensors' raw bytes one after another (each at a multiple of 64 bytes), then
a JSON index (format, identity, anchors, each entry's key, offset, dtype and shape, the
evaluations kept whole), then the index's length (8 bytes, little endian) and ``MAGIC``.
It is written as NAME.<pid>.partial and renamed when whole, so a reader never sees half a
file and two processes recording the same bank each finish their own. A reader maps the
file and views each entry in place: the operating system's page cache holds what was read
and can drop it again, where an in-memory cache would hold every part for good.
"""
from __future__ import annotations

import json
import mmap
import os
import struct

import torch

MAGIC = b"ConsiStory anchor cache 3\n"
FORMAT = "consistory.anchor_cache.3"
ALIGN = 64


def key_of(items: list) -> tuple:
    """A JSON list back to an entry key (layers are lists in JSON, tuples in keys)."""
    return tuple(tuple(x) if isinstance(x, list) else x for x in items)


def dtype_of(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"not a torch dtype: {name!r}")
    return dtype


class CacheFileWriter:
    """Appends entries to ``path``'s partial file; ``finish`` gives it its index and name."""

    def __init__(self, path: str, identity: str, anchors: int):
        self.path, self.identity, self.anchors = str(path), identity, anchors
        self.partial = f"{self.path}.{os.getpid()}.partial"
        self._file = open(self.partial, "wb")
        self.index: dict = {}
        self.complete: set = set()  # the evaluations (evaluation, kind, context, chunk) written whole
        self.offset = 0

    def append(self, key: tuple, tensor: torch.Tensor) -> None:
        data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
        self.index[json.dumps(list(key))] = (self.offset, str(tensor.dtype), list(tensor.shape))
        pad = -len(data) % ALIGN
        self._file.write(data + b"\0" * pad)
        self.offset += len(data) + pad

    @property
    def nbytes(self) -> int:
        return self.offset

    def finish(self) -> None:
        """Writes the index and renames the partial file to ``path`` (replacing an older one)."""
        index = json.dumps({"format": FORMAT, "identity": self.identity, "anchors": self.anchors,
                            "entries": self.index, "complete": sorted(list(c) for c in self.complete)}).encode()
        self._file.write(index + struct.pack("<Q", len(index)) + MAGIC)
        self._file.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Closes and removes the partial file (an interrupted or refused recording)."""
        self._file.close()
        if os.path.exists(self.partial):
            os.remove(self.partial)


class CacheFileReader:
    """A finished cache file, mapped: ``entry(key)`` views one part in place, (its shape)."""

    def __init__(self, path: str):
        self.path = str(path)
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            tail = len(MAGIC) + 8
            if size < tail:
                raise ValueError("too short for an anchor cache file")
            f.seek(size - tail)
            length, magic = struct.unpack("<Q", f.read(8))[0], f.read(len(MAGIC))
            if magic != MAGIC or length > size - tail:
                raise ValueError("not an anchor cache file of this version")
            f.seek(size - tail - length)
            meta = json.loads(f.read(length))
            # copy-on-write: torch views it as writable; nothing is ever written to it
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self.format, self.identity, self.anchors = meta["format"], meta["identity"], meta["anchors"]
        self.entries = {key_of(json.loads(k)): (off, dtype_of(dtype), shape)
                        for k, (off, dtype, shape) in meta["entries"].items()}
        self.complete = {key_of(c) for c in meta["complete"]}
        self.data_bytes = size - tail - length

    def __contains__(self, key: tuple) -> bool:
        return key in self.entries

    def keys(self):
        return self.entries.keys()

    def entry(self, key: tuple) -> torch.Tensor:
        """The entry's tensor, viewing the mapped file (read from disk when first touched)."""
        offset, dtype, shape = self.entries[key]
        count = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        if count == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(self._map, dtype=torch.uint8, count=count, offset=offset).view(dtype).reshape(shape)

    def close(self) -> None:
        """Unmaps the file unless a tensor still views it (then the mapping goes with the last one)."""
        try:
            self._map.close()
        except BufferError:
            pass
