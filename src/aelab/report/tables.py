"""The report's tables, from `load_sweep`'s DataFrame: what the sweep varies, its completed jobs
grouped over seeds (`groupby().agg()`: mean, std, count), summary.csv and summary.md."""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from aelab.metric_names import HEADLINE
from aelab.report.collapse import posterior_collapse_section
from aelab.report.disentanglement import disentanglement_section
from aelab.report.groups import (
    column,
    completed,
    group_jobs,
    group_key,
    group_stats,
    sort_key,
)
from aelab.report.load import JOB_COLUMNS
from aelab.report.zoo import model_zoo_section

OPTUNA_FILE = "optimization_results.yaml"
# --- formatting -------------------------------------------------------------------------------


def num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _stat(stats: tuple[float, float, int] | None) -> str:
    if stats is None:
        return ""
    mean, std, n = stats
    return f"{mean:.4g} ± {std:.2g}" if n > 1 else f"{mean:.4g}"


def label(key: Sequence[Any], variables: Sequence[str]) -> str:
    return ", ".join(f"{v}={num(x)}" for v, x in zip(variables, key, strict=True)) or "all"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in rows)]


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def aligned_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A table as padded columns, for a terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


# --- summary.csv --------------------------------------------------------------------------------


def summary_csv(jobs: pd.DataFrame) -> str:
    """One row per job: name, status, error, every hyper-parameter, every metric (as Python
    writes a float; empty where a job has none)."""
    columns = [*JOB_COLUMNS, *jobs.attrs["hparams"], *jobs.attrs["metrics"]]
    return jobs[columns].to_csv(index=False, lineterminator="\n", na_rep="")


# --- summary.md -------------------------------------------------------------------------------


def _dcae_baseline() -> dict[int, float]:
    """Ruff et al.'s DCAE one-class AUROC (%) per digit, where aelab's evaluation provides it."""
    try:
        from aelab.metrics.anomaly import DCAE_BASELINE_AUROC
    except ImportError:
        return {}
    return dict(DCAE_BASELINE_AUROC)


def _anomaly_section(jobs: pd.DataFrame, variables: Sequence[str]) -> list[str]:
    scored = completed(jobs)
    scored = scored[column(scored, "test/auroc").notna()]
    if scored.empty:
        return []
    others = [v for v in variables if v != "classes"]
    baseline = _dcae_baseline()
    groups = group_jobs(scored, ["classes", *others])
    rows = []
    for i in groups.index:
        key = group_key(groups, i)
        try:
            classes = ast.literal_eval(str(key[0]))
        except (ValueError, SyntaxError):
            classes = None
        single = classes[0] if isinstance(classes, list) and len(classes) == 1 else None
        mean, std, n = group_stats(groups, i, "test/auroc") or (math.nan, 0.0, 0)  # all have it
        auroc = f"{100 * mean:.1f} ± {100 * std:.1f}" if n > 1 else f"{100 * mean:.1f}"
        ref = baseline.get(single) if single is not None else None
        rows.append([str(key[0]), *(num(x) for x in key[1:]), str(n), auroc, num(ref)])
    return [
        "## One-class anomaly detection",
        "",
        "Trained on the normal digit(s) only; AUROC (%) for telling the other test digits apart, "
        "beside the DCAE of Ruff et al. (2018, Table 1).",
        "",
        *_md_table(["normal digits", *others, "n", "AUROC %", "DCAE %"], rows),
        "",
    ]


def _optuna_section(sweep: Path) -> list[str]:
    path = sweep / OPTUNA_FILE
    if not path.is_file():
        return []
    study = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if "best_params" in study and not math.isfinite(float(study.get("best_value", math.nan))):
        # every trial diverged or failed (the objective of those is inf): none is best
        body = ["No trial reached a finite validation loss: the study has no best trial."]
    elif "best_params" in study:
        params = ", ".join(f"{k}={num(v)}" for k, v in study["best_params"].items())
        body = [f"Best trial: {params}; validation loss {num(study.get('best_value'))}."]
    else:  # several objectives: the Pareto front
        body = [f"- {s['params']}: {s['values']}" for s in study.get("solutions", [])]
    return ["## Optuna study", "", *body, f"(from `{OPTUNA_FILE}`)", ""]


def _headline_metrics(sweep: Path, jobs: pd.DataFrame) -> list[str]:
    done = completed(jobs)
    metrics = [m for m in HEADLINE if m in done and done[m].notna().any()]
    if (sweep / OPTUNA_FILE).is_file():
        metrics.insert(0, "val/loss")
    return metrics


def headline_table(
    sweep: Path, jobs: pd.DataFrame, variables: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """summary.md's main table: header and rows, one row per group of completed jobs (the
    variables, n, each headline metric's mean ± std over seeds)."""
    metrics = _headline_metrics(sweep, jobs)
    header = [*variables, "n", *(m.removeprefix("test/") for m in metrics)]
    groups = group_jobs(jobs, variables)
    rows = [
        [
            *(num(x) for x in group_key(groups, i)),
            str(groups.at[i, ("n", "")]),
            *(_stat(group_stats(groups, i, m)) for m in metrics),
        ]
        for i in groups.index
    ]
    return header, rows


def summary_markdown(
    sweep: Path, jobs: pd.DataFrame, variables: Sequence[str], plots: Sequence[Path]
) -> str:
    metrics = _headline_metrics(sweep, jobs)
    seeds = sorted(set(column(jobs, "seed")), key=sort_key)
    counts = jobs["status"].value_counts(sort=False)
    lines = [
        f"# Sweep report: {sweep.name}",
        "",
        f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ". "
        f"Swept: {', '.join(variables) or 'nothing'}; seeds: {', '.join(map(str, seeds))}.",
        "Test-set figures of the completed jobs, mean ± std over seeds where there are several "
        "(n: completed jobs).",
        "",
    ]
    lines += [*_md_table(*headline_table(sweep, jobs, variables)), ""]
    described = [f"{m.removeprefix('test/')}: {HEADLINE[m]}" for m in metrics if m in HEADLINE]
    lines += ["Columns: " + "; ".join(described) + ".", ""] if described else []
    lines += _optuna_section(sweep)
    lines += _anomaly_section(jobs, variables)
    lines += model_zoo_section(jobs)
    lines += posterior_collapse_section(jobs)
    lines += disentanglement_section(jobs)
    unfinished = jobs[jobs["status"] != "completed"]
    if not unfinished.empty:
        lines += ["## Jobs that did not complete", ""]
        rows = unfinished[["job", "status", "error"]].itertuples(index=False)
        lines += _md_table(["job", "status", "error"], ([j, s, _one_line(e)] for j, s, e in rows))
        lines.append("")
    if plots:
        lines += ["## Plots", "", *(f"![{p.stem}]({p.name})" for p in plots), ""]
    return "\n".join(lines)


def failed_jobs_line(sweep: Path, jobs: pd.DataFrame) -> str | None:
    """One line naming the jobs that did not complete (failed, interrupted, no metrics.json);
    None when every job completed."""
    failed = jobs[jobs["status"] != "completed"]
    if failed.empty:
        return None
    names = ", ".join(f"{j} ({s})" for j, s in zip(failed["job"], failed["status"], strict=True))
    summary = sweep / "summary.md"
    return f"{len(failed)} of {len(jobs)} jobs did not complete, see {summary}: {names}"
