"""The reference models, verbatim: the AE and VAE (with its loss) that aelab started from.

The benchmark's `reference` and `in-memory` loops train them as written, so that aelab's own
models are timed against the code a user would otherwise run. Flattened images in [0, 1],
B x 784; the AE returns B x 784, the VAE (B x 784, mu B x 20, logvar B x 20).
"""

import torch
from torch import nn


class Autoencoder(nn.Module):
    def __init__(self):
        super(Autoencoder, self).__init__()  # noqa: UP008 - as the reference wrote it
        self.encoder = nn.Sequential(
            nn.Linear(28 * 28, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 12),
        )
        self.decoder = nn.Sequential(
            nn.Linear(12, 64),
            nn.ReLU(),
            nn.Linear(64, 128),
            nn.ReLU(),
            nn.Linear(128, 28 * 28),
            nn.Sigmoid(),
        )

    def forward(self, x):
        encoded = self.encoder(x)
        decoded = self.decoder(encoded)
        return decoded


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()  # noqa: UP008 - as the reference wrote it
        self.encoder = nn.Sequential(
            nn.Linear(28 * 28, 400),
            nn.ReLU(),
            nn.Linear(400, 200),
            nn.ReLU(),
            nn.Linear(200, 100),
        )
        self.mu = nn.Linear(100, 20)
        self.logvar = nn.Linear(100, 20)
        self.decoder = nn.Sequential(
            nn.Linear(20, 100),
            nn.ReLU(),
            nn.Linear(100, 200),
            nn.ReLU(),
            nn.Linear(200, 400),
            nn.ReLU(),
            nn.Linear(400, 28 * 28),
            nn.Sigmoid(),
        )

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def forward(self, x):
        encoded = self.encoder(x)
        mu = self.mu(encoded)
        logvar = self.logvar(encoded)
        z = self.reparameterize(mu, logvar)
        decoded = self.decoder(z)
        return decoded, mu, logvar


def vae_loss_function(recon_x, x, mu, logvar):
    """The reference VAE's `loss_function` with its `criterion = nn.BCELoss(reduction='sum')`."""
    BCE = nn.functional.binary_cross_entropy(recon_x, x, reduction="sum")  # noqa: N806
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())  # noqa: N806
    return BCE + KLD
