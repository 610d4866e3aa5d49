"""The "Model zoo" section of a sweep report: one row per model, the figures that tell the
model family apart (each model's own test figures beside the shared ones). Self-contained: it
reads the jobs' `hparams` and `metrics` only, so the report can call it wherever it lives."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

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
}


def _label(hparams: dict[str, Any]) -> str:
    noise = hparams.get("noise", "none")
    model = str(hparams.get("model", "?"))
    return model if noise in ("none", None) else f"{model} ({noise} noise)"


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    text = f"{mean:.4g}" if math.isfinite(mean) else str(mean)
    return text + (f" ± {statistics.stdev(values):.2g}" if len(values) > 1 else "")


def model_zoo_section(jobs: Sequence[Any]) -> list[str]:
    """Markdown lines; none unless the completed jobs hold at least two kinds of model, one of
    them beyond the AE and the VAE (their comparisons have the report's main table)."""
    done = [j for j in jobs if j.status == "completed"]
    models: dict[str, list[Any]] = {}
    for job in done:
        models.setdefault(_label(job.hparams), []).append(job)
    kinds = {j.hparams.get("model") for j in done}
    if len(kinds) < 2 or kinds <= {"AE", "VAE"}:
        return []
    figures = [f for f in ZOO_FIGURES if any(f in j.metrics for j in done)]
    header = ["model", "n", *(f.removeprefix("test/") for f in figures)]
    rows = [
        [
            name,
            str(len(group)),
            *(_cell([j.metrics[f] for j in group if f in j.metrics]) for f in figures),
        ]
        for name, group in models.items()
    ]
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
