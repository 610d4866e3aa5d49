"""aelab's Lightning callbacks, one module per job.

Imported lazily by name (`from aelab.callbacks import ImageGrids`): the evaluation suite's module
loads matplotlib and the probes, which a run that only trains or only handles faults does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aelab.callbacks.data_range import DataRangeCheck
    from aelab.callbacks.disentanglement import DisentanglementScores
    from aelab.callbacks.eval_suite import EvaluationSuite
    from aelab.callbacks.faults import GracefulInterrupt, NonFiniteLossGuard
    from aelab.callbacks.image_grids import ImageGrids
    from aelab.callbacks.reference import ReferenceTable
    from aelab.callbacks.run_config import RunConfigInCheckpoints
    from aelab.callbacks.slurm import SlurmRequeue
    from aelab.callbacks.timing import PhaseTimer
    from aelab.callbacks.validate import ValidateAtMaxSteps

_MODULES = {
    "DataRangeCheck": "data_range",
    "DisentanglementScores": "disentanglement",
    "EvaluationSuite": "eval_suite",
    "GracefulInterrupt": "faults",
    "NonFiniteLossGuard": "faults",
    "ImageGrids": "image_grids",
    "PhaseTimer": "timing",
    "RunConfigInCheckpoints": "run_config",
    "ReferenceTable": "reference",
    "SlurmRequeue": "slurm",
    "ValidateAtMaxSteps": "validate",
}

__all__ = [
    "DataRangeCheck",
    "DisentanglementScores",
    "EvaluationSuite",
    "GracefulInterrupt",
    "ImageGrids",
    "NonFiniteLossGuard",
    "PhaseTimer",
    "ReferenceTable",
    "RunConfigInCheckpoints",
    "SlurmRequeue",
    "ValidateAtMaxSteps",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
