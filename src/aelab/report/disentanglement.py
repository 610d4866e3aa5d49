"""The "Disentanglement" section of a sweep report (experiment=disentanglement): each
`disent/<metric>` against each model's hyperparameter (median and range over seeds), and the
Spearman rank correlation between the metrics over all completed runs, as Locatello et al.
(2019, sec. 5, fig. 2) compare them. From `load_sweep`'s DataFrame."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from aelab.report.groups import column, completed, sort_key

PREFIX = "disent/"
# each model's hyperparameter in disentanglement_lib's study
HYPERPARAMETER = {"VAE": "beta", "BetaTCVAE": "beta", "FactorVAE": "gamma", "DIPVAE": "lambda_od"}
LABELS = {"VAE": "beta-VAE", "BetaTCVAE": "beta-TCVAE", "FactorVAE": "FactorVAE"}


def model_label(model: Any, dip_type: Any) -> str:
    """The study's name of a run's model: DIP-VAE-I / -II by `dip_type`."""
    if model == "DIPVAE":
        return f"DIP-VAE-{str(dip_type).upper()}"
    return LABELS.get(str(model), str(model))


def _median_range(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    text = f"{values.median():.3g}"
    return text if len(values) == 1 else f"{text} [{values.min():.3g}, {values.max():.3g}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def disentanglement_section(jobs: pd.DataFrame) -> list[str]:
    """Markdown lines; none unless completed jobs hold `disent/*` figures.

    Table 1: per model and hyperparameter value (`HYPERPARAMETER`; models outside the study
    show their `model` alone), the median [min, max] over seeds of each metric. Table 2: the
    Spearman rank correlation of each pair of metrics over all completed runs."""
    done = completed(jobs)
    metrics = [c for c in done.columns if c.startswith(PREFIX) and done[c].notna().any()]
    if not metrics:
        return []
    labels = [
        model_label(m, d) for m, d in zip(done["model"], column(done, "dip_type"), strict=True)
    ]
    done = done.assign(study_model=labels)
    rows = []
    for label, runs in done.groupby("study_model", sort=False):
        key = HYPERPARAMETER.get(str(runs["model"].iloc[0]))
        values = runs[key] if key in runs else pd.Series([None] * len(runs), index=runs.index)
        for value in sorted(set(values.dropna()) or {None}, key=sort_key):
            group = runs if value is None else runs[values == value]
            setting = "–" if value is None else f"{key}={value:g}"
            cells = [_median_range(group[m]) for m in metrics]
            rows.append([str(label), setting, str(len(group)), *cells])
    names = [m.removeprefix(PREFIX) for m in metrics]
    lines = [
        "## Disentanglement",
        "",
        "Scores against the known factors by model and hyperparameter: median [min, max] over "
        "seeds (n: completed runs). Each score is in [0, 1], higher is better.",
        "",
        *_table(["model", "hyperparameter", "n", *names], rows),
        "",
    ]
    if len(done) >= 3 and len(metrics) >= 2:
        corr = done[metrics].corr(method="spearman")
        table = [
            [names[i], *(_number(corr.iat[i, j]) for j in range(len(metrics)))]
            for i in range(len(metrics))
        ]
        lines += [
            f"Spearman rank correlation between the scores over the {len(done)} runs "
            "(Locatello et al. 2019, fig. 2):",
            "",
            *_table(["", *names], table),
            "",
        ]
    return lines


def _number(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.2f}"
