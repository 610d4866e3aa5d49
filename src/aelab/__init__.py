"""aelab: an autoencoder laboratory (AE, beta-VAE, DAE on MNIST) on Hydra and PyTorch Lightning."""

from pathlib import Path

from aelab.resolvers import register_resolvers

__version__ = "0.1.0"
# The Hydra configs live beside src/ in the repository (an editable install, as `make` does).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

register_resolvers()
