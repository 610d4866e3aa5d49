"""The "Posterior collapse" section of a sweep report: for a sweep over `kl_schedule` (e.g.
`experiment=posterior_collapse`), the figures that say how much of the latent space a VAE uses
under each schedule, with their spread over seeds."""

from __future__ import annotations

import math

import pandas as pd

from aelab.report.groups import column, completed, group_jobs, sweep_variables

COLLAPSE_FIGURES = {
    "test/active_units": "active units (Cov_x E_q[z_j] > eval.active_threshold)",
    "test/kl": "KL(q(z|x) || p(z)), the rate (nats per image)",
    "test/mutual_info": "I(x; z) under q (nats; at most log of the images averaged over)",
    "test/iw_nll": "importance-weighted bound on -log p(x) (nats per image)",
}


def _cell(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    mean = values.mean()
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {values.std():.2g} [{values.min():.4g}, {values.max():.4g}]"


def posterior_collapse_section(jobs: pd.DataFrame) -> list[str]:
    """Markdown lines; none unless the completed jobs hold two or more `kl_schedule`s. One row
    per schedule setting (the swept `kl_schedule*` columns), each figure's mean ± std [min, max]
    over the seeds."""
    done = completed(jobs)
    if len(set(column(done, "kl_schedule"))) < 2:
        return []
    keys = [v for v in sweep_variables(jobs) if v.startswith("kl_schedule")]
    figures = [f for f in COLLAPSE_FIGURES if f in done and done[f].notna().any()]
    if not figures:
        return []
    lines = [
        "## Posterior collapse",
        "",
        "Test figures per KL schedule: mean ± std [min, max] over seeds.",
        "",
    ]
    header = ["kl_schedule", "n", *(f.removeprefix("test/") for f in figures)]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    order = group_jobs(done, keys)  # the report's order of the settings
    settings = [{k: order.at[i, (k, "")] for k in keys} for i in order.index]
    # a setting is named by its kind and the fields that tell it from another of the same kind
    telling = {
        k
        for k in keys
        for a in settings
        for b in settings
        if k != "kl_schedule" and a["kl_schedule"] == b["kl_schedule"] and a[k] != b[k]
    }
    for setting in settings:
        mask = pd.Series(True, index=done.index)
        for k, v in setting.items():
            col = column(done, k)
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            mask &= col.isna() if missing else col == v
        runs = done[mask]
        name = ", ".join(
            f"{k.removeprefix('kl_schedule.')}={setting[k]}"
            for k in keys
            if k in telling and setting[k] is not None
        )
        label = str(setting["kl_schedule"]) + (f" ({name})" if name else "")
        cells = [label, str(len(runs)), *(_cell(runs[f]) for f in figures)]
        lines.append("| " + " | ".join(cells) + " |")
    described = "; ".join(f"{f.removeprefix('test/')}: {COLLAPSE_FIGURES[f]}" for f in figures)
    return [*lines, "", f"Columns: {described}.", ""]
