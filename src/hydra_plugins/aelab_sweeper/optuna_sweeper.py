"""`hparams_search=vae_optuna`'s sweeper: Hydra's Optuna sweeper, ending with the report and one
line when no trial reached a finite objective (it is here: Hydra takes a sweeper only from the
`hydra_plugins` package)."""

from __future__ import annotations

import logging
import math
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper

# where Hydra's Optuna sweeper logs its best trial ("Best parameters: ...", "Best value: ...")
_OPTUNA_LOG = "hydra_plugins.hydra_optuna_sweeper._impl"
_BEST_LINES = ("Best parameters:", "Best value:")


def finite_objective(ret: JobReturn) -> bool:
    """True when a trial's job completed and returned a finite number (its `val/loss`)."""
    if ret.status != JobStatus.COMPLETED:
        return False
    try:
        return math.isfinite(float(ret.return_value))
    except (TypeError, ValueError):  # None: the job never validated
        return False


def _finite_trials(study_name: str | None, storage: Any) -> int:
    """The completed trials with a finite value of a study kept in `storage`; 0 for none."""
    if storage is None or study_name is None:
        return 0
    # here, not at the top: Hydra imports every plugin module for every app (`aelab-train`
    # too), and optuna takes seconds to import; Hydra's own Optuna sweeper defers it likewise
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # not made yet: this command starts it
        return 0
    done = optuna.trial.TrialState.COMPLETE
    return sum(
        t.state == done and len(t.values or ()) == 1 and math.isfinite(t.values[0])
        for t in study.get_trials(deepcopy=False)
    )


class FiniteOptunaSweeper(optuna_sweeper.OptunaSweeper):
    """Hydra's Optuna sweeper (`hydra/sweeper=optuna`'s options), whose study ends cleanly when no
    trial reached a finite objective (`hparams_search=vae_optuna` sets it as `_target_`).

    Hydra's sweeper raises "No trials are completed yet" (a traceback, no report) when every
    trial's objective is None (jobs that never validated: a budget that ends before the first
    validation, Lightning#6791) and names a "Best trial ... inf" when every trial diverged.
    Here neither is logged: the sweep ends normally, and `aelab.report.cli.WriteReport` writes
    the report and one error line. A study continued from a storage counts its earlier trials.
    """

    def setup(self, **kwargs: Any) -> None:
        super().setup(**kwargs)
        impl = self.sweeper
        self.finite = 0  # trials that returned a finite objective, this study's earlier ones too
        launch = impl.launcher.launch

        def counting_launch(*args: Any, **launch_kwargs: Any) -> Any:
            returns = launch(*args, **launch_kwargs)
            self.finite += sum(finite_objective(r) for r in returns)
            return returns

        impl.launcher.launch = counting_launch
        self.finite = _finite_trials(impl.study_name, impl.storage)

    def _no_best_line(self, record: logging.LogRecord) -> bool:
        return self.finite > 0 or not str(record.msg).startswith(_BEST_LINES)

    def sweep(self, arguments: list[str]) -> None:
        logger = logging.getLogger(_OPTUNA_LOG)
        logger.addFilter(self._no_best_line)
        try:
            super().sweep(arguments)
        except ValueError as err:
            if self.finite > 0 or "No trials are completed yet" not in str(err):
                raise
        finally:
            logger.removeFilter(self._no_best_line)
