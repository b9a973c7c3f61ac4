"""Tensors derived from a weight (launch.packed_weight's layouts, winograd.transformed_weight's U,
functional.autocast_args's casts), computed once per weight and reused while the weight is
unchanged, the way inference engines prepare weights at load time. Inputs are never cached.

"Unchanged" is decided from the weight's metadata on the host, with no device work: a content
checksum would cost a pass over the weight, and on CUDA a host sync, on every call. A cached value
is reused only if the weight still has
  - the same storage (the storage object, not its address, so a block freed and reallocated at the
    same address does not pass): `p.data = t`, `.to()`, `.half()` and `load_state_dict(assign=True)`
    swap it;
  - the same storage offset, shape, strides and dtype: `p.data = p.data.transpose(2, 3)` keeps the
    storage and changes the strides;
  - the same version counter: in-place ops on the weight or any view of it (`mul_`, `copy_`,
    `load_state_dict`) bump it;
and no other tensor holds its storage. A write through another tensor on the same storage does not
bump the weight's version counter: torch.nn.utils.vector_to_parameters points parameters into the
vector (later edits to a reused vector), `p.data = t` shares t's storage, `alias = p.data` keeps one.
A weight sharing its storage is therefore prepared again on every call, never cached. That also
covers aliases that do share the version counter, which cannot be told apart: while a
model.state_dict() or the state dict given to load_state_dict(assign=True) is kept alive, the
weights it holds are prepared on every call (drop it, or copy it, to have them cached).

What metadata cannot show: an in-place edit through a temporary `.data` (`p.data.mul_(2)`,
`p.data.copy_(t)`) writes the storage and leaves no alias behind, without bumping the version, and
so does a write to memory PyTorch does not track (the numpy array behind torch.from_numpy, a DLPack
producer); call zeroskip.kernels.launch.clear_packed_weights() after one, or edit under
torch.no_grad() without `.data`. Inference-mode tensors have no version counter: prepared on every
call.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils.weak import WeakIdKeyDictionary

# weight -> {key: (stamp, value)}; keyed by tensor identity (tensors compare elementwise, so a plain
# WeakKeyDictionary cannot hold them), dropped with the weight
_CACHE = WeakIdKeyDictionary()
_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _sole_owner_count() -> int:
    """The use count of a storage that one tensor holds, read the way cached() reads it."""
    global _SOLE
    if _SOLE is None:
        one = torch.empty(1)  # alive while its storage is counted
        _SOLE = _use_count(one.untyped_storage()._cdata)
    return _SOLE


_SOLE = None


def cached(weight: torch.Tensor, key: tuple, make, *args):
    """make(*args), derived from weight, computed once per (weight, key) and reused while weight is
    unchanged (module docstring). key names what make derives (e.g. ("packed", k_major, split))."""
    try:
        meta = (weight._version, weight.storage_offset(), weight.shape, weight.stride(), weight.dtype)
        storage = weight.untyped_storage()
    except (RuntimeError, NotImplementedError):  # inference-mode tensors, tensors without storage
        return make(*args)
    if _use_count is None or _use_count(storage._cdata) != _sole_owner_count():
        return make(*args)  # another tensor on this storage could write it unseen
    held = _CACHE.get(weight)
    if held is None:  # not setdefault: that builds a dict on every call, hits included
        held = _CACHE[weight] = {}
    hit = held.get(key)
    if hit is not None and hit[0]() is storage and hit[1] == meta:
        return hit[2]
    value = make(*args)
    # a weak reference: holding the storage would keep a replaced weight's memory alive and count
    # as a second owner
    held[key] = (weakref.ref(storage), meta, value)
    return value


def clear() -> None:
    """Forgets every cached value."""
    _CACHE.clear()
