"""The phase timer of `scripts/benchmark.py --overhead`."""

from __future__ import annotations

import time

import pytorch_lightning as pl
from typing_extensions import override


class PhaseTimer(pl.Callback):
    """Clock readings at the edges of a run's phases, for `scripts/benchmark.py --overhead`.

    Not in the default callbacks: the benchmark adds it (`+callbacks.phase_timer=...`). `marks`
    is a list of (event, `time.perf_counter()` seconds): `built`, `setup_fit`, `fit_start`,
    `sanity_start`, `sanity_end`, per epoch `epoch_start`, `val_start`, `val_end`, then
    `train_end`, `teardown_fit`, `setup_test`, `test_epoch_start`, `test_epoch_end` (after the
    other callbacks' test-epoch hooks: the suite's and the image grids'), `teardown_test`.
    `parts` holds the test-time suite's `timings` (seconds per part). With `path`, both are
    written there as JSON (temp file and rename) at every teardown.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.marks: list[tuple[str, float]] = []
        self.parts: dict[str, float] = {}
        self._mark("built")

    def _mark(self, event: str) -> None:
        self.marks.append((event, time.perf_counter()))

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._mark(f"setup_{getattr(stage, 'value', stage)}")  # Lightning passes a TrainerFn

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("fit_start")

    @override
    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("sanity_start")

    @override
    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("sanity_end")

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("epoch_start")

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._mark("val_start")

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._mark("val_end")

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("train_end")

    @override
    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("test_epoch_start")

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("test_epoch_end")
        for callback in trainer.callbacks:
            self.parts.update(getattr(callback, "timings", None) or {})

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._mark(f"teardown_{getattr(stage, 'value', stage)}")
        if self.path is not None and trainer.is_global_zero:
            from aelab.run.atomic import write_json_atomic

            write_json_atomic(self.path, {"marks": self.marks, "parts": self.parts})
