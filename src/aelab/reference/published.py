"""Published figures the `experiment=reference/<name>` presets are compared with.

Each figure keeps its source (paper, table or figure, or the run log it comes from) next to it,
so a table written by `aelab.reference.table` can cite what it compares with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aelab.metrics.anomaly import DCAE_BASELINE_AUROC


@dataclass(frozen=True)
class Published:
    """One published number: `row` names what was measured, `metric` the aelab figure (a key of
    metrics.json, or one the reference callback computes) it is compared with, in `unit`."""

    row: str
    metric: str
    value: float
    unit: str
    source: str


SSE = "squared error per test image (sum over 784 pixels in [0, 1])"
HINTON = "Hinton & Salakhutdinov 2006, Science 313:504, Fig. 2B"
PYTORCH_VAE = "pytorch/examples vae/main.py, run log in pull request #1416"
BURDA = "Burda, Grosse & Salakhutdinov 2016, ICLR, Table 1 (MNIST, one stochastic layer)"
RUFF = "Ruff et al. 2018, ICML, Table 1 (MNIST, DCAE)"

PAPERS: dict[str, str] = {
    "hinton2006": "Hinton & Salakhutdinov 2006: 30-dimensional codes of MNIST",
    "pytorch_vae": "Kingma & Welling's VAE as pytorch/examples runs it",
    "burda2016": "Burda et al. 2016: VAE and IWAE, one stochastic layer",
    "ruff2018": "Ruff et al. 2018: one-class MNIST, deep convolutional autoencoder",
}

FIGURES: dict[str, tuple[Published, ...]] = {
    "hinton2006": (
        Published("deep autoencoder 784-1000-500-250-30", "test/sse_per_image", 3.00, SSE, HINTON),
        Published("logistic PCA, 30 components", "logistic_pca_sse", 8.01, SSE, HINTON),
        Published("PCA, 30 components", "pca_sse_per_image", 13.87, SSE, HINTON),
    ),
    # the log prints the test loss after every epoch; the stored copy of the pull request keeps
    # epoch 7's, the other epochs' are NaN (shown as "—")
    "pytorch_vae": tuple(
        Published(
            f"test loss after epoch {e}",
            f"epoch{e}/neg_elbo",
            106.6624 if e == 7 else math.nan,
            "nats per image",
            PYTORCH_VAE,
        )
        for e in range(1, 11)
    ),
    "burda2016": tuple(
        Published(f"{model} k={k}", metric, value, unit, BURDA)
        for model, k, nll, active in (
            ("VAE", 1, 86.76, 19),
            ("VAE", 5, 86.47, 20),
            ("VAE", 50, 86.35, 20),
            ("IWAE", 1, 86.76, 19),
            ("IWAE", 5, 85.54, 22),
            ("IWAE", 50, 84.78, 25),
        )
        for metric, value, unit in (
            ("test/iw_nll", nll, "nats per image (IW bound, k = 5000)"),
            ("test/active_units", active, "units (Cov_x E_q[z_j] > 0.01)"),
        )
    ),
    # AUROC in %, normal class c = 0..9, the mean over the paper's 10 seeds
    "ruff2018": tuple(
        Published(f"digit {c}", "test/auroc_percent", v, "AUROC %", RUFF)
        for c, v in sorted(DCAE_BASELINE_AUROC.items())
    ),
}
