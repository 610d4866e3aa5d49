"""M members' encoders and decoders as one flat parameter tensor and a stacked forward.

Each parameter of the members is one leaf tensor (M, *shape) (`torch.func.stack_module_state`),
member k's parameter being its slice k, a contiguous view: the optimizer can step each member's
slices as the tensors of its own model.

The forward is one batched matmul per layer: nets made only of Linear, ReLU, Flatten and
Unflatten (aelab's MLPNet) run as `baddbmm`; any other net runs its own modules under
`vmap(functional_call)`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

SUBMODULES = ("encoder", "decoder")


def _leaf_plan(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The leaf modules in call order when `module` is Sequentials of Linear, ReLU, Flatten and
    Unflatten only (then the stacked forward needs no vmap), else None. (Any other container
    is not one of these, so the order of `named_modules` is the call order.)"""
    plan = []
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Sequential):
            continue
        if not isinstance(sub, nn.Linear | nn.ReLU | nn.Flatten | nn.Unflatten):
            return None
        plan.append((name, sub))
    return plan


def _stacked_dim(dim: int) -> int:
    """A per-sample module's dim (batch first) in the stacked tensor (member first)."""
    return dim + 1 if dim >= 0 else dim


class StackedNets:
    """The encoders and decoders of `models`, stacked: `leaves`, (M, *shape) each, require grad."""

    def __init__(self, models: Sequence[nn.Module], device: torch.device) -> None:
        self.count = len(models)
        first = models[0]
        self.names: list[tuple[str, str]] = []
        self.shapes: list[torch.Size] = []
        for sub in SUBMODULES:
            for name, p in getattr(first, sub).named_parameters():
                self.names.append((sub, name))
                self.shapes.append(p.shape)
        self.plans = {sub: _leaf_plan(getattr(first, sub)) for sub in SUBMODULES}
        # a Linear weight of a baddbmm net is kept transposed, (M, in, out): the matmul's weight
        # gradient then comes laid out like the leaf, as the fused Adam kernel reads it
        linear_weights = {
            (sub, f"{name}.weight")
            for sub in SUBMODULES
            for name, module in (self.plans[sub] or [])
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
        self.buffers: dict[str, dict[str, Tensor]] = {}
        self.bases: dict[str, nn.Module] = {}
        for sub in SUBMODULES:
            if self.plans[sub] is None:
                buffers = {
                    n: torch.stack([dict(getattr(m, sub).named_buffers())[n] for m in models])
                    for n, _ in getattr(first, sub).named_buffers()
                }
                self.buffers[sub] = {k: v.to(device) for k, v in buffers.items()}
                self.bases[sub] = copy.deepcopy(getattr(first, sub)).to("meta")

    def params(self) -> dict[str, dict[str, Tensor]]:
        """Per submodule, per parameter name: the (M, *shape) leaf (a baddbmm net's Linear
        weights transposed: (M, in, out))."""
        out: dict[str, dict[str, Tensor]] = {sub: {} for sub in SUBMODULES}
        for (sub, name), leaf in zip(self.names, self.leaves, strict=True):
            out[sub][name] = leaf
        return out

    def member(self, k: int) -> list[Tensor]:
        """Member k's parameters: views of the leaves, in its model's `parameters()` order."""
        return [leaf[k] for leaf in self.leaves]

    def run(self, sub: str, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """The stacked `sub` (encoder/decoder) on x: (M, B, ...) -> (M, B, ...)."""
        plan = self.plans[sub]
        if plan is None:
            base, buffers = self.bases[sub], self.buffers[sub]

            def one(p1: dict[str, Tensor], b1: dict[str, Tensor], x1: Tensor) -> Tensor:
                return functional_call(base, (p1, b1), (x1,))

            return vmap(one)(params, buffers, x)
        for name, module in plan:
            if isinstance(module, nn.Linear):
                weight = params[f"{name}.weight"]  # (M, in, out)
                bias = params.get(f"{name}.bias")
                x = (
                    torch.bmm(x, weight)
                    if bias is None
                    else torch.baddbmm(bias.unsqueeze(1), x, weight)
                )
            elif isinstance(module, nn.ReLU):
                x = torch.relu(x)
            elif isinstance(module, nn.Flatten):
                x = x.flatten(_stacked_dim(module.start_dim), _stacked_dim(module.end_dim))
            else:  # nn.Unflatten
                x = x.unflatten(_stacked_dim(module.dim), module.unflattened_size)
        return x

    @torch.no_grad()
    def copy_to(self, k: int, model: nn.Module) -> None:
        """Member k's weights into its ordinary model (same parameter order)."""
        targets = [p for sub in SUBMODULES for p in getattr(model, sub).parameters()]
        for target, leaf, flip in zip(targets, self.leaves, self.transposed, strict=True):
            target.copy_(leaf[k].T if flip else leaf[k])

    def describe(self) -> dict[str, Any]:
        return {sub: "baddbmm" if self.plans[sub] else "vmap" for sub in SUBMODULES}
