"""The jobs of `load_sweep`'s DataFrame grouped over seeds: one row per combination of the
swept values, `groupby().agg()` of each metric (mean, std, count)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

# a figure read under either name, each job's first: the output's PSNR; run folders written
# before it had one name in every run held it as test/psnr_denoised in noise runs
EITHER = (("test/psnr", "test/psnr_denoised"),)
STATS = ("mean", "std", "count")


def column(jobs: pd.DataFrame, name: str) -> pd.Series:
    """A column of the jobs, or None for each job when no job has it."""
    return jobs[name] if name in jobs else pd.Series([None] * len(jobs), index=jobs.index)


def completed(jobs: pd.DataFrame) -> pd.DataFrame:
    return jobs[jobs["status"] == "completed"]


# --- what was swept ---------------------------------------------------------------------------


def sweep_variables(jobs: pd.DataFrame) -> list[str]:
    """The hyper-parameters that differ between jobs, seed aside, in `hparams_row` order; then
    the command-line overrides (`+tag=a,b`, any key, any characters) that tell jobs apart which
    those leave in one group (so no two configs are merged into one row).

    When the model varies, columns that are the same for every job of one model (the preset's
    net, loss, an AE's missing beta) are left out: they say nothing the model column does not.
    """
    shown = jobs[jobs.attrs["hparams"]].map(repr)  # None, 1 and "1" apart, as written
    varying = [k for k in shown if k != "seed" and shown[k].nunique() > 1]
    if "model" in varying:
        per_model = shown.groupby("model")
        varying = [k for k in varying if k == "model" or (per_model[k].nunique() > 1).any()]
    typed = jobs[jobs.attrs.get("overrides", [])].map(repr)
    if typed.empty:
        return varying
    # an override the variables and the seed already determine (`model.latent_dim=2,8` beside
    # `latent_dim`) adds nothing; one that splits a group of them is a variable of its own
    keys = [*varying, *(["seed"] if "seed" in shown else [])]
    known = pd.concat([shown[keys], typed], axis=1)
    for k in typed:
        if typed[k].nunique() < 2:
            continue
        splits = known.groupby(keys)[k].nunique() > 1 if keys else pd.Series([True])
        if splits.any():
            varying.append(k)
            keys.append(k)
    return varying


def sort_key(value: Any) -> tuple[int, float, str]:
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, int | float):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def group_order(jobs: pd.DataFrame, variables: Sequence[str]) -> tuple[pd.Series, list[tuple]]:
    """Each job's group number (its variables' values, so over seeds) and the groups' values,
    sorted by the variables: None first, then numbers, then text."""
    if variables:
        keys = [tuple(row) for row in jobs[list(variables)].itertuples(index=False)]
    else:  # only seeds vary: one group (itertuples over no columns yields no rows)
        keys = [()] * len(jobs)
    ordered = sorted(dict.fromkeys(keys), key=lambda key: [sort_key(v) for v in key])
    number = {key: i for i, key in enumerate(ordered)}
    return pd.Series([number[k] for k in keys], index=jobs.index, dtype=int), ordered


def group_jobs(jobs: pd.DataFrame, variables: Sequence[str]) -> pd.DataFrame:
    """Completed jobs grouped by the variables (so over seeds), sorted by the variables.

    One row per group; columns `(variable, "")` (its value), `("n", "")` (completed jobs), and
    per metric `(metric, "mean" | "std" | "count")` over the jobs that have it (std: ddof 1,
    NaN for one job). `attrs["variables"]` names the variables.
    """
    done = completed(jobs)
    figures = done[done.attrs["metrics"]].copy()
    for names in EITHER:  # each job's first figure of the names, under the names joined by `|`
        present = [n for n in names if n in figures]
        if present:
            figures["|".join(names)] = figures[present].bfill(axis=1).iloc[:, 0]
    number, keys = group_order(done, variables)
    if figures.columns.empty:  # no job wrote a figure (all unfinished, or failed early)
        stats = pd.DataFrame(index=range(len(keys)), columns=pd.MultiIndex.from_arrays([[], []]))
    else:
        stats = figures.groupby(number).agg(list(STATS))
    head = pd.DataFrame(keys, columns=list(variables), dtype=object)
    head = head.where(head.notna(), None)
    head["n"] = number.value_counts().sort_index().to_numpy()
    head.columns = pd.MultiIndex.from_product([head.columns, [""]])
    groups = pd.concat([head, stats.reset_index(drop=True)], axis=1)
    groups.attrs = {"variables": list(variables)}
    return groups


def group_key(groups: pd.DataFrame, i: int) -> tuple[Any, ...]:
    """The i-th group's variable values."""
    return tuple(groups.at[i, (v, "")] for v in groups.attrs["variables"])


def group_stats(groups: pd.DataFrame, i: int, *metric: str) -> tuple[float, float, int] | None:
    """Mean, standard deviation (0 for one job) and count of a metric over the i-th group's
    jobs that have it; given several names (one of `EITHER`), each job's first one it has.
    None when no job of the group has it."""
    name = "|".join(metric)
    if (name, "count") not in groups:
        return None
    count = int(groups.at[i, (name, "count")])
    if count == 0:
        return None
    std = float(groups.at[i, (name, "std")]) if count > 1 else 0.0
    return float(groups.at[i, (name, "mean")]), std, count
