"""Peak activation memory of a block of torch code: what its ops allocate beyond the weights
and inputs that existed before it, whatever the device (process RSS cannot tell the two apart).
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Returns its input tensor: a tensor made outside the dispatcher inside the block (torch.tensor).
FRESH = (torch.ops.aten.lift_fresh.default,)


def storage_key(t) -> tuple | None:
    """(device, data_ptr) of a dense tensor's storage; None where there is no countable one."""
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.device.type == "meta":
        return None
    storage = t.untyped_storage()
    return (str(t.device), storage.data_ptr()) if storage.nbytes() else None


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of the tensor storages that ops create while the block runs and that are still
    alive: ``.current`` now, ``.peak`` the most after any op, ``.cuda_peak`` (CUDA only, else None).

    Every op's tensor outputs are looked at. A storage that is not one of the op's inputs'
    storages and not already tracked is new: its ``nbytes()`` is added once, however many
    tensors (views, results of in-place ops) come to hold it, and taken off when the last of
    those Python tensors dies. Storages that existed before the block (weights, inputs, views
    of them, in-place ops on them) count 0.

    It cannot see what a kernel allocates and frees inside one op (the workspace of fused
    attention kernels, cuBLAS/cuDNN workspaces), the allocator's caching and fragmentation,
    nor a storage that lives on only in tensors made outside the dispatcher (C++ internals).
    ``.cuda_peak`` is the CUDA caching allocator's peak allocated bytes above those allocated
    at entry: it does include in-kernel workspaces taken from that allocator.
    """

    def __enter__(self):
        self.current = self.peak = 0
        self.cuda_peak = None
        self._bytes: dict[tuple, int] = {}  # storage key -> nbytes
        self._holders: dict[tuple, int] = {}  # storage key -> live Python tensors holding it
        self._held: set[int] = set()  # id() of those tensors
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_base = torch.cuda.memory_allocated()
        super().__enter__()
        return self

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            self.cuda_peak = torch.cuda.max_memory_allocated() - self._cuda_base

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = set() if func in FRESH else {storage_key(t) for t in tree_flatten((args, kwargs))[0]}
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            key = storage_key(t)
            if key is not None and (key in self._bytes or key not in inputs):
                self._hold(t, key)
        self.peak = max(self.peak, self.current)
        return out

    def _hold(self, t: torch.Tensor, key: tuple) -> None:
        if id(t) in self._held:
            return
        if key not in self._bytes:
            self._bytes[key] = t.untyped_storage().nbytes()
            self._holders[key] = 0
            self.current += self._bytes[key]
        self._holders[key] += 1
        self._held.add(id(t))
        weakref.finalize(t, self._release, key, id(t)).atexit = False

    def _release(self, key: tuple, holder: int) -> None:
        self._held.discard(holder)
        self._holders[key] -= 1
        if not self._holders[key]:
            self.current -= self._bytes.pop(key)
            del self._holders[key]
