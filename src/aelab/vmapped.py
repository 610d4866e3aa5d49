"""Running a computation once on the member-first storage of `torch.func.vmap`'s batched tensors.

A stacked sweep (`aelab.stacked`) runs each model's own loss under `vmap` over its members. Most
of torch's operators vectorise there by their own batching rules; two of aelab's do not do it
cheaply: a Linear layer whose M members' weights are stacked (one `baddbmm`) and the CPU
Bernoulli log-likelihood (`aelab.losses._BCEWithLogitsCPU`, a custom autograd function, whose
vmap rule torch reaches through Python machinery that costs more than the computation on a
small stack: docs/how-to/stacked-sweeps.md has the figures). Here they reach the storage
directly.

It does so with the functions torch's own `torch.func.vmap` is written with
(`torch._C._functorch`), which are not public API. Where a torch release lacks them, `AVAILABLE`
is False, `unbatched` always answers None, and every caller takes its public way (the custom
functions' vmap rules, `functional_call`): the same values, more slowly. The stacked tests check
both ways against each member's run alone.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

try:
    from torch._C._functorch import (
        _add_batch_dim,
        _unwrap_batched,
        current_level,
        get_dynamic_layer_stack_depth,
        is_batchedtensor,
        maybe_get_level,
        pop_dynamic_layer_stack,
        push_dynamic_layer_stack,
    )
except ImportError:  # pragma: no cover - every torch release aelab supports has them
    AVAILABLE = False
else:
    AVAILABLE = True


def unbatched(*tensors: Tensor) -> tuple[list[Tensor], int] | None:
    """Each tensor's storage with the vmapped dimension first ((M, *shape) for a tensor seen as
    `shape` inside the vmap), and the vmap's level; None unless exactly one vmap is active and
    every tensor is batched by it (then the caller takes its ordinary way)."""
    if not AVAILABLE or get_dynamic_layer_stack_depth() != 1:
        return None
    level = current_level()
    out = []
    for t in tensors:
        if not is_batchedtensor(t) or maybe_get_level(t) != level:
            return None
        storage, dim = _unwrap_batched(t, level)
        out.append(storage if dim == 0 else storage.movedim(dim, 0))
    return out, level


def batched(storage: Tensor, level: int) -> Tensor:
    """`storage` (M, *shape), computed by ordinary (autograd-recorded) operators from what
    `unbatched` gave, as the vmap's tensor of `shape` again."""
    return _add_batch_dim(storage, 0, level)


def outside(fn: Callable[..., Tensor], *storage: Tensor) -> Tensor:
    """fn(*storage) with the vmap set aside, as plain eager code (autograd records it as usual):
    an autograd Function called while a vmap is active goes through torch's Python machinery for
    transforms even when none of its inputs is batched. `storage`: what `unbatched` gave."""
    saved = pop_dynamic_layer_stack()
    try:
        return fn(*storage)
    finally:
        push_dynamic_layer_stack(saved)
