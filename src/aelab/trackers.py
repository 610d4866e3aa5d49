"""Experiment trackers beside TensorBoard, each through its own Lightning logger (`logger=mlflow`,
`logger=many`); the tracker's package is an extra (`pip install 'aelab[mlflow]'`), refused in one
line before training when missing.

MLflow gets what TensorBoard gets, in its own form: the HParams row as the run's params (the
composed config, flattened, with the row's names), every scalar by step, metrics.json's figures
and file, and the checkpoints as artifacts. A resumed run continues its MLflow run: the run id
is kept in the run folder (`mlflow_run.json`).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning import loggers as pl_loggers
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

from aelab.checks import ConfigError

RUN_ID_FILE = "mlflow_run.json"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None for it (blocked)
        return False


def require_package(logger: str, module: str, extra: str) -> None:
    """Refuse `logger=<logger>` when `module` is not installed, naming the extra to install."""
    if not _installed(module):
        raise ConfigError(
            "logger",
            logger,
            f"an installed tracker: the {module} package is missing (pip install 'aelab[{extra}]')",
            grouped=True,
        )


class MLFlowLogger(pl_loggers.MLFlowLogger):
    """Lightning's MLFlowLogger, one MLflow run per aelab run folder.

    Args:
        run_dir: the run folder (`paths.output_dir`): its name is the MLflow run's name, and
            `mlflow_run.json` there keeps the run id, so `resume=...` logs into the same run.
        Others: Lightning's (`tracking_uri`: a `file:` store or `http://host:port`).

    Raises ConfigError (one line, naming `pip install 'aelab[mlflow]'`) when mlflow is missing.
    """

    def __init__(
        self,
        run_dir: str,
        experiment_name: str = "aelab",
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        log_model: bool | str = True,
        artifact_location: str | None = None,
    ) -> None:
        require_package("mlflow", "mlflow", "mlflow")
        self._run_file = Path(run_dir) / RUN_ID_FILE
        run_id = None
        if self._run_file.is_file():  # a resumed run: its MLflow run, not a new one
            run_id = json.loads(self._run_file.read_text())["run_id"]
        super().__init__(
            experiment_name=experiment_name,
            run_name=Path(run_dir).name,
            tracking_uri=tracking_uri,
            tags={"aelab.run_dir": str(run_dir), **(tags or {})},
            log_model=log_model,
            artifact_location=artifact_location,
            run_id=run_id,
        )
        self._logged: set[str] = set()  # the metrics' names logged by step

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        client = super().experiment
        if not self._run_file.is_file() and self._run_id is not None:
            self._run_file.parent.mkdir(parents=True, exist_ok=True)
            record = {"run_id": self._run_id, "tracking_uri": self._tracking_uri}
            self._run_file.write_text(json.dumps(record, indent=2) + "\n")
        return client

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        # Lightning logs the model's constructor arguments when fit starts (an AttributeDict,
        # nested: `net/hidden`); the run's params are the HParams row aelab logs when the run
        # completes (`net.hidden`), and MLflow refuses a param logged twice with two values
        if isinstance(params, Mapping) and type(params) is not dict:
            _ = self.experiment  # the run exists (and its id is kept) from the start
            return
        super().log_hyperparams(params)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        # MLflow takes numbers only: a flag (bool) is logged as 0/1
        self._logged.update(metrics)
        super().log_metrics({k: float(v) for k, v in metrics.items()}, step)

    @rank_zero_only
    def log_run_figures(self, run_dir: Path) -> None:
        """metrics.json's numeric figures not logged by step already (flags, figures of the
        test-time suite computed at its end) as metrics, and the file itself as an artifact."""
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            return
        figures = json.loads(path.read_text())
        numbers = {
            k: float(v)
            for k, v in figures.items()
            if isinstance(v, int | float) and k != "step" and k not in self._logged
        }
        if numbers:
            super().log_metrics(numbers)
        self.experiment.log_artifact(self.run_id, str(path))
