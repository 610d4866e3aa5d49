"""What the decoder makes of the latent space: prior samples, interpolations, traversals, and for
a 2-d code the decoded manifold and the scatter of test codes by label.

Grids come back as image tensors (torchvision's make_grid) for PNG and TensorBoard alike. Ranges
follow the test codes: mean +- a few standard deviations of the aggregate posterior (its
variance is Var(mu) + E[sigma^2], the codes' variance for a deterministic autoencoder).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.utils import make_grid

Decode = Callable[[Tensor], Tensor]  # latent codes -> pixel intensities in [0, 1]


def _grid(images: Tensor, nrow: int) -> Tensor:
    return make_grid(images.cpu(), nrow=nrow, pad_value=1.0)


def interpolations(
    decode: Decode, z_a: Tensor, z_b: Tensor, x_a: Tensor, x_b: Tensor, steps: int = 8
) -> Tensor:
    """One row per pair: image a, `steps` decodings along the line z_a -> z_b, image b."""
    t = torch.linspace(0, 1, steps, device=z_a.device).view(1, steps, 1)
    path = (1 - t) * z_a[:, None] + t * z_b[:, None]  # (pairs, steps, d)
    decoded = decode(path.flatten(0, 1)).view(len(z_a), steps, *x_a.shape[1:])
    rows = torch.cat([x_a[:, None], decoded, x_b[:, None]], dim=1)
    return _grid(rows.flatten(0, 1), nrow=steps + 2)


def traversals(
    decode: Decode, z: Tensor, center: Tensor, scale: Tensor, steps: int = 9, span: float = 3.0
) -> Tensor:
    """One row per latent dimension j: z with z_j swept over center_j +- span * scale_j."""
    d = z.shape[0]
    offsets = torch.linspace(-span, span, steps, device=z.device)
    codes = z.repeat(d, steps, 1)  # (d, steps, d)
    dims = torch.arange(d, device=z.device)
    codes[dims, :, dims] = center[:, None] + offsets[None, :] * scale[:, None]
    return _grid(decode(codes.flatten(0, 1)), nrow=steps)


def manifold(decode: Decode, center: Tensor, scale: Tensor, steps: int = 20) -> Tensor:
    """A 2-d code decoded on a grid at the normal quantiles 5%..95% of each axis (Kingma &
    Welling's figure); the first axis runs left to right, the second bottom to top."""
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, steps))
    q = q.to(center.device)
    u = center[0] + scale[0] * q
    v = center[1] + scale[1] * q.flip(0)
    codes = torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=-1)  # (steps, steps, 2)
    return _grid(decode(codes.flatten(0, 1)), nrow=steps)


def latent_scatter(codes: Tensor, labels: Tensor) -> Figure:
    """The test codes of a 2-d latent space, one colour per digit."""
    fig = Figure(figsize=(6, 5.5), dpi=100)  # no pyplot: no GUI backend, no global state
    ax = fig.subplots()
    points = ax.scatter(
        *codes.cpu().T.numpy(), c=labels.cpu().numpy(), cmap="tab10", s=2, vmin=-0.5, vmax=9.5
    )
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set(
        xlabel="$z_1$",
        ylabel="$z_2$",
        title="test set in latent space (codes; VAE: posterior means)",
    )
    fig.set_layout_engine("tight")
    return fig
