"""`aelab-benchmark --stacked 1,4,8,16` (`scripts/benchmark.py`): images/s of M jobs trained as
one stack against the same M jobs trained one after another (aelab-train's ordinary loop, as a
sweep runs them).

Per model (`--models`: any of conf/model's presets that stack, default the AE and VAE; default
configs, so denormal floats flushed to zero in both: `flush_denormal=true`): M configs differing
only in `seed`. The stack is `aelab.stacked.train_stacked`, timed over its training loop (batch
order, per-member noise, forward, backward, Adam; no validation). The sequential jobs are
`aelab.train.train` with the default callbacks and logger, each timed from the start of its
training epoch to the start of its validation (the same work: training batches only). The 16
(largest M) sequential jobs run once; M sequential jobs are the first M of them. Images/s = M *
images per job / seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from aelab.bench import BATCH_SIZE
from aelab.bench.loops import compose_job
from aelab.bench.tables import machine


class TrainTimer(pl.Callback):
    """Seconds from a job's training-epoch start to its validation (or the end of training)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start: float | None = None

    def _stop(self) -> None:
        if self._start is not None:
            self.seconds.append(time.perf_counter() - self._start)
            self._start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._stop()

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop()


def compose(model: str, seed: int, batches: int, data_dir: Path, out: Path, threads: int) -> Any:
    """Job `seed` of the comparison: one epoch of `batches` training batches, no test."""
    overrides = [
        f"model={model}",
        f"seed={seed}",
        "trainer=cpu",
        "trainer.max_epochs=1",
        f"++trainer.limit_train_batches={batches}",
        "++trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
        "test=false",
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={out}",
    ]
    if threads:
        overrides.append(f"threads={threads}")
    return compose_job(overrides, out / f"job{seed}")


def sequential_seconds(model: str, jobs: int, args: argparse.Namespace, out: Path) -> list[float]:
    """Training seconds of each of `jobs` ordinary aelab jobs (seeds 0..jobs-1), in order."""
    from aelab.train import train

    seconds = []
    for seed in range(jobs):
        cfg = compose(model, seed, args.stacked_batches, args.data_dir, out / "seq", args.threads)
        timer = TrainTimer()
        train(cfg, extra_callbacks=[timer])
        seconds.append(sum(timer.seconds))
    return seconds


def stacked_seconds(model: str, m: int, args: argparse.Namespace, out: Path) -> float:
    from aelab.stacked import train_stacked

    cfgs = [
        compose(model, seed, args.stacked_batches, args.data_dir, out / f"stack{m}", args.threads)
        for seed in range(m)
    ]
    if args.threads:
        torch.set_num_threads(args.threads)
    members = train_stacked(cfgs, validate=False)
    return members[0].history[0]["train_seconds"]


def main_stacked(args: argparse.Namespace, models: list[str], sizes: list[int]) -> list[dict]:
    """Measure and print the table; returns its rows."""
    out = Path(tempfile.mkdtemp(prefix="aelab-stacked-benchmark-"))
    rows = []
    images = args.stacked_batches * BATCH_SIZE
    try:
        from aelab.stacked import why_not_stackable

        for model in models:  # before any job is timed
            cfg = compose(model, 0, args.stacked_batches, args.data_dir, out / "check", 0)
            why = why_not_stackable(cfg)
            if why is not None:
                sys.exit(f"benchmark: model={model} does not stack: {why}")
        for model in models:
            sequential = sequential_seconds(model, max(sizes), args, out)
            for m in sizes:
                stacked = stacked_seconds(model, m, args, out)
                seq = sum(sequential[:m])
                rows.append(
                    {
                        "model": model,
                        "M": m,
                        "stacked_img_s": m * images / stacked,
                        "sequential_img_s": m * images / seq,
                        "ratio": seq / stacked,
                    }
                )
                print(
                    f"{model:>4} M={m:<3} stacked {m * images / stacked:9.0f} img/s   "
                    f"sequential {m * images / seq:9.0f} img/s   ratio {seq / stacked:5.2f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | M | stacked img/s | M sequential img/s | stacked / sequential |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model'].upper()} | {r['M']} | {r['stacked_img_s']:.0f} | "
            f"{r['sequential_img_s']:.0f} | {r['ratio']:.2f} x |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace, models: list[str]) -> None:
    """`--stacked`: measure, print the machine and the table (and --json)."""

    try:
        sizes = [int(m) for m in args.stacked.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        sys.exit(f"benchmark: --stacked takes integers >= 1 (1,4,8,16), not {args.stacked!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()
    started = time.perf_counter()
    rows = main_stacked(args, models, sizes)
    print(f"machine: {machine(args.device, args.threads)}, device cpu")
    print(
        f"run: {args.stacked_batches} training batches of {BATCH_SIZE} per job, one run; load "
        f"average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"stacked": rows}, indent=2))
