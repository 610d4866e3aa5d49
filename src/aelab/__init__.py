"""aelab: an autoencoder laboratory (AE, beta-VAE, DAE on MNIST) on Hydra and PyTorch Lightning.

For notebooks: `aelab.load_sweep(sweep_dir)`, a sweep as a pandas DataFrame (one row per job;
`aelab.report.load.load_sweep`). `import aelab` itself imports neither torch nor pandas.
"""

from pathlib import Path
from typing import Any

from aelab.resolvers import register_resolvers

__version__ = "0.1.0"
# The Hydra configs live beside src/ in the repository (an editable install, as `make` does).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

register_resolvers()


def __getattr__(name: str) -> Any:
    # loaded when first used: pandas and the report's modules cost a notebook, not every run
    if name == "load_sweep":
        from aelab.report.load import load_sweep

        return load_sweep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
