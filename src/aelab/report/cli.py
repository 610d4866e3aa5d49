"""`aelab-report <sweep dir>...`, and the same report written when a sweep ends (`WriteReport`):
summary.csv, summary.md, the plots and the sweep's TensorBoard event file, into the sweep; of
several sweeps, one report of all their jobs, into a folder of its own (`--out`)."""

from __future__ import annotations

import argparse
import io
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from aelab.board.summaries import write_sweep_board
from aelab.report.disentanglement import traversal_figure
from aelab.report.groups import group_jobs, sweep_variables
from aelab.report.load import (
    UNREADABLE_CONFIG,
    NotASweepError,
    comparison_dir,
    load_sweep,
    load_sweeps,
    objective_of,
)
from aelab.report.plots import PLOTS, plot_mosaic
from aelab.report.tables import (
    aligned_table,
    failed_jobs_line,
    headline_table,
    summary_csv,
    summary_markdown,
)
from aelab.run import outcome
from aelab.run.atomic import write_atomic

log = logging.getLogger("aelab.report")
PROG = "aelab-report"


def _save_figure(fig: Figure, path: Path) -> Path:
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    return write_atomic(path, png.getvalue())


def report(sweep: Path, jobs: pd.DataFrame | None = None) -> list[Path]:
    """Write the summary files and plots into `sweep`; returns the paths written.

    `jobs`: the sweep's jobs, when the caller has loaded them (`load_sweep`). Raises
    NotASweepError naming the folder when it holds no job; OSError when it cannot be written.
    """
    sweep = Path(sweep)
    jobs = load_sweep(sweep) if jobs is None else jobs
    variables = sweep_variables(jobs)
    groups = group_jobs(jobs, variables)
    sweep.mkdir(parents=True, exist_ok=True)  # a report of several sweeps: a new folder
    written = [write_atomic(sweep / "summary.csv", summary_csv(jobs))]
    plots = []
    for name, plot in PLOTS.items():
        fig = plot(groups, variables)
        if fig is not None:
            plots.append(_save_figure(fig, sweep / name))
    mosaic = plot_mosaic(jobs, variables)
    if mosaic is not None:
        plots.append(_save_figure(mosaic, sweep / "reconstructions.png"))
    traversals = traversal_figure(jobs)
    if traversals is not None:
        plots.append(_save_figure(traversals, sweep / "traversals.png"))
    md = summary_markdown(sweep, jobs, variables, plots)
    written.append(write_atomic(sweep / "summary.md", md))
    # TensorBoard: the HParams columns (the optimized metric first), and the plots of PLOTS
    logged = [p for p in plots if p.name in PLOTS]
    board = write_sweep_board(sweep, jobs, variables, logged, objective_of(jobs))
    return written + plots + ([board] if board is not None else [])


def print_headline(sweep: Path, jobs: pd.DataFrame) -> None:
    """On the sweep's terminal: summary.md's main table, as columns, and where summary.md is."""
    table = aligned_table(*headline_table(sweep, jobs, sweep_variables(jobs)))
    print("\n".join(["", *table, f"sweep report: {sweep / 'summary.md'}"]), flush=True)


class WriteReport(Callback):
    """Hydra callback (conf/hydra/default.yaml): the report, written when a sweep ends; then, if
    a job did not complete, one line naming them on stderr and exit status 1.

    Every job has run by then: `aelab-train` turns a sweep job's error into a failed job
    (metrics.json) instead of letting it end the sweep.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        try:
            jobs = load_sweep(sweep)
        except NotASweepError:
            jobs = None  # no job folders: no job ran (the Optuna sweeper with no trials, ...)
        try:
            written = report(sweep, jobs)
        except Exception as err:  # noqa: BLE001 - the report must never fail the sweep itself
            log.warning(
                "no sweep report (%s: %s); try `%s %s`", type(err).__name__, err, PROG, sweep
            )
        else:
            log.debug("wrote %s", ", ".join(p.name for p in written))
            print_headline(sweep, jobs)
        line = failed_jobs_line(sweep, jobs) if jobs is not None else None
        if line is None and _optimises(config):
            line = no_objective_line(jobs, outcome.objective(config))
        if line is not None:
            raise outcome.sweep_failed(f"aelab-{config.task_name}", line)


# what `aelab-train` returns to a sweeper that optimises (`hydra_main`'s value): the config's
# `optimized_metric` (`aelab.run.outcome.objective`)
OBJECTIVE = outcome.OBJECTIVE


def _optimises(config: DictConfig) -> bool:
    """True for a sweep whose sweeper minimises the jobs' objective (Optuna's)."""
    return "optuna" in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).lower()


def no_objective_line(jobs: pd.DataFrame | None, objective: str = OBJECTIVE) -> str | None:
    """One line when no job has a finite `objective` (the config's `optimized_metric`), so an
    optimising sweep found nothing (jobs that never validated: `trainer.check_val_every_n_epoch`
    over `max_epochs`, a step or time budget that ends first, `limit_val_batches=0`); None when
    one has."""
    if jobs is None or jobs.empty:
        return None  # no job ran: the sweep's own check says why
    values = jobs[objective] if objective in jobs else pd.Series([math.nan] * len(jobs))
    if values.map(math.isfinite).any():
        return None
    return (
        f"no job logged a finite {objective}, the objective the sweep minimises "
        f"({len(jobs)} jobs; a job that never validates has none: check "
        "trainer.check_val_every_n_epoch, trainer.limit_val_batches and the training budget)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: one line naming what was written, or one error line and exit 2."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Summarise a sweep folder of aelab-train -m: summary.csv, summary.md, plots.",
    )
    parser.add_argument(
        "sweep_dir",
        type=Path,
        nargs="+",
        help="e.g. outputs/multiruns/<day>/<time>_<tag>_train; several (outputs/multiruns/*/*): "
        "one report of all their jobs",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the report of several sweeps goes (default: outputs/reports/<day>_<time>)",
    )
    args = parser.parse_args(argv)
    sweeps = list(dict.fromkeys(args.sweep_dir))
    try:
        jobs = load_sweeps(sweeps)
        if len(sweeps) == 1 and args.out is None:
            out = sweeps[0]
        else:
            out = args.out if args.out is not None else comparison_dir(sweeps)
        written = report(out, jobs)
    except NotASweepError as err:
        raise outcome.refusal(PROG, err) from None
    for job in jobs.itertuples():
        if str(job.error).startswith(UNREADABLE_CONFIG):  # reported without it: say so
            print(f"{PROG}: warning: {job.job}: {job.error}", file=sys.stderr)
    if len(sweeps) > 1:
        print_headline(out, jobs)
    print(f"{PROG}: wrote {', '.join(p.name for p in written)} in {out}")
