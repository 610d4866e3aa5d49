"""The "Model zoo" section of a sweep report: one row per model, the figures that tell the
model family apart (each model's own test figures beside the shared ones). From `load_sweep`'s
DataFrame, grouped as the main table is (`aelab.report.tables.group_jobs`)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from aelab.report.groups import column, completed, group_jobs, group_stats

ZOO_FIGURES = {
    "test/recon_mse": "pixel-mean squared error",
    "test/psnr": "PSNR (dB)",
    "test/iw_nll": "importance-weighted -log p(x) (nats; VAE-type)",
    "test/kl": "KL rate (nats; VAE-type)",
    "test/active_units": "active units (VAE-type)",
    "test/index_code_mi": "index-code MI (nats)",
    "test/total_correlation": "total correlation (nats)",
    "test/dimwise_kl": "dimension-wise KL (nats)",
    "test/rate_bits": "rate (bits; VQ-VAE)",
    "test/codebook_perplexity": "codebook perplexity (VQ-VAE)",
    "test/codebook_usage": "fraction of codes used (VQ-VAE)",
    "test/mean_activation": "mean code activation (sparse AE)",
    "test/contraction": "encoder Jacobian ||J||_F^2 (contractive AE)",
    "test/linear_probe_acc": "linear probe accuracy",
    "test/knn_acc": "k-NN accuracy",
    "test/gen/prior/fid": "FID of prior samples (digit features; docs/explanation/generation.md)",
    "test/gen/gmm/fid": "FID of GMM-sampler samples",
    "test/gen/empirical_codes/fid": "FID of empirical-code samples (VQ-VAE)",
    "test/gen/gmm/precision": "precision of GMM samples (k = 3)",
    "test/gen/gmm/recall": "recall of GMM samples (k = 3)",
}


def _label(model: Any, noise: Any) -> str:
    return str(model) if noise in ("none", None) else f"{model} ({noise} noise)"


def _cell(stats: tuple[float, float, int] | None) -> str:
    if stats is None:
        return "–"
    mean, std, n = stats
    text = f"{mean:.4g}" if math.isfinite(mean) else str(mean)
    return text + (f" ± {std:.2g}" if n > 1 else "")


def model_zoo_section(jobs: pd.DataFrame) -> list[str]:
    """Markdown lines; none unless the completed jobs hold at least two kinds of model, one of
    them beyond the AE and the VAE (their comparisons have the report's main table).

    `jobs`: `load_sweep`'s DataFrame; one row per model (with its noise), in order of first
    appearance, each figure's mean ± std over that model's completed jobs that have it."""
    done = completed(jobs)
    kinds = set(column(done, "model"))
    if len(kinds) < 2 or kinds <= {"AE", "VAE"}:
        return []
    labels = map(_label, done["model"], column(done, "noise"))
    done = done.assign(model=list(labels))
    figures = [f for f in ZOO_FIGURES if f in done and done[f].notna().any()]
    groups = group_jobs(done.drop(columns=["noise"], errors="ignore"), ["model"])
    order = {name: i for i, name in enumerate(dict.fromkeys(done["model"]))}
    rows = sorted(
        (
            [
                str(groups.at[i, ("model", "")]),
                str(groups.at[i, ("n", "")]),
                *(_cell(group_stats(groups, i, f)) for f in figures),
            ]
            for i in groups.index
        ),
        key=lambda row: order[row[0]],
    )
    rows += _floor_row(done, figures)
    header = ["model", "n", *(f.removeprefix("test/") for f in figures)]
    lines = [
        "## Model zoo",
        "",
        "Test figures by model (mean ± std over seeds; –: not a figure of that model).",
        "",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    described = "; ".join(f"{f.removeprefix('test/')}: {ZOO_FIGURES[f]}" for f in figures)
    return [*lines, "", f"Columns: {described}.", ""]


def _floor_row(done: pd.DataFrame, figures: list[str]) -> list[list[str]]:
    """The real-data floor (held-out real test images scored as samples) as its own row: each
    generation column gets the floor's figure of the same score, over all completed jobs."""
    if "test/gen/floor/fid" not in done or done["test/gen/floor/fid"].isna().all():
        return []
    cells = []
    for f in figures:
        floor = "test/gen/floor/" + f.rsplit("/", 1)[-1] if f.startswith("test/gen/") else None
        values = done[floor].dropna() if floor in done else pd.Series(dtype=float)
        std = float(values.std()) if len(values) > 1 else 0.0
        cells.append(_cell((float(values.mean()), std, len(values))) if len(values) else "–")
    return [["real data (floor)", str(int(done["test/gen/floor/fid"].notna().sum())), *cells]]
