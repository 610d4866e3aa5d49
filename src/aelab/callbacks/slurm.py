"""Preemption on SLURM: checkpoint at the next step boundary when warned, then requeue the job.

SLURM warns a job with SIGUSR1 before its time limit (`--signal=USR1@<s>`, which the `slurm`
launcher preset asks for; `scancel --signal=USR1 <job>` does it by hand) and sends SIGTERM when
it preempts or requeues it (`scontrol requeue <job>`). Lightning's own SLURM handler saves inside
the signal handler, i.e. wherever the signal lands: half-way through an optimizer step (on a CPU,
Adam updates one parameter at a time in Python) or a validation pass, so the resumed run is not
the run that would have been; and its SIGTERM handler stops without saving. `SlurmRequeue` only
notes the signal, and after the current training batch, where Lightning resumes exactly, writes
`hpc_ckpt_<n>.ckpt` in the run folder and, for SIGUSR1, runs `scontrol requeue`. SLURM starts
the job again: submitit reruns the same Hydra job in the same folder, and Lightning's `fit`
restores the newest `hpc_ckpt_*` there by itself (it does whenever it runs under SLURM), so the
step counter, the TensorBoard run and the checkpoints carry on.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment
from typing_extensions import override

from aelab.slurm import REQUEUE_SIGNAL, STOP_SIGNAL, hpc_checkpoint_path, requeue_slurm_job

log = logging.getLogger(__name__)


class StoppedBySlurm(SystemExit):
    """Ends the process without a result, so submitit's waiting parent keeps waiting for the
    requeued run (an Exception would be recorded as the job's failure)."""


class SlurmRequeue(pl.Callback):
    """Under SLURM: on SIGUSR1 save and requeue, on SIGTERM save, both after the current batch
    (after the next one when the current one ends an epoch).

    SIGUSR1 is this callback's from its creation to the end of the process: SIGUSR1's default
    action kills, and SLURM may send its warning before training starts (a short time limit) or
    while testing; it is then acted on at the first training batch, or not at all once training
    is over. SIGTERM is this callback's while the training loop runs and Lightning's otherwise.
    Every rank gets SLURM's signals, but not at the same batch, so the ranks agree on the step
    (one all-reduce per batch under DDP) before saving together. Elsewhere it is inert.
    """

    def __init__(self) -> None:
        self._received: signal.Signals | None = None
        self._lightning_sigterm: Any = None  # Lightning's SIGTERM handler, while we hold ours
        self.active = SLURMEnvironment.detect() and (
            threading.current_thread() is threading.main_thread()
        )
        if self.active:  # before Lightning's: it installs its own only where none is set
            signal.signal(REQUEUE_SIGNAL, self._note)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning's SIGTERM handler would end the run at the next batch without a checkpoint
        if self.active:
            self._lightning_sigterm = signal.signal(STOP_SIGNAL, self._note)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._give_sigterm_back()

    def _give_sigterm_back(self) -> None:
        if self._lightning_sigterm is not None:
            signal.signal(STOP_SIGNAL, self._lightning_sigterm)
            self._lightning_sigterm = None

    def _note(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: checkpoint after this training batch", signal.Signals(signum).name)
        if self._received != REQUEUE_SIGNAL:  # a requeue request outranks a stop
            self._received = signal.Signals(signum)

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        # not after an epoch's last batch: resumed from there, Lightning skips that epoch's
        # validation and end-of-epoch logging; the next epoch's first batch is the place
        if not self.active or batch_idx + 1 >= trainer.num_training_batches:
            return
        strategy = trainer.strategy
        if not strategy.reduce_boolean_decision(self._received is not None, all=False):
            return
        requeue = strategy.reduce_boolean_decision(self._received == REQUEUE_SIGNAL, all=False)
        self._received = None
        path = Path(strategy.broadcast(str(hpc_checkpoint_path(trainer.default_root_dir))))
        # every rank takes part, rank 0 writes; full (optimizer, loops) for the restart, and said
        # explicitly, or Lightning logs "`weights_only` was not set, defaulting to `False`"
        trainer.save_checkpoint(path, weights_only=False)
        log.info("saved %s at global step %d", path, trainer.global_step)
        if trainer.is_global_zero:  # the newest is the one resumed from; keep only it
            for old in path.parent.glob("hpc_ckpt_*.ckpt"):
                if old != path:
                    old.unlink()
        if requeue and not strategy.broadcast(self._requeue() if trainer.is_global_zero else False):
            return  # not requeued: train on; the checkpoint stays
        self._give_sigterm_back()  # the SIGTERM that follows a requeue is Lightning's again
        why = "requeued" if requeue else "stopped by SLURM (SIGTERM)"
        raise StoppedBySlurm(f"{why} after saving {path}")

    @staticmethod
    def _requeue() -> bool:
        return requeue_slurm_job()
