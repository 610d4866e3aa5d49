"""aelab-report <sweep dir>: one table and a few plots over every job of a sweep.

Reads each job's `.hydra/config.yaml` and `metrics.json` and writes into the sweep folder (also
done by `WriteReport` at the end of every `aelab-train -m`):
`summary.csv` (one row per job: status, error, hyper-parameters, every metric), `summary.md` (the
swept variables and the headline test metrics, mean ± std over seeds, sorted by the variables;
failed and unfinished jobs listed with their error; the Optuna study and the one-class AUROC
table when the sweep has them) and PNG plots for the variables the sweep has: reconstruction
error vs. latent size, the rate-distortion plane of a beta sweep, PSNR vs. noise level, and a
mosaic of every job's test reconstructions.

The variables are the columns of `aelab.run.record.hparams_row` (the same as TensorBoard's HParams
table) that differ between jobs, seed aside; columns that only follow the model (its preset's
net and loss) are left out.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import logging
import math
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aelab.board import write_sweep_board
from aelab.run.atomic import write_atomic
from aelab.run.record import hparams_row

log = logging.getLogger(__name__)
PROG = "aelab-report"
# the metrics summary.md shows (those some job has), with what they are; summary.csv has all
HEADLINE = {
    "test/recon_mse": "pixel-mean squared error of the reconstruction",
    "test/recon": "the loss's reconstruction term: squared error or Bernoulli NLL, per image",
    "test/psnr": "PSNR of the output against the clean image (dB)",
    "test/psnr_noisy_input": "PSNR of the corrupted input itself (dB)",
    "test/ssim": "structural similarity of the output against the clean image",
    "test/kl": "KL rate (nats)",
    "test/neg_elbo": "negative ELBO (nats)",
    "test/iw_nll": "importance-weighted -log p(x) (nats)",
    "test/active_units": "active latent units",
    "test/linear_probe_acc": "linear probe accuracy on the code",
    "test/knn_acc": "k-NN accuracy on the code",
    "test/auroc": "one-class AUROC",
}
OPTUNA_FILE = "optimization_results.yaml"


@dataclass
class Job:
    """One job folder of the sweep: its status, hyper-parameters and final metrics."""

    name: str
    path: Path
    status: str  # completed | failed | unfinished
    error: str = ""
    hparams: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Group:
    """The completed jobs that differ only by seed."""

    key: tuple[Any, ...]
    jobs: list[Job]

    def stats(self, *metric: str) -> tuple[float, float, int] | None:
        """Mean, standard deviation (0 for one job) and count of a metric over the jobs; given
        several names, each job's first one it has."""
        values = [
            next(j.metrics[m] for m in metric if m in j.metrics)
            for j in self.jobs
            if any(m in j.metrics for m in metric)
        ]
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values), std, len(values)


class ReportError(Exception):
    """Why no report can be made; shown as one line."""


# --- reading the sweep ----------------------------------------------------------------------


def job_dirs(sweep: Path) -> list[Path]:
    """The job folders of a sweep (those holding `.hydra/config.yaml`), in job order."""
    if not sweep.is_dir():
        raise ReportError(f"{sweep} is not a folder")
    jobs = [d for d in sweep.iterdir() if (d / ".hydra" / "config.yaml").is_file()]
    if not jobs:
        hint = ""
        if (sweep / ".hydra").is_dir():
            hint = " (it is a single run; pass the folder of a sweep: outputs/multiruns/...)"
        else:
            inner = sorted({p.parents[2] for p in sweep.glob("*/*/.hydra/config.yaml")})
            if inner:
                hint = f" (sweeps inside it: {', '.join(str(p) for p in inner[:3])})"
        raise ReportError(
            f"no sweep jobs in {sweep}: expected job folders with .hydra/config.yaml, "
            f"as written by `aelab-train -m`{hint}"
        )

    def order(d: Path) -> tuple[int, str]:
        num = d.name.split("_", 1)[0]
        return (int(num) if num.isdigit() else sys.maxsize, d.name)

    return sorted(jobs, key=order)


def _config(path: Path) -> dict[str, Any]:
    """The stored config as plain data, each top-level node resolved where it can be (paths need
    Hydra's runtime and stay as written)."""
    cfg = OmegaConf.load(path)
    out: dict[str, Any] = {}
    for key in cfg:
        try:
            node = cfg[key]
            out[key] = (
                OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
            )
        except (OmegaConfBaseException, ValueError):
            out[key] = OmegaConf.to_container(cfg, resolve=False)[key]
    return out


def load_job(path: Path) -> Job:
    job = Job(path.name, path, "unfinished", "no metrics.json: still running, or stopped")
    try:
        job.hparams = hparams_row(_config(path / ".hydra" / "config.yaml"))
    except (OmegaConfBaseException, KeyError, TypeError, ValueError, ImportError) as err:
        job.error = f"unreadable config: {type(err).__name__}: {err}"
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        return job
    try:
        data = json.loads(metrics_file.read_text())
    except (OSError, ValueError) as err:
        job.status, job.error = "failed", f"unreadable metrics.json: {err}"
        return job
    job.status = str(data.get("status", "completed"))  # or failed, interrupted
    resume = f"to continue: {data['resume']}" if data.get("resume") else ""
    job.error = str(data.get("error") or resume)
    job.metrics = {
        k: float(v)
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return job


def load_sweep(sweep: Path) -> list[Job]:
    return [load_job(d) for d in job_dirs(sweep)]


# --- what was swept -------------------------------------------------------------------------


def _ordered_keys(rows: Iterable[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row))


def sweep_variables(jobs: Sequence[Job]) -> list[str]:
    """The hyper-parameters that differ between jobs, seed aside, in `hparams_row` order.

    When the model varies, columns that are the same for every job of one model (the preset's
    net, loss, an AE's missing beta) are left out: they say nothing the model column does not.
    """
    rows = [j.hparams for j in jobs]
    varying = [
        k for k in _ordered_keys(rows) if k != "seed" and len({repr(r.get(k)) for r in rows}) > 1
    ]
    if "model" not in varying:
        return varying

    def follows_model(key: str) -> bool:
        per_model: dict[Any, set[str]] = {}
        for r in rows:
            per_model.setdefault(r.get("model"), set()).add(repr(r.get(key)))
        return all(len(v) == 1 for v in per_model.values())

    return [k for k in varying if k == "model" or not follows_model(k)]


def _sort_key(value: Any) -> tuple[int, float, str]:
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, int | float):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def group_jobs(jobs: Sequence[Job], variables: Sequence[str]) -> list[Group]:
    """Completed jobs grouped by the variables (so over seeds), sorted by the variables."""
    groups: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        if job.status == "completed":
            groups.setdefault(tuple(job.hparams.get(v) for v in variables), []).append(job)
    keys = sorted(groups, key=lambda key: [_sort_key(v) for v in key])
    return [Group(k, groups[k]) for k in keys]


# --- formatting -----------------------------------------------------------------------------


def _num(value: Any) -> str:
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


def _label(key: Sequence[Any], variables: Sequence[str]) -> str:
    return ", ".join(f"{v}={_num(x)}" for v, x in zip(variables, key, strict=True)) or "all"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in rows)]


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- writing --------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> Path:
    return write_atomic(path, text)


def _save_figure(fig: Figure, path: Path) -> Path:
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    return write_atomic(path, png.getvalue())


def summary_csv(jobs: Sequence[Job]) -> str:
    """One row per job: name, status, error, every hyper-parameter, every metric."""
    hp_keys = _ordered_keys(j.hparams for j in jobs)
    metric_keys = sorted(
        _ordered_keys(j.metrics for j in jobs), key=lambda k: (not k.startswith("test/"), k)
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["job", "status", "error", *hp_keys, *metric_keys])
    for j in jobs:
        writer.writerow(
            [j.name, j.status, j.error]
            + [j.hparams.get(k, "") for k in hp_keys]
            + [repr(j.metrics[k]) if k in j.metrics else "" for k in metric_keys]
        )
    return out.getvalue()


def _dcae_baseline() -> dict[int, float]:
    """Ruff et al.'s DCAE one-class AUROC (%) per digit, where aelab's evaluation provides it."""
    try:
        from aelab.metrics.anomaly import DCAE_BASELINE_AUROC
    except ImportError:
        return {}
    return dict(DCAE_BASELINE_AUROC)


def _anomaly_section(jobs: Sequence[Job], variables: Sequence[str]) -> list[str]:
    scored = [j for j in jobs if j.status == "completed" and "test/auroc" in j.metrics]
    if not scored:
        return []
    others = [v for v in variables if v != "classes"]
    baseline = _dcae_baseline()
    rows = []
    for group in group_jobs(scored, ["classes", *others]):
        classes_text = group.key[0]
        try:
            classes = ast.literal_eval(str(classes_text))
        except (ValueError, SyntaxError):
            classes = None
        single = classes[0] if isinstance(classes, list) and len(classes) == 1 else None
        mean, std, n = group.stats("test/auroc") or (math.nan, 0.0, 0)  # all jobs have it
        auroc = f"{100 * mean:.1f} ± {100 * std:.1f}" if n > 1 else f"{100 * mean:.1f}"
        ref = baseline.get(single) if single is not None else None
        rows.append(
            [str(classes_text), *(_num(x) for x in group.key[1:]), str(n), auroc, _num(ref)]
        )
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
    if "best_params" in study:
        params = ", ".join(f"{k}={_num(v)}" for k, v in study["best_params"].items())
        body = [f"Best trial: {params}; validation loss {_num(study.get('best_value'))}."]
    else:  # several objectives: the Pareto front
        body = [f"- {s['params']}: {s['values']}" for s in study.get("solutions", [])]
    return ["## Optuna study", "", *body, f"(from `{OPTUNA_FILE}`)", ""]


def _headline_metrics(sweep: Path, jobs: Sequence[Job]) -> list[str]:
    completed = [j for j in jobs if j.status == "completed"]
    metrics = [m for m in HEADLINE if any(m in j.metrics for j in completed)]
    if (sweep / OPTUNA_FILE).is_file():
        metrics.insert(0, "val/loss")
    return metrics


def headline_table(
    sweep: Path, jobs: Sequence[Job], variables: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """summary.md's main table: header and rows, one row per group of completed jobs (the
    variables, n, each headline metric's mean ± std over seeds)."""
    metrics = _headline_metrics(sweep, jobs)
    header = [*variables, "n", *(m.removeprefix("test/") for m in metrics)]
    rows = [
        [*(_num(x) for x in g.key), str(len(g.jobs)), *(_stat(g.stats(m)) for m in metrics)]
        for g in group_jobs(jobs, variables)
    ]
    return header, rows


def aligned_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A table as padded columns, for a terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def summary_markdown(
    sweep: Path, jobs: Sequence[Job], variables: Sequence[str], plots: Sequence[Path]
) -> str:
    metrics = _headline_metrics(sweep, jobs)
    seeds = sorted({j.hparams.get("seed") for j in jobs}, key=_sort_key)
    counts = {s: sum(j.status == s for j in jobs) for s in dict.fromkeys(j.status for j in jobs)}
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
    unfinished = [j for j in jobs if j.status != "completed"]
    if unfinished:
        lines += ["## Jobs that did not complete", ""]
        lines += _md_table(
            ["job", "status", "error"], ([j.name, j.status, _one_line(j.error)] for j in unfinished)
        )
        lines.append("")
    if plots:
        lines += ["## Plots", "", *(f"![{p.stem}]({p.name})" for p in plots), ""]
    return "\n".join(lines)


# --- plots ----------------------------------------------------------------------------------


def _series(
    groups: Sequence[Group], variables: Sequence[str], x_var: str
) -> dict[str, list[Group]]:
    """Groups split into lines by the variables other than `x_var`, each sorted along x."""
    i = list(variables).index(x_var)
    rest = [v for j, v in enumerate(variables) if j != i]
    lines: dict[str, list[Group]] = {}
    for g in groups:
        label = _label([x for j, x in enumerate(g.key) if j != i], rest)
        lines.setdefault(label, []).append(g)
    for members in lines.values():
        members.sort(key=lambda g: _sort_key(g.key[i]))
    return lines


def _points(
    members: Sequence[Group], i: int, *metric: str
) -> tuple[list[float], list[float], list[float]]:
    """x (the i-th variable), mean and std of the metric, where both are numbers."""
    xs, ys, errs = [], [], []
    for g in members:
        stats, x = g.stats(*metric), g.key[i]
        if stats is not None and isinstance(x, int | float) and math.isfinite(stats[0]):
            xs.append(float(x))
            ys.append(stats[0])
            errs.append(stats[1])
    return xs, ys, errs


def _legend(ax: Any) -> None:
    """A legend only where there are several lines (one line is labelled `all`)."""
    if len(ax.get_legend_handles_labels()[1]) > 1:
        ax.legend(fontsize=8)


def plot_latent(groups: Sequence[Group], variables: Sequence[str]) -> Figure | None:
    metric = "test/recon_mse"
    if "latent_dim" not in variables or not any(g.stats(metric) for g in groups):
        return None
    i = list(variables).index("latent_dim")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for label, members in _series(groups, variables, "latent_dim").items():
        xs, ys, errs = _points(members, i, metric)
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    sizes = sorted({g.key[i] for g in groups if isinstance(g.key[i], int | float)})
    ax.set_xticks(sizes, labels=[_num(v) for v in sizes])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("latent size")
    ax.set_ylabel("test reconstruction error (pixel-mean MSE)")
    ax.set_title("Reconstruction error vs. latent size")
    _legend(ax)
    return fig


def plot_rate_distortion(groups: Sequence[Group], variables: Sequence[str]) -> Figure | None:
    if "beta" not in variables or not any(g.stats("test/kl") for g in groups):
        return None
    i = list(variables).index("beta")
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for label, members in _series(groups, variables, "beta").items():
        points = [
            (g.key[i], rate, dist)
            for g in members
            if (rate := g.stats("test/kl")) and (dist := g.stats("test/recon"))
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
            label=label,
        )
        for beta, r, d in points:
            ax.annotate(
                f"β={_num(beta)}",
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


def _noise_series(groups: Sequence[Group], variables: Sequence[str]) -> dict[str, list[Group]]:
    """The lines of the PSNR plot, one per kind of corruption (and other variables), along the
    noise level. The clean-input baseline (noise `none`, level 0; experiment=noise_sweep runs it
    once) starts every kind's line that has the same other variables; alone, it is a line."""
    if "noise" not in variables:
        return _series(groups, variables, "noise_level")
    k, i = list(variables).index("noise"), list(variables).index("noise_level")
    baseline = [g for g in groups if g.key[k] == "none"]
    corrupted = [g for g in groups if g.key[k] != "none"]
    if not corrupted:
        return _series(groups, variables, "noise_level")
    others = [j for j in range(len(variables)) if j not in (k, i)]
    lines = _series(corrupted, variables, "noise_level")
    for members in lines.values():
        same = [b for b in baseline if all(b.key[j] == members[0].key[j] for j in others)]
        members[:0] = sorted(same, key=lambda g: _sort_key(g.key[i]))
    return lines


def plot_noise(groups: Sequence[Group], variables: Sequence[str]) -> Figure | None:
    if "noise_level" not in variables:
        return None
    i = list(variables).index("noise_level")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    drawn = False
    for n, (label, members) in enumerate(_noise_series(groups, variables).items()):
        color = f"C{n}"
        # the output's PSNR; run folders written before it had one name in every run held it
        # as test/psnr_denoised in noise runs
        xs, ys, errs = _points(members, i, "test/psnr", "test/psnr_denoised")
        if xs:
            ax.errorbar(
                xs, ys, yerr=errs, marker="o", capsize=3, color=color, label=f"{label}: output"
            )
            drawn = True
        xs, ys, errs = _points(members, i, "test/psnr_noisy_input")
        if xs:
            ax.errorbar(
                xs,
                ys,
                yerr=errs,
                marker="x",
                ls="--",
                capsize=3,
                color=color,
                label=f"{label}: noisy input",
            )
    if not drawn:
        return None
    ax.set_xlabel("noise level (Gaussian std / masking p)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title("PSNR of the denoised output and of the noisy input")
    ax.legend(fontsize=7)
    return fig


def plot_mosaic(jobs: Sequence[Job], variables: Sequence[str], max_jobs: int = 64) -> Figure | None:
    """Every completed job's test reconstructions (inputs above outputs), titled by its values."""
    from matplotlib.image import imread

    with_images = [
        j
        for g in group_jobs(jobs, variables)
        for j in g.jobs
        if (j.path / "images" / "test_reconstructions.png").is_file()
    ][:max_jobs]
    if not with_images:
        return None
    seeds = len({j.hparams.get("seed") for j in with_images}) > 1
    shown = [*variables, "seed"] if seeds else list(variables)
    images = [imread(j.path / "images" / "test_reconstructions.png") for j in with_images]
    cols = min(4, len(with_images))
    rows = math.ceil(len(with_images) / cols)
    height = 3.2 * images[0].shape[0] / images[0].shape[1] + 0.3  # a cell: image and title
    fig = Figure(figsize=(3.2 * cols, height * rows + 0.3), layout="constrained")
    for k, (job, image) in enumerate(zip(with_images, images, strict=True)):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(image, cmap="gray")
        ax.set_title(_label([job.hparams.get(v) for v in shown], shown), fontsize=7)
        ax.set_axis_off()
    fig.suptitle("Test reconstructions: input / (noisy input) / output", fontsize=9)
    return fig


PLOTS: dict[str, Callable[..., Figure | None]] = {
    "recon_vs_latent.png": plot_latent,
    "rate_distortion.png": plot_rate_distortion,
    "psnr_vs_noise.png": plot_noise,
}


# --- entry point ----------------------------------------------------------------------------


def report(sweep: Path, jobs: Sequence[Job] | None = None) -> list[Path]:
    """Write the summary files and plots into `sweep`; returns the paths written.

    `jobs`: the sweep's jobs, when the caller has loaded them (`load_sweep`).
    """
    jobs = load_sweep(sweep) if jobs is None else jobs
    variables = sweep_variables(jobs)
    groups = group_jobs(jobs, variables)
    written = [_write_text(sweep / "summary.csv", summary_csv(jobs))]
    plots = []
    for name, plot in PLOTS.items():
        fig = plot(groups, variables)
        if fig is not None:
            plots.append(_save_figure(fig, sweep / name))
    mosaic = plot_mosaic(jobs, variables)
    if mosaic is not None:
        plots.append(_save_figure(mosaic, sweep / "reconstructions.png"))
    md = summary_markdown(sweep, jobs, variables, plots)
    written.append(_write_text(sweep / "summary.md", md))
    board = write_sweep_board(sweep, jobs, variables, plots)  # TensorBoard: columns, plots
    return written + plots + ([board] if board is not None else [])


def failed_jobs_line(sweep: Path, jobs: Sequence[Job]) -> str | None:
    """One line naming the jobs that did not complete (failed, interrupted, no metrics.json);
    None when every job completed."""
    failed = [j for j in jobs if j.status != "completed"]
    if not failed:
        return None
    names = ", ".join(f"{j.name} ({j.status})" for j in failed)
    summary = sweep / "summary.md"
    return f"{len(failed)} of {len(jobs)} jobs did not complete, see {summary}: {names}"


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
        except ReportError:
            jobs = None  # no job folders: no job ran (the Optuna sweeper with no trials, ...)
        try:
            written = report(sweep, jobs)
        except Exception as err:  # noqa: BLE001 - the report must never fail the sweep itself
            log.warning(
                "no sweep report (%s: %s); try `%s %s`", type(err).__name__, err, PROG, sweep
            )
        else:
            log.debug("wrote %s", ", ".join(p.name for p in written))
            _print_headline(sweep, jobs)
        line = failed_jobs_line(sweep, jobs) if jobs is not None else None
        if line is not None:
            # SystemExit, not an exception: Hydra's callbacks turn those into a warning
            print(f"aelab-{config.task_name}: error: {line}", file=sys.stderr)
            raise SystemExit(1)


def _print_headline(sweep: Path, jobs: Sequence[Job]) -> None:
    """On the sweep's terminal: summary.md's main table, as columns, and where summary.md is."""
    table = aligned_table(*headline_table(sweep, jobs, sweep_variables(jobs)))
    print("\n".join(["", *table, f"sweep report: {sweep / 'summary.md'}"]), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Summarise a sweep folder of aelab-train -m: summary.csv, summary.md, plots.",
    )
    parser.add_argument(
        "sweep_dir", type=Path, help="e.g. outputs/multiruns/<day>/<time>_<tag>_train"
    )
    args = parser.parse_args(argv)
    try:
        written = report(args.sweep_dir)
    except ReportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{PROG}: wrote {', '.join(p.name for p in written)} in {args.sweep_dir}")


if __name__ == "__main__":
    main()
