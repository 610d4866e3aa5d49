"""Metrics: running means of per-image figures, the likelihood and information estimators, and
one-class AUROC.

The probes (scikit-learn) and the generation figures (matplotlib) are imported from their
modules, so importing a model does not load those libraries; the test-time suite that runs them
all is a callback, `aelab.callbacks.EvaluationSuite`.
"""

from aelab.metrics.anomaly import DCAE_BASELINE_AUROC, anomaly_scores, one_class_auroc
from aelab.metrics.iw_bound import (
    active_units,
    bits_per_dim,
    iw_log_likelihood,
    kl_per_dim,
    mutual_information,
    neg_elbo_per_image,
)
from aelab.metrics.running import RunningMeans

__all__ = [
    "DCAE_BASELINE_AUROC",
    "RunningMeans",
    "active_units",
    "anomaly_scores",
    "bits_per_dim",
    "iw_log_likelihood",
    "kl_per_dim",
    "mutual_information",
    "neg_elbo_per_image",
    "one_class_auroc",
]
