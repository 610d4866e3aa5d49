"""The benchmark's table and verdicts, from the loops' RESULT lines (`aelab.bench.loops`).

Every loop runs once with denormal floats flushed to zero (`, flushed`: aelab's default,
`flush_denormal=true`, `aelab.numerics`) and once computing with them (`, denormals`: plain
PyTorch's default), unless `--denormals flushed|kept` picks one. Adam's state decays into the
denormal range after a few hundred steps, and on some x86 CPUs each step then costs up to twice
as much: `ms/step early` (the first epoch) and `ms/step late` (the last) show such a slowdown.

aelab trains on the 55k images of its training split (5k are kept for validation); the in-memory
loops use the same 55k. Times are compared per training image: `s/60k` is the epoch scaled to
the reference loop's 60k images. `train` is the training part of the epoch; aelab's `+val` adds its
validation pass, checkpoints and image grids. Test figures are on the official 10k test set after
the same number of epochs: `MSE` is the per-pixel squared error of the reconstruction (for a VAE,
of the decoded posterior mean), `-ELBO` the VAE's negative ELBO in nats per image (one z draw).

On a shared machine, `--repeats N` runs all loops N times round-robin (repeat r with seed
`--seed + r`) and pools their epochs, so a burst of load hits every loop alike; test figures are
then means over the seeds with half their range, and a test figure worse than the reference
loop's is called within or beyond that spread (a short VAE run's -ELBO moves by nats from seed
to seed).
`--threads 1` keeps torch's second thread from waiting on a core that another process holds:
with 2 threads on 2 busy cores a step of these small MLPs takes many times longer. On an idle
machine the default (one thread per core) is faster (docs/explanation/performance.md has the
figures).

Each training-time ratio is given twice: from the pooled medians and from each loop's fastest
timed epoch. With 2 threads on this project's VM a whole process sometimes runs at one-thread
speed for tens of seconds (its two threads stay on separate CPUs: the host takes the second one);
the medians then move by tens of percent while the fastest epochs hold. A target is `meets` or
`MISSES` when both figures agree and `UNSETTLED` when they do not: one run cannot tell.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from aelab.bench import BATCH_SIZE

SETTINGS = {"flushed": True, "denormals": False}  # row suffix -> flush_denormal
LOOPS = {  # name -> (model, kind); the table keeps this order
    "reference AE": ("ae", "reference"),
    "in-memory AE": ("ae", "memory"),
    "in-memory AE + fused Adam": ("ae", "memory-fused"),
    "aelab AE": ("ae", "aelab"),
    "reference VAE": ("vae", "reference"),
    "in-memory VAE": ("vae", "memory"),
    "in-memory VAE + fused Adam": ("vae", "memory-fused"),
    "aelab VAE": ("vae", "aelab"),
}


def row_name(loop: str, setting: str) -> str:
    """The table's name of a loop run with a denormal setting (`SETTINGS`)."""
    return f"{loop}, {setting}"


def summarize(name: str, runs: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Pool the timed epochs of every repeat; average the test figures and RSS over repeats."""

    def timed(key: str) -> list[float]:
        return [t for r in runs for t in (r[key][warmup:] if len(r[key]) > warmup else r[key])]

    def pooled(key: str) -> float | None:
        return statistics.median(timed(key)) if key in runs[0] else None

    def spread(key: str) -> float | None:
        return max(r[key] for r in runs) - min(r[key] for r in runs) if key in runs[0] else None

    def mean(key: str) -> float | None:
        return statistics.fmean(r[key] for r in runs) if key in runs[0] else None

    row = {"loop": name, "images": runs[0]["images"], "s_epoch": pooled("times")}
    steps = math.ceil(runs[0]["images"] / BATCH_SIZE)
    # early and late in a run: its first and its last epoch (median over repeats), per step
    row["ms_step_early"] = 1e3 * statistics.median(r["times"][0] for r in runs) / steps
    row["ms_step_late"] = 1e3 * statistics.median(r["times"][-1] for r in runs) / steps
    row["repeats"] = len(runs)
    row["s_epoch_with_val"] = pooled("times_with_val")
    row["ms_step"] = 1e3 * row["s_epoch"] / steps
    row["ms_step_with_val"] = (
        1e3 * row["s_epoch_with_val"] / steps if row["s_epoch_with_val"] else None
    )
    row["s_60k"] = row["s_epoch"] * 60_000 / row["images"]
    row["s_60k_with_val"] = (
        row["s_epoch_with_val"] * 60_000 / row["images"] if row["s_epoch_with_val"] else None
    )
    # the fastest timed epoch: noise on a shared machine only ever slows an epoch down
    row["s_60k_fastest"] = min(timed("times")) * 60_000 / row["images"]
    for key in ("test_mse", "test_neg_elbo", "peak_rss_mb", "rss_growth_mb"):
        row[key] = mean(key)
    for key in ("test_mse", "test_neg_elbo"):  # over repeats, which use seeds seed, seed+1, ...
        row[f"{key}_spread"] = spread(key)
    return row


def fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


COLUMNS = {  # header -> (row key, format)
    "loop": ("loop", "s"),
    "train images": ("images", "d"),
    "s/epoch (train)": ("s_epoch", ".2f"),
    "s/epoch (+val)": ("s_epoch_with_val", ".2f"),
    "s/60k img (train)": ("s_60k", ".2f"),
    "ms/step early": ("ms_step_early", ".2f"),
    "ms/step late": ("ms_step_late", ".2f"),
    "ms/step (+val)": ("ms_step_with_val", ".2f"),
    "test MSE": ("test_mse", ".4f"),
    "test -ELBO": ("test_neg_elbo", ".1f"),
    "peak RSS MB": ("peak_rss_mb", ".0f"),
    "RSS growth MB": ("rss_growth_mb", "+.1f"),
}


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table, one row per loop ("—": does not apply)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "| --- |" + " ---: |" * (len(COLUMNS) - 1)]
    for r in rows:
        cells = []
        for key, spec in COLUMNS.values():
            cell = fmt(r[key], spec)
            if r.get(f"{key}_spread"):  # several repeats (seeds): half their range
                cell += f" ±{r[f'{key}_spread'] / 2:{spec}}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(
    rows: dict[str, dict[str, Any]], models: list[str], settings: list[str] | None = None
) -> list[str]:
    """The targets, as ratios of times measured in this run, for the first of `settings` (aelab's
    default, `flushed`, when it ran); then what the other setting changes (`denormal_lines`)."""
    out = []
    setting = (settings or ["flushed"])[0]

    def ratio(line: str, a: str, b: str, key: str, target: float, base: str = "s_60k") -> None:
        if not (a in rows and b in rows and rows[a][key] and rows[b][base]):
            return
        value = rows[a][key] / rows[b][base]
        if key != "s_60k":
            out.append(
                f"- {line}: {value:.2f} ({'meets' if value <= target else 'MISSES'} <= {target})"
            )
            return
        # medians and fastest epochs agree on a quiet machine; when a slow spell hit one loop
        # more than the other they disagree, and one run cannot settle the target
        fastest = rows[a]["s_60k_fastest"] / rows[b]["s_60k_fastest"]
        both = (value <= target, fastest <= target)
        ok = "meets" if all(both) else "MISSES" if not any(both) else "UNSETTLED: they disagree on"
        out.append(f"- {line}: {value:.2f}, fastest epochs {fastest:.2f} ({ok} <= {target})")

    for model in models:
        up = model.upper()
        aelab, ref = row_name(f"aelab {up}", setting), row_name(f"reference {up}", setting)
        fused = row_name(f"in-memory {up} + fused Adam", setting)
        ratio(f"{aelab} / {ref}, training part", aelab, ref, "s_60k", 0.5)
        ratio(f"{aelab} / {ref}, whole epoch with validation", aelab, ref, "s_60k_with_val", 0.5)
        ratio(
            f"{aelab} / {fused}, per step, whole epoch with validation",
            aelab,
            fused,
            "ms_step_with_val",
            1.2,
            base="ms_step",
        )
        for key, label, spec in (("test_mse", "MSE", ".5f"), ("test_neg_elbo", "-ELBO", ".2f")):
            if aelab in rows and ref in rows and None not in (rows[aelab][key], rows[ref][key]):
                a, s = rows[aelab][key], rows[ref][key]
                # half the seed-to-seed range of each (0 with one repeat): the noise of a mean
                noise = sum((rows[n][f"{key}_spread"] or 0.0) / 2 for n in (aelab, ref))
                if a <= s:
                    ok = "meets: equal or better"
                elif min(rows[aelab]["repeats"], rows[ref]["repeats"]) < 2:
                    ok = f"worse by {a - s:{spec}}; one seed each: --repeats 3 tells noise apart"
                elif a - s <= noise:
                    ok = f"worse by {a - s:{spec}}, within the seed spread ±{noise:{spec}}"
                else:
                    ok = f"MISSES: worse by {a - s:{spec}}, beyond the seed spread ±{noise:{spec}}"
                out.append(f"- {aelab} test {label} {a:{spec}} vs {ref} {s:{spec}} ({ok})")
    return out + denormal_lines(rows)


def denormal_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Per loop run both ways: the late steps' cost with denormals over flushed, and the test
    figures of the two (one seed: flushing changes the arithmetic of values below 1.2e-38 only)."""
    out = []
    for loop in LOOPS:
        kept, flushed = row_name(loop, "denormals"), row_name(loop, "flushed")
        if kept not in rows or flushed not in rows:
            continue
        a, b = rows[kept], rows[flushed]
        line = (
            f"- {loop}: late steps with denormals {a['ms_step_late']:.2f} ms vs flushed "
            f"{b['ms_step_late']:.2f} ms ({a['ms_step_late'] / b['ms_step_late']:.2f}x)"
        )
        for key, label in (("test_mse", "MSE"), ("test_neg_elbo", "-ELBO")):
            if a.get(key) is not None and b.get(key) is not None:
                line += f"; test {label} {a[key]:.5g} vs {b[key]:.5g}"
        out.append(line)
    return out


def machine(device: str, threads: int) -> str:
    """The machine in one line: cores, CPU model, torch release, threads, GPU."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    text = f"{os.cpu_count()}-core {platform.machine()} CPU ({cpu}), torch {torch.__version__}"
    text += f", {threads or torch.get_num_threads()} torch threads per loop"
    if device.startswith("cuda"):
        text += f", GPU: {torch.cuda.get_device_name(torch.device(device))}"
    return text
