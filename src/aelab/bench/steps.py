"""Milliseconds per training step: a plain loop, a bare Lightning Trainer, and aelab's Trainer.

    python scripts/step_overhead.py                  # the reference VAE, torch's default threads
    python -m aelab.bench.steps --model ae --threads 1 --rounds 5   # the same, installed

All three train the same aelab model on the same in-memory MNIST loader, in one process, taking
turns round after round, so what differs between them is only what runs around the step:

- `plain`: `training_step`, `zero_grad`, `backward`, `optimizer.step()`; nothing else.
- `bare Trainer`: Lightning's loop with no logger, checkpoint, progress bar or callback.
- `aelab Trainer`: the loop with the default config's callbacks and TensorBoard logger (not the
  test-time evaluation suite, which never runs during training).

Separate processes on a shared VM differ by tens of percent in speed; turns within one process
do not, which is why this complements `aelab-benchmark` instead of adding rows to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="step_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("ae", "vae"), default="vae")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rounds", type=int, default=4, help="turns of each loop")
    parser.add_argument("--steps", type=int, default=400, help="steps per turn (first 50 untimed)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("AELAB_DATA_DIR", "data"))
    )
    args = parser.parse_args(argv)
    if not 50 < args.steps <= 800:
        sys.exit(f"step_overhead: --steps must be in (50, 800] (one epoch), not {args.steps}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    from aelab.bench.loops import compose_job
    from aelab.checks import build
    from aelab.train import build_model

    warmup = 50
    out = tempfile.mkdtemp(prefix="aelab-step-overhead-")
    overrides = [f"model={args.model}", f"paths.data_dir={args.data_dir}", f"paths.log_dir={out}"]
    cfg = compose_job(overrides, Path(out))
    datamodule = build(cfg.data, "data")
    datamodule.setup()

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, i: int) -> None:
            if i == warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, module: Any, out: Any, batch: Any, i: int):
            if i == args.steps - 1:
                self.seconds = (time.perf_counter() - self.start) / (args.steps - 1 - warmup)

    def plain() -> float:
        model = build_model(cfg)
        optimizer = model.configure_optimizers()
        batches = iter(datamodule.train_dataloader())
        for i in range(args.steps):
            if i == warmup:
                start = time.perf_counter()
            loss = model.training_step(next(batches), i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / (args.steps - warmup)

    def trainer(with_aelab: bool) -> float:
        timer = StepTimer()
        callbacks: list[pl.Callback] = [timer]
        kwargs: dict[str, Any] = dict(
            logger=False, enable_checkpointing=False, enable_progress_bar=False
        )
        if with_aelab:
            chosen = {k: c for k, c in cfg.callbacks.items() if c is not None}  # null: left out
            callbacks += [build(c, k) for k, c in chosen.items() if k != "evaluation"]
            kwargs = dict(logger=TensorBoardLogger(out, name="tb"))
        pl.Trainer(
            accelerator="cpu",
            max_epochs=1,
            limit_train_batches=args.steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_model_summary=False,
            callbacks=callbacks,
            **kwargs,
        ).fit(build_model(cfg), datamodule=datamodule)
        return timer.seconds

    loops = {"plain": plain, "bare Trainer": lambda: trainer(False)}
    loops["aelab Trainer"] = lambda: trainer(True)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, loop in loops.items():
            times[name].append(loop())
    base = min(times["plain"])
    print(f"{args.model.upper()}, {torch.get_num_threads()} torch threads, {args.rounds} rounds")
    print("| loop | ms/step (best) | median | over plain (best) |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        print(f"| {name} | {best * 1e3:.2f} | {median * 1e3:.2f} | {(best - base) * 1e3:+.2f} |")


if __name__ == "__main__":
    main()
