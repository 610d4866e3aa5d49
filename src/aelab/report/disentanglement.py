"""The "Disentanglement" section of a sweep report (experiment=disentanglement): each
`disent/<metric>` against each model's hyperparameter (median and range over seeds), the
Spearman rank correlation between the metrics over all completed runs, as Locatello et al.
(2019, sec. 5, fig. 2) compare them, and latent traversals of each model's best run
(`traversals.png`). From `load_sweep`'s DataFrame."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from aelab.report.groups import column, completed, sort_key

PREFIX = "disent/"
# each model's hyperparameter in disentanglement_lib's study, by the study's name of the model
HYPERPARAMETER = {
    "beta-VAE": "beta",
    "beta-TCVAE": "beta",
    "FactorVAE": "gamma",
    "DIP-VAE-I": "lambda_od",
    "DIP-VAE-II": "lambda_od",
    "AnnealedVAE": "kl_schedule.c_max",
}
LABELS = {"VAE": "beta-VAE", "BetaTCVAE": "beta-TCVAE", "FactorVAE": "FactorVAE"}


def model_label(model: Any, dip_type: Any, kl_schedule: Any = None) -> str:
    """The study's name of a run's model: DIP-VAE-I / -II by `dip_type`, AnnealedVAE for a VAE
    with the capacity schedule."""
    if model == "DIPVAE":
        return f"DIP-VAE-{str(dip_type).upper()}"
    if model == "VAE" and kl_schedule == "capacity":
        return "AnnealedVAE"
    return LABELS.get(str(model), str(model))


def _labelled(jobs: pd.DataFrame) -> pd.DataFrame:
    """`jobs` with a `study_model` column: each job's `model_label`."""
    triples = zip(jobs["model"], column(jobs, "dip_type"), column(jobs, "kl_schedule"), strict=True)
    return jobs.assign(study_model=[model_label(*t) for t in triples])


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
    done = _labelled(done)
    rows = []
    for label, runs in done.groupby("study_model", sort=False):
        key = HYPERPARAMETER.get(str(label))
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


def best_runs(jobs: pd.DataFrame, metric: str = "disent/mig") -> dict[str, pd.Series]:
    """Each model's (`model_label`) completed job with the highest `metric`; {} without it."""
    done = completed(jobs)
    if metric not in done or not done[metric].notna().any():
        return {}
    done = _labelled(done).dropna(subset=[metric])
    return {
        str(label): runs.loc[runs[metric].idxmax()]
        for label, runs in done.groupby("study_model", sort=False)
    }


def traversal_figure(
    jobs: pd.DataFrame, metric: str = "disent/mig", steps: int = 7, limit: float = 2.0
) -> Figure | None:
    """Latent traversals of each model's best run by `metric` (`best_runs`): one panel per
    model, a row per latent unit (most informative first, by its test KL `test/kl_dim_j`), each
    unit moved over linspace(-limit, limit, steps) with the others at the prior mean 0, decoded
    (Higgins et al. 2017, fig. 7). None when no run has the metric or a checkpoint."""
    best = best_runs(jobs, metric)
    if not best:  # before any import: a sweep without the scores loads no torch or Lightning
        return None
    import torch  # the report imports no torch until a run is decoded
    from torchvision.utils import make_grid

    from aelab.api import RunFolderError, load_run

    panels = []
    for label, job in best.items():
        try:
            model = load_run(job["path"]).model
        except RunFolderError:
            continue
        d = model.latent_dim
        kl = [job.get(f"test/kl_dim_{j}", math.nan) for j in range(d)]
        order = sorted(range(d), key=lambda j: -kl[j] if math.isfinite(kl[j]) else 0.0)
        z = torch.zeros(d, steps, d)
        for row, j in enumerate(order):
            z[row, :, j] = torch.linspace(-limit, limit, steps)
        with torch.no_grad():
            images = model.decode(z.reshape(-1, d).to(model.device)).sigmoid().cpu()
        grid = make_grid(images, nrow=steps, padding=1, pad_value=0.5)
        panels.append((f"{label}: {metric.removeprefix(PREFIX)} {job[metric]:.3g}", grid))
    if not panels:
        return None
    fig = Figure(figsize=(2.6 * len(panels), 3.4), layout="constrained")
    for k, (title, grid) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray")
        ax.set_title(title, fontsize=7)
        ax.set_axis_off()
    fig.suptitle(
        f"Latent traversals, z_j in [-{limit:g}, {limit:g}] (rows: units by KL)", fontsize=9
    )
    return fig
