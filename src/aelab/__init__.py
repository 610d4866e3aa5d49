"""aelab: an autoencoder laboratory (AE, beta-VAE, DAE on MNIST) on Hydra and PyTorch Lightning."""

from pathlib import Path

from aelab.resolvers import register_resolvers

__version__ = "0.1.0"
# The Hydra configs: conf/ at the top of the repository in a checkout (an editable install, as
# `make` does, or PYTHONPATH=src); a wheel carries the same files as the package `aelab.conf`.
_CHECKOUT_CONF = Path(__file__).resolve().parents[2] / "conf"
CONFIG_DIR = str(_CHECKOUT_CONF)
CONFIG_PATH = CONFIG_DIR if (_CHECKOUT_CONF / "train.yaml").is_file() else "pkg://aelab.conf"

register_resolvers()
