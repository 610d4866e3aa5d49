"""The vector-quantised VAE (van den Oord, Vinyals & Kavukcuoglu 2017).

The encoder's output is cut into `latent_dim / code_dim` code vectors, each replaced by its
nearest of K codebook vectors; the decoder sees the quantised code, the gradient skips the
quantiser (straight-through). The rate is fixed: log2 K bits per code vector. The codebook
learns by its loss term or, optionally, by exponential moving averages (their Appendix A.1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from aelab.checks import ConfigError, check_float, check_int
from aelab.losses import recon_nll
from aelab.models.base import AutoencoderModule

EMA_EPS = 1e-5  # Laplace smoothing of the EMA counts: an unused code keeps a finite vector


def quantize(z_e: Tensor, codebook: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest codebook vector (squared Euclidean distance) of each code vector.

    z_e: (..., D); codebook: (K, D). Returns the indices (...) and the vectors (..., D)."""
    flat = z_e.reshape(-1, z_e.shape[-1])
    dist = (
        flat.square().sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.square().sum(1)[None]
    )
    idx = dist.argmin(1)
    return idx.view(z_e.shape[:-1]), codebook[idx].view(z_e.shape)


def code_counts(indices: Tensor, k: int) -> Tensor:
    """How often each of the k codes is used: shape (k,)."""
    return torch.bincount(indices.flatten(), minlength=k)


def perplexity_tensor(indices: Tensor, k: int) -> Tensor:
    """exp(entropy) of the codes' empirical distribution, a 0-d tensor on indices' device."""
    p = code_counts(indices, k).double()
    p = p / p.sum()
    return (-torch.xlogy(p, p).sum()).exp()


def perplexity(indices: Tensor, k: int) -> float:
    """exp(entropy) of the codes' empirical distribution: k for uniform use, 1 for one code."""
    return float(perplexity_tensor(indices, k))


def codebook_figures(indices: Tensor, k: int) -> dict[str, float]:
    """The test figures of a VQ code: `rate_bits` (log2 K per code vector times the number of
    code vectors per image), `codebook_perplexity` and `codebook_usage` (fraction of the K codes
    used at least once). indices: (images, vectors per image)."""
    return {
        "rate_bits": indices.shape[1] * math.log2(k),
        "codebook_perplexity": perplexity(indices, k),
        "codebook_usage": float((code_counts(indices, k) > 0).double().mean()),
    }


class VQVAE(AutoencoderModule):
    """L = -log p(x | dec(z_q)) + ||sg[z_e] - z_q||^2 + commitment * ||z_e - sg[z_q]||^2 per
    image (squared norms summed over the code; the middle term left out with `ema`, the EMA
    updates moving the codebook instead).

    Logged: `recon` (nats for bce), `codebook` and `commitment` (squared distances, not nats)
    and `batch_perplexity`. No prior is learned, so there is no `sample`: decoding codes drawn
    uniformly shows noise, not what the model learned (see the evaluation suite).

    Raises ConfigError for code_dim not dividing latent_dim, codebook_size < 2, a negative
    commitment or ema_decay outside [0, 1).
    """

    why_not_stackable = (  # its jobs run alone in a stacked sweep
        "its codebook lies outside the encoder and decoder and (ema=true) moves in place "
        "outside the gradient; a stack holds only encoder and decoder weights per member"
    )

    def __init__(
        self,
        latent_dim: int = 16,
        codebook_size: int = 64,
        code_dim: int = 4,
        commitment: float = 0.25,
        ema: bool = False,
        ema_decay: float = 0.99,
        recon_loss: str = "mse",
        **kwargs: Any,
    ) -> None:
        k = check_int("codebook_size", codebook_size, 2)
        code_dim = check_int("code_dim", code_dim, 1)
        if isinstance(latent_dim, int) and latent_dim % code_dim:
            raise ConfigError("code_dim", code_dim, f"a divisor of model.latent_dim={latent_dim}")
        commitment = check_float("commitment", commitment, 0.0)
        if not isinstance(ema, bool):
            raise ConfigError("ema", ema, "true or false")
        decay = check_float("ema_decay", ema_decay, 0.0, 1.0)
        if decay == 1.0:
            raise ConfigError("ema_decay", ema_decay, "a number in [0.0, 1.0)")
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            codebook_size=k,
            code_dim=code_dim,
            commitment=commitment,
            ema=ema,
            ema_decay=decay,
            **kwargs,
        )
        self.k, self.code_dim, self.commitment = k, code_dim, commitment
        self.ema, self.ema_decay = ema, decay
        self.n_vectors = latent_dim // code_dim
        init = torch.empty(k, code_dim).uniform_(-1.0 / k, 1.0 / k)  # the authors' init
        self.codebook = nn.Parameter(init, requires_grad=not ema)
        if ema:
            self.register_buffer("ema_count", torch.ones(k))
            self.register_buffer("ema_sum", init.clone())

    def _code(self, x: Tensor) -> Tensor:
        return self.encoder(x).view(x.shape[0], self.n_vectors, self.code_dim)

    def code_indices(self, x: Tensor) -> Tensor:
        """The codebook index of each code vector: shape (batch, latent_dim / code_dim)."""
        return quantize(self._code(x), self.codebook)[0]

    def encode(self, x: Tensor) -> Tensor:
        """The quantised code: shape (batch, latent_dim)."""
        return quantize(self._code(x), self.codebook)[1].flatten(1)

    def loss(
        self, x_in: Tensor, target: Tensor, generator: torch.Generator | None = None
    ) -> tuple[dict[str, Tensor], Tensor]:
        z_e = self._code(x_in)
        idx, z_q = quantize(z_e, self.codebook)
        if self.ema and self.training and torch.is_grad_enabled():
            self._ema_update(z_e.detach(), idx)
        # straight-through: the decoder sees z_q, its gradient lands on z_e unchanged
        logits = self.decode((z_e + (z_q - z_e).detach()).flatten(1))
        recon = recon_nll(self.recon_loss, logits, target).mean()
        codebook = (z_e.detach() - z_q).square().flatten(1).sum(1).mean()
        commitment = (z_e - z_q.detach()).square().flatten(1).sum(1).mean()
        loss = recon + self.commitment * commitment + (0.0 if self.ema else codebook)
        parts = {
            "loss": loss,
            "recon": recon,
            "codebook": codebook,
            "commitment": commitment,
            "batch_perplexity": perplexity_tensor(idx, self.k).to(recon.dtype),
        }
        return parts, logits

    @torch.no_grad()
    def _ema_update(self, z_e: Tensor, idx: Tensor) -> None:
        """N_i <- g N_i + (1-g) n_i, m_i <- g m_i + (1-g) sum z_e, e_i = m_i / N_i (smoothed).

        Single-process: under DDP each process would move its own copy (not synced)."""
        one_hot = nn.functional.one_hot(idx.flatten(), self.k).to(z_e.dtype)  # (n, K)
        g = self.ema_decay
        self.ema_count.mul_(g).add_(one_hot.sum(0), alpha=1 - g)
        self.ema_sum.mul_(g).add_(one_hot.T @ z_e.reshape(-1, self.code_dim), alpha=1 - g)
        total = self.ema_count.sum()
        count = (self.ema_count + EMA_EPS) / (total + self.k * EMA_EPS) * total
        self.codebook.data.copy_(self.ema_sum / count[:, None])
