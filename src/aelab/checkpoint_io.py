"""Lightning's checkpoint writer, through aelab's one atomic writer (`aelab.run.atomic`)."""

from __future__ import annotations

import io
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from aelab.run.atomic import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint (`last.ckpt`, the best one, SLURM's `hpc_ckpt_<n>.ckpt`, Ctrl-C's) written
    through `write_atomic`: a full disk or a kill during the write never replaces a good
    checkpoint with part of one.

    Lightning's own writer stages the file in the system temp folder and copies it over the
    checkpoint, so a full disk truncated the checkpoint and its error named the temp file.

    Raises OSError naming the checkpoint (`filename`: its path) when it cannot be written.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised first: an error here leaves no file at all
        # a dot name, `.tmp`: never taken for a checkpoint (Lightning resumes from `hpc_ckpt_*`)
        write_atomic(path, buffer.getbuffer(), suffix=".tmp")
