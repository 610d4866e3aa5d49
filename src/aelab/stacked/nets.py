"""M members' encoders and decoders as stacked parameter tensors, and each member's loss as one
vectorised computation over them.

Each parameter of the members is one leaf tensor (M, *shape) (`torch.func.stack_module_state`),
member k's parameter being its slice k, a contiguous view: the optimizer can step each member's
slices as the tensors of its own model. A Linear weight is kept transposed, (M, in, out), and
handed to the model as its transpose: the batched matmul's weight gradient then comes laid out
like the leaf, as the fused Adam kernel reads it (no copy).

The loss is the model's own `loss` (`MemberLoss`) under `torch.func.vmap` over the members
(`StackedLoss`), on a copy of the model whose Linear layers run as one `baddbmm` for the M
members, reading the stacked leaves (an MLP) or, by `torch.func.functional_call`, the members'
batched weights (any other net); other modules run batched by torch.func's own rules. No part of
any model's objective is written here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from aelab import vmapped

SUBMODULES = ("encoder", "decoder")


class _MemberLinear(torch.autograd.Function):
    """`F.linear`, which under vmap over the members runs as one `baddbmm`: the bias added
    inside the matmul, as torch's `addmm` adds it in the model run alone (torch.func's own rule
    adds it after a `bmm`, which rounds differently where a layer is wide, and Adam turns such
    differences on weights whose gradient is ~0 into steps of up to lr)."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    @staticmethod
    def setup_context(
        ctx: Any, inputs: tuple[Tensor, Tensor, Tensor | None], output: Tensor
    ) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        # differentiable ops: a loss that differentiates its encoder (the contractive AE's
        # Jacobian) is differentiated once more for training
        x, weight = ctx.saved_tensors
        rows = grad.flatten(0, -2)
        grad_bias = rows.sum(0) if ctx.has_bias else None
        return grad @ weight, rows.mT @ x.flatten(0, -2), grad_bias

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[int | None, ...], x: Tensor, weight: Tensor, bias: Tensor | None
    ) -> tuple[Tensor, int]:
        def front(t: Tensor, dim: int | None) -> Tensor:
            return t.movedim(dim, 0) if dim is not None else t.expand(info.batch_size, *t.shape)

        x, weight = front(x, in_dims[0]), front(weight, in_dims[1])
        rows = x.reshape(info.batch_size, -1, x.shape[-1])
        if bias is None:
            out = torch.bmm(rows, weight.mT)
        else:
            out = torch.baddbmm(front(bias, in_dims[2]).unsqueeze(1), rows, weight.mT)
        return out.view(*x.shape[:-1], out.shape[-1]), 0


def _batched_matmul(x: Tensor, leaf: Tensor, bias: Tensor | None, level: int) -> Tensor:
    """x (M, ..., in) @ leaf (M, in, out) + bias (M, out) as one `baddbmm` (regular autograd
    records it), batched at `level` again (member first)."""
    rows = x.reshape(x.shape[0], -1, x.shape[-1])
    out = torch.bmm(rows, leaf) if bias is None else torch.baddbmm(bias.unsqueeze(1), rows, leaf)
    return vmapped.batched(out.view(*x.shape[:-1], out.shape[-1]), level)


class _NeedsMemberWeights(Exception):
    """A Linear layer called where its stacked weights cannot be read directly."""


class _VectorisedLinear(nn.Linear):
    """nn.Linear in a stack's copy of the model (the same function): directly under the stack's
    vmap, one `baddbmm` on the batched tensors, as torch.func runs a custom function's vmap rule
    but without its machinery (Python, costlier than a small layer's matmul); with
    `stacked` set (`StackedLoss`'s direct way), on the stacked leaves themselves. Elsewhere
    (inside a torch.func transform of the loss's own: the contractive AE's Jacobian)
    `_MemberLinear`, which needs the members' weights as batched parameters."""

    stacked: tuple[Tensor, Tensor | None] | None = None  # (leaf (M, in, out), bias (M, out))

    def forward(self, x: Tensor) -> Tensor:
        if self.stacked is not None:
            found = vmapped.unbatched(x)
            if found is None:
                raise _NeedsMemberWeights
            (x,), level = found
            return _batched_matmul(x, *self.stacked, level)
        found = vmapped.unbatched(x, self.weight, *([] if self.bias is None else [self.bias]))
        if found is None:
            return _MemberLinear.apply(x, self.weight, self.bias)
        (x, weight, *bias), level = found
        return _batched_matmul(x, weight.mT, bias[0] if bias else None, level)


class MemberLoss(nn.Module):
    """A model's `loss` as a module's forward (for vmap and `functional_call`): x_in, target,
    the draws and the KL schedule's values handed in; returns the loss parts (nats per image,
    batch means)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        x_in: Tensor,
        target: Tensor,
        draws: Mapping[str, Tensor],
        schedule: Mapping[str, Tensor],
    ) -> dict[str, Tensor]:
        parts, _ = self.model.loss(x_in, target, draws=draws, schedule=schedule)
        return parts


class StackedLoss:
    """The loss parts of a group of members, (M,) each, by `model.loss` under vmap over them.

    `model`: the group's first member, which supplies the code and everything the members share
    (a copy of it runs, its Linear layers `_VectorisedLinear`). The members' weights go in one
    of two ways:

    - directly, where every parameter of the encoder and decoder is a Linear layer's (aelab's
      MLP net): each layer reads its stacked leaves, and the vmap carries only the data, the
      draws and the schedule values (no per-step reparametrisation of the model);
    - else, or once a Linear layer is called below a transform of the loss's own (the
      contractive AE's Jacobian): `functional_call` of the copy on the members' weights,
      batched by the vmap (any net: its modules run by torch.func's batching rules).

    The copy draws nothing (vmap's randomness="error" checks it): `draws` hands in what it would.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model)
        self.linears: list[tuple[_VectorisedLinear, str, str | None]] = []
        for name, module in self.model.named_modules():
            if type(module) is nn.Linear:
                module.__class__ = _VectorisedLinear
                bias = None if module.bias is None else f"{name}.bias"
                self.linears.append((module, f"{name}.weight", bias))
        owned = {key for _, weight, bias in self.linears for key in (weight, bias) if key}
        nets = [getattr(self.model, sub) for sub in SUBMODULES]
        buffered = any(True for net in nets for _ in net.buffers())
        self.direct = (
            vmapped.AVAILABLE
            and not buffered
            and all(
                f"{sub}.{name}" in owned
                for sub, net in zip(SUBMODULES, nets, strict=True)
                for name, _ in net.named_parameters()
            )
        )
        self.objective = MemberLoss(self.model)

        def member_loss(
            x_in: Tensor, target: Tensor, draws: dict[str, Tensor], schedule: dict[str, Tensor]
        ) -> dict[str, Tensor]:
            return self.objective(x_in, target, draws, schedule)

        def member_loss_of(
            p: dict[str, Tensor], a: Tensor, b: Tensor, d: dict[str, Tensor], s: dict[str, Tensor]
        ) -> dict[str, Tensor]:
            return functional_call(self.objective, p, (a, b, d, s))

        # made once: a function, not the module (vmap names what it maps by its repr otherwise)
        self._direct = vmap(member_loss, randomness="error")
        self._functional = vmap(member_loss_of, randomness="error")

    def __call__(
        self,
        tensors: Mapping[str, Tensor],
        x_in: Tensor,
        target: Tensor,
        draws: Mapping[str, Tensor],
        schedule: Mapping[str, Tensor],
    ) -> dict[str, Tensor]:
        """tensors: `StackedNets.tensors()` (or a subset of its members, indexed alike); x_in,
        target: (M, B, C, H, W); draws: `model.draws` of each member, stacked (M, ...);
        schedule: each member's `schedule_values`, stacked (M,)."""
        draws, schedule = dict(draws), dict(schedule)
        if self.direct:
            # object.__setattr__: nn.Module's own costs more than the small layers' matmuls
            for module, weight, bias in self.linears:
                stacked = (tensors[weight].mT, None if bias is None else tensors[bias])
                object.__setattr__(module, "stacked", stacked)
            try:
                return self._direct(x_in, target, draws, schedule)
            except _NeedsMemberWeights:
                self.direct = False
            finally:
                for module, _, _ in self.linears:
                    object.__setattr__(module, "stacked", None)
        prefixed = {f"model.{name}": value for name, value in tensors.items()}
        return self._functional(prefixed, x_in, target, draws, schedule)


def _parameters_outside_nets(model: nn.Module) -> list[str]:
    """Names of the model's parameters and buffers that are not its encoder's or decoder's."""
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    return [n for n in names if n.split(".", 1)[0] not in SUBMODULES]


class StackedNets:
    """The encoders and decoders of `models`, stacked: `leaves`, (M, *shape) each, require grad.

    Raises ValueError naming a parameter or buffer outside the encoder and decoder (which a
    stack would not hold per member).
    """

    def __init__(self, models: Sequence[nn.Module], device: torch.device) -> None:
        self.count = len(models)
        first = models[0]
        outside = _parameters_outside_nets(first)
        if outside:
            raise ValueError(
                f"{type(first).__name__} holds {', '.join(outside)} beside its encoder and "
                "decoder, which a stack does not hold per member"
            )
        self.names: list[tuple[str, str]] = []
        for sub in SUBMODULES:
            for name, _ in getattr(first, sub).named_parameters():
                self.names.append((sub, name))
        linear_weights = {
            (sub, f"{name}.weight")
            for sub in SUBMODULES
            for name, module in getattr(first, sub).named_modules()
            if isinstance(module, nn.Linear)
        }
        self.transposed = [key in linear_weights for key in self.names]
        self.leaves: list[Tensor] = []
        for sub in SUBMODULES:
            stacked, _ = stack_module_state([getattr(m, sub) for m in models])
            for name, _ in getattr(first, sub).named_parameters():
                leaf = stacked[name].detach()
                if (sub, name) in linear_weights:
                    leaf = leaf.transpose(1, 2)
                self.leaves.append(leaf.to(device).contiguous().requires_grad_(True))
        self.buffers = {
            f"{sub}.{n}": torch.stack(
                [dict(getattr(m, sub).named_buffers())[n] for m in models]
            ).to(device)
            for sub in SUBMODULES
            for n, _ in getattr(first, sub).named_buffers()
        }

    def tensors(self) -> dict[str, Tensor]:
        """The stacked parameters (as the model holds them: Linear weights (M, out, in)) and
        buffers, by their names in the model."""
        names = [f"{sub}.{name}" for sub, name in self.names]
        out = {
            name: leaf.mT if flip else leaf
            for name, leaf, flip in zip(names, self.leaves, self.transposed, strict=True)
        }
        out.update(self.buffers)
        return out

    def member(self, k: int) -> list[Tensor]:
        """Member k's parameters: views of the leaves, in its model's `parameters()` order."""
        return [leaf[k] for leaf in self.leaves]

    @torch.no_grad()
    def copy_to(self, k: int, model: nn.Module) -> None:
        """Member k's weights into its ordinary model (same parameter order)."""
        targets = [p for sub in SUBMODULES for p in getattr(model, sub).parameters()]
        for target, leaf, flip in zip(targets, self.leaves, self.transposed, strict=True):
            target.copy_(leaf[k].T if flip else leaf[k])
