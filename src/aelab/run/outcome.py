"""How a run ends, in one place: what its metrics.json says and the exit status it gets.

For a single run, a sweep's job, a stacked member and aelab-eval alike, metrics.json's `status`
is written here only:

- `completed`: the run's figures (`val/*`, `test/*`);
- `failed`: its `error`, and what it had (the `step` a loss diverged at, the `val/*` figures of
  a fit whose test failed, the figures written before a later error);
- `interrupted`: the `step` it stopped at and the `resume` command that continues it.

The other modules raise (the exceptions below, `aelab.checks.ConfigError`, a user's model's
own) or return; `job_failed` turns what a run raised into its exit status, or, for a sweep's
job, into the worst objective so that the sweep goes on. Exit statuses:

- 0: completed;
- `FAILED` (1): a NaN loss, an error while testing, a sweep with a job that did not complete
  (`sweep_failed`); an output that cannot be written (`exit_on_config_error`);
- `REFUSED` (2): bad input, refused before anything ran (`refusal`; a ConfigError or an MNIST
  that cannot be prepared: `exit_on_config_error`);
- `stopped_by(signum)`, 128 + the signal's number: stopped by Ctrl-C (130) or SIGTERM (143);
- a user's model's own error in a single run keeps its traceback (Python's 1).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aelab.checks import ConfigError, DataSourceError
from aelab.run.atomic import write_json_atomic
from aelab.run.record import METRICS_FILE, read_metrics

# the entry point's log: the job's log names these lines as aelab-train's
log = logging.getLogger("aelab.train")

FAILED = 1
REFUSED = 2

# what a run returns to a sweeper that optimises where its config names no `optimized_metric`
OBJECTIVE = "val/loss"


def objective(cfg: Any) -> str:
    """The figure a run is judged by, lower is better: its config's `optimized_metric`, the
    value a sweep's job returns to its sweeper (Optuna's objective)."""
    return str(OmegaConf.select(cfg, "optimized_metric", default=OBJECTIVE))


def stopped_by(signum: int) -> int:
    """The exit status of a process ended by signal `signum`: 128 + its number (130, 143)."""
    return 128 + int(signum)


# --- the ways a run ends, raised where they happen ------------------------------------------------


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite. The message names the step and the loss parts."""


class TestFailedError(RuntimeError):
    """Testing failed after a completed fit; carries the `val/*` figures the fit ended with."""

    def __init__(self, cause: Exception, val_metrics: dict[str, float]) -> None:
        super().__init__(f"testing failed after training: {type(cause).__name__}: {cause}")
        self.val_metrics = val_metrics


class FolderBusyError(ConfigError):
    """Another process trains in the run folder (`aelab.run.folder.run_folder_lock`): the refused
    run touches nothing there, as none of the folder's files are its own."""


class Terminated(BaseException):
    """SIGTERM outside a training step (`sigterm_stops_the_run`): the sanity check, testing, the
    test-time suite, generation and disentanglement scoring. A BaseException, so that no
    `except Exception` on the way (a figure's own fallback, a failed test's record) takes it
    for an error; Lightning tears the trainer down and raises it on."""


@contextlib.contextmanager
def sigterm_stops_the_run() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated at once (Lightning alone only notes it, or
    ends the loop with a SIGTERMException, a SystemExit without a code: exit status 0). While
    training, `aelab.callbacks.GracefulInterrupt` takes SIGTERM over and stops after the step
    with a checkpoint; under SLURM, SIGTERM is the requeue's (`aelab.callbacks.SlurmRequeue`),
    and this handler is not installed. The handler before it is restored after the block."""
    import threading

    from aelab.slurm import under_slurm

    if under_slurm() or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class RunInterrupted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM; the message says where its checkpoint is and how
    to go on. `exit_status`: a process ended by that signal's (`stopped_by`)."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_status = stopped_by(signum)


# --- metrics.json -----------------------------------------------------------------------------


def completed(output_dir: Path, metrics: Mapping[str, Any]) -> None:
    """metrics.json of a completed run: `status` completed and `metrics` (its figures; aelab-eval
    adds the `ckpt_path` it scored)."""
    write_json_atomic(Path(output_dir) / METRICS_FILE, {"status": "completed", **metrics})


def failed(output_dir: Path, error: str, details: Mapping[str, Any] | None = None) -> None:
    """metrics.json of a failed run: `status` failed, the `error` (one line), and `details`: the
    `step` it failed at, or the figures it had."""
    record = {"status": "failed", "error": error, **(details or {})}
    write_json_atomic(Path(output_dir) / METRICS_FILE, record)


def interrupted(output_dir: Path, step: int | None, resume: str) -> None:
    """metrics.json of a stopped run: `status` interrupted, the `step` it stopped at and the
    `resume` command that continues it."""
    stopped = {"status": "interrupted", "step": step, "resume": resume}
    write_json_atomic(Path(output_dir) / METRICS_FILE, stopped)


def record_failure(output_dir: Path, message: str) -> None:
    """metrics.json says failed with `message`; a failure record the run wrote itself is kept,
    and so are figures written before the error (a run that failed after its test). A
    metrics.json that cannot be written is logged: the error that ended the run is the one
    the user gets."""
    path = Path(output_dir) / METRICS_FILE
    try:
        stored = read_metrics(output_dir)
    except (OSError, ValueError):
        stored = {}
    if stored.get("status") != "failed":
        try:
            kept = {k: v for k, v in stored.items() if k not in ("status", "error")}
            failed(output_dir, message, kept)
        except OSError as write_err:
            log.error("could not write %s: %s", path, write_err)


def completed_metrics(output_dir: Path) -> dict[str, Any] | None:
    """A run folder's metrics.json if it records a completed run, else None."""
    try:
        recorded = read_metrics(output_dir)
    except (OSError, ValueError):
        return None
    return recorded if recorded.get("status") == "completed" else None


# --- exit statuses ----------------------------------------------------------------------------

# errors whose one line says it all: no traceback in a sweep job's log
_ONE_LINE = (ConfigError, DataSourceError, OSError)


def one_line(err: BaseException) -> str:
    """`err` as one line: a ConfigError's own message, else `<type>: <message>`."""
    message = str(err) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"
    return " ".join(message.split())


def refusal(program: str, error: object) -> SystemExit:
    """Bad input refused before anything ran (a Hydra callback's or aelab-report's check): prints
    `<program>: error: <error>` on stderr; raise what it returns (exit status `REFUSED`)."""
    print(f"{program}: error: {error}", file=sys.stderr)
    return SystemExit(REFUSED)


def sweep_failed(program: str, line: str) -> SystemExit:
    """A sweep whose jobs have all run, some not completed (or none with a finite objective):
    prints `<program>: error: <line>` on stderr; raise what it returns (exit status `FAILED`;
    SystemExit, as Hydra's callbacks turn other exceptions into a warning)."""
    print(f"{program}: error: {line}", file=sys.stderr)
    return SystemExit(FAILED)


def job_failed(
    err: Exception | Terminated,
    output_dir: Path,
    in_sweep: bool,
    rank_zero: bool = True,
    program: str = "aelab-train",
) -> float:
    """What a run's error becomes. Call it from the `except` that caught `err`.

    - RunInterrupted: its message on stderr, exit status `stopped_by` its signal (a sweep too:
      Ctrl-C or SIGTERM ends the sweep); Terminated likewise (143).
    - NonFiniteLossError, TestFailedError (metrics.json already records them): in a sweep, logged
      and `math.inf`, the worst objective (Optuna's sweeper would stop the study on a job's error
      or a NaN value); in a single run, one line on stderr and exit status `FAILED`.
    - Any other error: in a sweep, metrics.json says failed (`record_failure`), one line on
      stderr and in the log, and `math.inf`: Hydra's basic sweeper would stop the sweep after
      this batch, before the report, and a bad value would end it at once; the sweep goes on and
      `aelab.report.cli.WriteReport` exits `FAILED` naming the job once all jobs are done. In a
      single run it is raised again: a ConfigError for `exit_on_config_error`'s one
      line; an error in the run's own code (a user's model) keeps its traceback, and metrics.json
      says failed when the run had started (run.json is written).

    `rank_zero`: this process writes the run's files (DDP's other processes do not).

    Returns `math.inf` for a sweep's job; raises SystemExit, or `err` again, otherwise.
    """
    if isinstance(err, RunInterrupted):
        print(f"{program}: {err}", file=sys.stderr)
        raise SystemExit(err.exit_status) from None
    if isinstance(err, Terminated):  # before the run had a folder to record it in
        print(f"{program}: terminated (SIGTERM)", file=sys.stderr)
        raise SystemExit(stopped_by(signal.SIGTERM)) from None
    if isinstance(err, NonFiniteLossError | TestFailedError):
        if isinstance(err, TestFailedError):
            # the traceback goes to the run's log; the user gets one line, like a NaN loss
            log.error("%s", err, exc_info=err.__cause__)
        elif in_sweep:
            log.error("%s", err)
        if in_sweep:
            return math.inf
        recorded = " (metrics.json records it)" if isinstance(err, TestFailedError) else ""
        print(f"{program}: error: {err}{recorded}", file=sys.stderr)
        raise SystemExit(FAILED) from None
    output_dir = Path(output_dir)
    if not in_sweep:
        if not isinstance(err, ConfigError) and (output_dir / "run.json").is_file() and rank_zero:
            record_failure(output_dir, one_line(err))
        raise err
    message = one_line(err)
    log.error("job failed: %s", message, exc_info=not isinstance(err, _ONE_LINE))
    print(f"{program}: error: {output_dir.name}: {message}", file=sys.stderr)
    # a folder another process trains in holds that process's metrics.json, not this job's
    if rank_zero and not isinstance(err, FolderBusyError):
        record_failure(output_dir, message)
    return math.inf


# an output that cannot be written: a full disk or quota, a read-only or forbidden folder
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


@contextlib.contextmanager
def exit_on_config_error(program: str) -> Iterator[None]:
    """Bad input as one line on stderr (HYDRA_FULL_ERROR=1: the traceback instead).

    Exit status 2 for a bad config value or MNIST that cannot be prepared in `data.data_dir` (the
    data source names the folder and why), 1 for an output that cannot be written (a full or
    read-only disk); other errors keep their traceback.

    Raises:
        SystemExit: 2 for a ConfigError or DataSourceError, 1 for an OSError of `WRITE_ERRNOS`,
            after printing `<program>: error: <message>` to stderr.
    """
    try:
        yield
    except (ConfigError, DataSourceError, OSError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if isinstance(err, ConfigError):
            message, status = str(err), REFUSED
        elif isinstance(err, DataSourceError):
            message, status = f"data.data_dir: {err}", REFUSED
        elif err.errno in WRITE_ERRNOS:
            message, status = (
                f"cannot write {err.filename or 'the run folder'}: {err.strerror}",
                FAILED,
            )
        else:
            raise
        print(f"{program}: error: {message}", file=sys.stderr)
        raise SystemExit(status) from None
