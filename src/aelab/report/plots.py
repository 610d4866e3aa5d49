"""The report's plots (matplotlib), from the groups of `aelab.report.tables.group_jobs`: the
reconstruction error vs. latent size, the rate-distortion plane of a β sweep, sample FID vs. β
and vs. latent size, PSNR vs. noise level, and a mosaic of every completed job's test
reconstructions. Each returns None when the sweep has nothing to draw for it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from aelab.report.groups import (
    column,
    completed,
    group_key,
    group_order,
    group_stats,
    sort_key,
)
from aelab.report.tables import label, num

Line = list[tuple[tuple[Any, ...], int]]  # a line's points: (group values, group row), along x


def _series(groups: pd.DataFrame, variables: Sequence[str], x_var: str) -> dict[str, Line]:
    """The groups split into lines by the variables other than `x_var`, each sorted along x."""
    i = list(variables).index(x_var)
    rest = [v for j, v in enumerate(variables) if j != i]
    lines: dict[str, Line] = {}
    for row in groups.index:
        key = group_key(groups, row)
        lines.setdefault(label([x for j, x in enumerate(key) if j != i], rest), []).append(
            (key, row)
        )
    for members in lines.values():
        members.sort(key=lambda member: sort_key(member[0][i]))
    return lines


def _points(
    groups: pd.DataFrame, members: Line, i: int, *metric: str
) -> tuple[list[float], list[float], list[float]]:
    """x (the i-th variable), mean and std of the metric, where both are numbers."""
    xs, ys, errs = [], [], []
    for key, row in members:
        stats, x = group_stats(groups, row, *metric), key[i]
        if stats is not None and isinstance(x, int | float) and math.isfinite(stats[0]):
            xs.append(float(x))
            ys.append(stats[0])
            errs.append(stats[1])
    return xs, ys, errs


def _legend(ax: Any) -> None:
    """A legend only where there are several lines (one line is labelled `all`)."""
    if len(ax.get_legend_handles_labels()[1]) > 1:
        ax.legend(fontsize=8)


def _has(groups: pd.DataFrame, metric: str) -> bool:
    return any(group_stats(groups, row, metric) for row in groups.index)


def plot_latent(groups: pd.DataFrame, variables: Sequence[str]) -> Figure | None:
    metric = "test/recon_mse"
    if "latent_dim" not in variables or not _has(groups, metric):
        return None
    i = list(variables).index("latent_dim")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, members in _series(groups, variables, "latent_dim").items():
        xs, ys, errs = _points(groups, members, i, metric)
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    sizes = sorted({v for v in groups[("latent_dim", "")] if isinstance(v, int | float)})
    ax.set_xticks(sizes, labels=[num(v) for v in sizes])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("latent size")
    ax.set_ylabel("test reconstruction error (pixel-mean MSE)")
    ax.set_title("Reconstruction error vs. latent size")
    _legend(ax)
    return fig


def plot_rate_distortion(groups: pd.DataFrame, variables: Sequence[str]) -> Figure | None:
    if "beta" not in variables or not _has(groups, "test/kl"):
        return None
    i = list(variables).index("beta")
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, members in _series(groups, variables, "beta").items():
        points = [
            (key[i], rate, dist)
            for key, row in members
            if (rate := group_stats(groups, row, "test/kl"))
            and (dist := group_stats(groups, row, "test/recon"))
        ]
        if not points:
            continue
        ax.errorbar(
            [r[0] for _, r, _ in points],
            [d[0] for _, _, d in points],
            xerr=[r[1] for _, r, _ in points],
            yerr=[d[1] for _, _, d in points],
            marker="o",
            capsize=3,
            label=name,
        )
        for beta, r, d in points:
            ax.annotate(
                f"β={num(beta)}",
                (r[0], d[0]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    ax.set_xlabel("rate: KL(q(z|x) || p(z)) on the test set (nats)")
    ax.set_ylabel("distortion: reconstruction term test/recon (nats)")
    ax.set_title("Rate-distortion plane of the β sweep")
    _legend(ax)
    return fig


def _noise_series(groups: pd.DataFrame, variables: Sequence[str]) -> dict[str, Line]:
    """The lines of the PSNR plot, one per kind of corruption (and other variables), along the
    noise level. The clean-input baseline (noise `none`, level 0; experiment=noise_sweep runs it
    once) starts every kind's line that has the same other variables; alone, it is a line."""
    if "noise" not in variables:
        return _series(groups, variables, "noise_level")
    k, i = list(variables).index("noise"), list(variables).index("noise_level")
    is_baseline = groups[("noise", "")] == "none"
    if is_baseline.all():
        return _series(groups, variables, "noise_level")
    baseline = [(group_key(groups, row), row) for row in groups.index[is_baseline]]
    others = [j for j in range(len(variables)) if j not in (k, i)]
    lines = _series(groups[~is_baseline], variables, "noise_level")
    for members in lines.values():
        first = members[0][0]
        same = [b for b in baseline if all(b[0][j] == first[j] for j in others)]
        members[:0] = sorted(same, key=lambda member: sort_key(member[0][i]))
    return lines


def plot_noise(groups: pd.DataFrame, variables: Sequence[str]) -> Figure | None:
    if "noise_level" not in variables:
        return None
    i = list(variables).index("noise_level")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    drawn = False
    for n, (name, members) in enumerate(_noise_series(groups, variables).items()):
        color = f"C{n}"
        xs, ys, errs = _points(groups, members, i, "test/psnr", "test/psnr_denoised")
        if xs:
            ax.errorbar(
                xs, ys, yerr=errs, marker="o", capsize=3, color=color, label=f"{name}: output"
            )
            drawn = True
        xs, ys, errs = _points(groups, members, i, "test/psnr_noisy_input")
        if xs:
            ax.errorbar(
                xs,
                ys,
                yerr=errs,
                marker="x",
                ls="--",
                capsize=3,
                color=color,
                label=f"{name}: noisy input",
            )
    if not drawn:
        return None
    ax.set_xlabel("noise level (Gaussian std / masking p)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title("PSNR of the denoised output and of the noisy input")
    ax.legend(fontsize=7)
    return fig


def plot_mosaic(jobs: pd.DataFrame, variables: Sequence[str], max_jobs: int = 64) -> Figure | None:
    """Every completed job's test reconstructions (inputs above outputs), titled by its values;
    in the order of the groups, then of the jobs."""
    from matplotlib.image import imread

    done = completed(jobs)
    number, _ = group_order(done, variables)
    ordered = done.assign(_group=number).sort_values("_group", kind="stable")
    image_of = {
        j: Path(p) / "images" / "test_reconstructions.png"
        for j, p in zip(ordered["job"], ordered["path"], strict=True)
    }
    with_images = ordered[[image_of[j].is_file() for j in ordered["job"]]].head(max_jobs)
    if with_images.empty:
        return None
    seeds = len(set(column(with_images, "seed"))) > 1
    shown = [*variables, "seed"] if seeds else list(variables)
    images = [imread(image_of[j]) for j in with_images["job"]]
    cols = min(4, len(images))
    rows = math.ceil(len(images) / cols)
    height = 3.2 * images[0].shape[0] / images[0].shape[1] + 0.3  # a cell: image and title
    fig = Figure(figsize=(3.2 * cols, height * rows + 0.3), layout="constrained")
    values = with_images.reindex(columns=shown).astype(object)
    values = values.where(values.notna(), None)
    # itertuples over no columns yields no rows: a sweep with no variable titles its cells ()
    keys = list(values.itertuples(index=False)) if shown else [()] * len(images)
    for k, (key, image) in enumerate(zip(keys, images, strict=True)):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(image, cmap="gray")
        ax.set_title(label(tuple(key), shown), fontsize=7)
        ax.set_axis_off()
    fig.suptitle("Test reconstructions: input / (noisy input) / output", fontsize=9)
    return fig


def _plot_fid(
    groups: pd.DataFrame, variables: Sequence[str], x_var: str, xlabel: str
) -> Figure | None:
    """FID of each sampler's samples (and of the real-data floor, dashed) against `x_var`."""
    sets = [s for s in ("prior", "gmm", "empirical_codes") if _has(groups, f"test/gen/{s}/fid")]
    if x_var not in variables or not sets:
        return None
    i = list(variables).index(x_var)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, members in _series(groups, variables, x_var).items():
        for s in [*sets, "floor"]:
            xs, ys, errs = _points(groups, members, i, f"test/gen/{s}/fid")
            style = {"linestyle": "--"} if s == "floor" else {}
            tag = "real data (floor)" if s == "floor" else s
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=f"{name}: {tag}", **style)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("FID (digit features; lower is better)")
    ax.set_title(f"Sample FID vs. {xlabel}")
    _legend(ax)
    return fig


def plot_fid_vs_beta(groups: pd.DataFrame, variables: Sequence[str]) -> Figure | None:
    return _plot_fid(groups, variables, "beta", "β")


def plot_fid_vs_latent(groups: pd.DataFrame, variables: Sequence[str]) -> Figure | None:
    return _plot_fid(groups, variables, "latent_dim", "latent size")


PLOTS: dict[str, Callable[..., Figure | None]] = {
    "recon_vs_latent.png": plot_latent,
    "fid_vs_latent.png": plot_fid_vs_latent,
    "rate_distortion.png": plot_rate_distortion,
    "fid_vs_beta.png": plot_fid_vs_beta,
    "psnr_vs_noise.png": plot_noise,
}
