"""aelab: an autoencoder laboratory (AE, beta-VAE, DAE on MNIST) on Hydra and PyTorch Lightning.

For notebooks: `aelab.load_sweep(sweep_dir)`, a sweep as a pandas DataFrame (one row per job;
`aelab.report.load.load_sweep`). `import aelab` itself imports neither torch nor pandas.
"""

from pathlib import Path

from aelab.resolvers import register_resolvers

__version__ = "0.1.0"
# The Hydra configs: conf/ at the top of the repository in a checkout (an editable install, as
# `make` does, or PYTHONPATH=src); a wheel carries the same files as the package `aelab.conf`.
_CHECKOUT_CONF = Path(__file__).resolve().parents[2] / "conf"
CONFIG_DIR = str(_CHECKOUT_CONF)
CONFIG_PATH = CONFIG_DIR if (_CHECKOUT_CONF / "train.yaml").is_file() else "pkg://aelab.conf"

register_resolvers()

# The Python API (`aelab.load_run`, `aelab.load_sweep`), imported on first use: `import aelab`
# (every entry point, the torch-free report) stays free of torch and Lightning
_API = {
    "load_run": "aelab.api",
    "Run": "aelab.api",
    "RunFolderError": "aelab.api",
    "load_sweep": "aelab.report.load",
    "from_pretrained": "aelab.share",
}


def __getattr__(name: str) -> object:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'aelab' has no attribute {name!r}")
