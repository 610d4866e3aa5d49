"""Optuna's TPE sampler for `hparams_search`, made for studies that are stopped and resumed.

Optuna seeds a sampler once, when it is made. A study kept in a storage
(`hydra.sweeper.storage=sqlite:///...`) and continued by a later `aelab-train -m` gets a new
sampler with the same seed, which proposes the first trials' values again: a resumed search would
repeat its random start-up trials (`n_startup_trials`) instead of going on.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from optuna import Study
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.trial import FrozenTrial

from aelab.data.resumable import derive_seed


class TrialSeededTPESampler(TPESampler):
    """`optuna.samplers.TPESampler` whose random draws come from (seed, trial number, parameter).

    A trial's values then depend only on the seed, its number and the trials finished before it,
    so a study stopped after n trials and resumed proposes what an uninterrupted one would have.
    Takes TPESampler's arguments; `seed=None` draws from fresh entropy, as TPESampler does.
    """

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed

    def _reseed(self, *keys: int) -> None:
        if self._base_seed is None:
            return
        seed = derive_seed(self._base_seed, *keys) % 2**32  # numpy's RandomState takes 32 bits
        # both generators TPE draws from: its own (EI candidates), its start-up random sampler's
        self._rng = np.random.RandomState(seed)
        self._random_sampler._rng = np.random.RandomState(seed)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._reseed(trial.number)
        return super().sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        # per parameter too: the sweeper asks a whole batch of trials before it samples them
        self._reseed(trial.number, zlib.crc32(param_name.encode()))
        return super().sample_independent(study, trial, param_name, param_distribution)
