"""Training faults, handled where they happen: a NaN or infinite loss, and Ctrl-C.

Both callbacks stop training by raising, so Lightning runs its `on_exception` hooks and the entry
point (`aelab.train`) records the outcome in `metrics.json` and says what to do next.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor
from typing_extensions import override

from aelab.checks import check_int
from aelab.run.checkpoint import LAST_CHECKPOINT

# the errors these callbacks stop a run with; what the run's ending does with them (metrics.json,
# the exit status) is `aelab.run.outcome`'s
from aelab.run.outcome import NonFiniteLossError, RunInterrupted  # noqa: F401


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    """Where `last.ckpt` goes: the folder of the run's ModelCheckpoint (`<run>/checkpoints`)."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            return Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / LAST_CHECKPOINT


class NonFiniteLossGuard(pl.Callback):
    """Stop training at a NaN or infinite training loss, before it reaches the weights.

    The loss is checked before its backward pass, so the optimizer never applies a non-finite
    gradient. Reading the check is a host sync: cheap on a CPU, a stall of the queue per step on
    a GPU. `check_every_n_steps` > 1 reads it less often: the first bad step is still the one
    named, the steps up to the check run on with it, and every checkpoint is checked before it is
    written, so none holds a diverged model. None: every step on a CPU, every
    `ACCELERATOR_EVERY` steps on a GPU (or any other accelerator).
    """

    ACCELERATOR_EVERY = 100

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.requested = (
            None
            if check_every_n_steps is None
            else check_int("check_every_n_steps", check_every_n_steps, 1)
        )
        self.every = self.requested or 1
        self._first_bad: Tensor | None = None  # on the device: first step whose loss was bad, -1
        self._batch: Any = None
        self._batch_idx = 0

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.requested is None:
            on_cpu = trainer.strategy.root_device.type == "cpu"
            self.every = 1 if on_cpu else self.ACCELERATOR_EVERY

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch, self._batch_idx = batch, batch_idx  # only for the message

    @override
    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor
    ) -> None:
        finite = torch.isfinite(loss.detach())
        step = trainer.global_step
        if self.every == 1:  # read at once: the run stops on the step that went bad
            if not finite:
                raise self._error(trainer, step, pl_module, loss)
            return
        # else keep the first bad step on the device and read it every n steps
        first = self._first_bad
        if first is None:
            first = torch.full_like(finite, -1, dtype=torch.long)
        self._first_bad = torch.where(~finite & (first < 0), step, first)
        if step % self.every == 0:
            self.check(trainer, pl_module, loss)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check(trainer, pl_module)

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.check(trainer, pl_module)

    def check(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor | None = None
    ) -> None:
        """Raise NonFiniteLossError if a training loss so far was NaN or infinite."""
        first = -1 if self._first_bad is None else int(self._first_bad)
        if first >= 0:
            raise self._error(trainer, first, pl_module, loss)

    def _error(
        self,
        trainer: pl.Trainer,
        first: int,
        pl_module: pl.LightningModule,
        loss: Tensor | None,
    ) -> NonFiniteLossError:
        if first == trainer.global_step and loss is not None:  # found at once: weights intact
            where = f"step {first} (epoch {trainer.current_epoch}, batch {self._batch_idx}): "
            where += self._parts(pl_module, loss)
        else:
            where = f"step {first} (found at step {trainer.global_step})"
        return NonFiniteLossError(f"training stopped: non-finite loss at {where}")

    @torch.no_grad()
    def _parts(self, pl_module: pl.LightningModule, loss: Tensor) -> str:
        """`loss=nan, recon=..., kl=inf`: the parts recomputed on the same batch and weights."""
        parts = {"loss": loss}
        x = self._batch[0] if isinstance(self._batch, list | tuple) else None
        if x is not None and hasattr(pl_module, "loss") and hasattr(pl_module, "noise"):
            recomputed, _ = pl_module.loss(pl_module.noise(x), x)
            parts.update({k: v for k, v in recomputed.items() if k != "loss"})
        return ", ".join(f"{k}={float(v):.6g}" for k, v in parts.items())


class GracefulInterrupt(pl.Callback):
    """Ctrl-C (or SIGTERM: `kill`, a container or scheduler stopping the job) while training:
    finish the step, save `last.ckpt`, stop; the run records `interrupted` and exits as that
    signal's process would (130, 143).

    The first Ctrl-C only sets a flag; the checkpoint is taken at the end of the training step,
    where Lightning takes its own step checkpoints, so a resumed run continues exactly (Python's
    KeyboardInterrupt lands anywhere, e.g. half-way through an optimizer step). A second Ctrl-C
    stops at once; the last checkpoint is then the one written before. (SIGTERM/SIGUSR1 under
    SLURM are `aelab.callbacks.SlurmRequeue`'s; elsewhere Lightning's own SIGTERM handler would
    end the run at the next batch with no checkpoint and no record, exit status 0.)
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal: signal.Signals = signal.SIGINT  # the one that asked to stop
        self._previous: dict[signal.Signals, Any] = {}

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signals = [signal.SIGINT] if SLURMEnvironment.detect() else [signal.SIGINT, signal.SIGTERM]
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal = signal.Signals(signum)
        self._restore()
        name = "Ctrl-C" if self.signal == signal.SIGINT else self.signal.name
        print(
            f"\n{name}: saving a checkpoint after this step, then stopping (again: stop now)",
            file=sys.stderr,
            flush=True,
        )

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.requested:
            # a full checkpoint (optimizer, loops, callbacks) for resume; said explicitly, or
            # Lightning logs "`weights_only` was not set, defaulting to `False`"
            trainer.save_checkpoint(last_checkpoint_path(trainer), weights_only=False)
            raise KeyboardInterrupt

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()
        if self.requested:  # came during the last validation: last.ckpt is already final
            raise KeyboardInterrupt

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()
