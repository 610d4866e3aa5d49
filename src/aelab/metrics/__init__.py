"""Metrics: running means of per-image figures, and (later) estimators and probes."""

from aelab.metrics.running import RunningMeans

__all__ = ["RunningMeans"]
