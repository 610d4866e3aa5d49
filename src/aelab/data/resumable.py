"""Training batches that a resumed run replays exactly.

A killed run resumes from its last checkpoint, which may lie in the middle of an epoch. For it to
end with the same weights as a run that was never stopped, nothing a training step sees may depend
on the history of the process:

- the order of an epoch is a permutation drawn from (seed, epoch), not from the global RNG as
  `DataLoader(shuffle=True)` draws it;
- the loader's place in that order is part of the checkpoint: Lightning stores `state_dict()` of
  a loader that has one and hands it back to `load_state_dict()` when it resumes mid-epoch;
- the global torch RNG, which dynamic binarization, input noise and the VAE's sampling draw from,
  is re-seeded from (seed, epoch, batch) right before each batch is drawn. DataLoader workers
  have RNGs of their own, so a dataset's random part (`finish_batch(batch)`, where it has one)
  is drawn here, in the training process, after the re-seeding: with or without workers, a run
  draws the same numbers.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integers in [0, 2**64) (BLAKE2b: ~1 us, the same anywhere)."""
    digest = hashlib.blake2b(b"".join(k.to_bytes(8, "little") for k in keys), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


def seed_global_rng(seed: int) -> None:
    """`torch.manual_seed`, without its cost per batch on a CPU (a share of a small model's step:
    docs, Performance).

    While CUDA is not initialised, torch.manual_seed queues a CUDA seed for later together with a
    formatted stack trace; a CPU run only draws from the CPU generator.
    """
    if torch.cuda.is_initialized() or torch.backends.mps.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


class EpochSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch) and can start part-way into the epoch."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.epoch = 0
        self.start = 0  # positions of this epoch's order to leave out (already trained on)

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before every epoch, as for a DistributedSampler."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=generator)[self.start :].tolist())

    def __len__(self) -> int:
        return self.size


class ResumableLoader(DataLoader):
    """`DataLoader(shuffle=True)` whose place in the epoch is saved in Lightning checkpoints.

    `seed`: the run's (the datamodule hands it in); the order and the random numbers of every
    batch derive from it. Under DDP Lightning re-creates it with a DistributedSampler; it is then
    a plain loader. Raises ValueError without a seed or a sampler.
    """

    def __init__(
        self,
        dataset: Dataset,
        *args: Any,
        seed: int | None = None,
        sampler: Sampler | None = None,
        **kwargs: Any,
    ) -> None:
        if sampler is None:
            if seed is None:
                raise ValueError("ResumableLoader needs seed= (the run's seed) or a sampler")
            sampler = EpochSampler(len(dataset), seed)
        super().__init__(dataset, *args, sampler=sampler, **kwargs)
        self.position = (0, 0)  # (epoch, batches of it handed out)
        self._resume: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        finish = getattr(self.dataset, "finish_batch", None) or (lambda batch: batch)
        sampler = self.sampler
        if not isinstance(sampler, EpochSampler):
            yield from map(finish, super().__iter__())
            return
        epoch = sampler.epoch
        first = self._resume[1] if self._resume and self._resume[0] == epoch else 0
        self._resume = None
        sampler.start = first * self.batch_size
        self.position = (epoch, first)
        batches = super().__iter__()
        for index in itertools.count(first):
            seed_global_rng(derive_seed(sampler.seed, epoch, index))
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.position = (epoch, index + 1)
            yield finish(batch)

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.position
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if isinstance(self.sampler, EpochSampler):
            self.sampler.set_epoch(state["epoch"])
            self._resume = (state["epoch"], state["batches"])
