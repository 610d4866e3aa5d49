"""`+callbacks.kill._target_=helpers.signals.SignalAt` with `SIGNAL_AT=<hook>` in the environment:
the run sends SIGTERM to its own process at one of Lightning's hooks, the first time it is
called: a kill at a chosen phase, deterministic (the run puts tests/ on the path). Without
`SIGNAL_AT` it does nothing, so the printed resume command (the same overrides) runs on."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl

PHASES = (
    "on_sanity_check_start",  # the sanity check's validation
    "on_train_batch_end",  # training
    "on_validation_batch_start",  # a validation while training
    "on_test_batch_start",  # testing
    "on_test_epoch_end",  # the test-time suite, generation, disentanglement (after them)
)


class SignalAt(pl.Callback):
    def __init__(self, signum: int = int(signal.SIGTERM)) -> None:
        hook = os.environ.get("SIGNAL_AT")
        if hook is not None and hook not in PHASES:
            raise ValueError(f"hook={hook!r}: one of {PHASES}")
        self.hook, self.signum, self.sent = hook, signum, False

    def _maybe(self, name: str, trainer: pl.Trainer) -> None:
        # not during the sanity check for the validation hook: that is its own phase
        if (
            name == self.hook
            and not self.sent
            and not (name == "on_validation_batch_start" and trainer.sanity_checking)
        ):
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_sanity_check_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_sanity_check_start", trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_train_batch_end", trainer)

    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_validation_batch_start", trainer)

    def on_test_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_test_batch_start", trainer)

    def on_test_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_test_epoch_end", trainer)
