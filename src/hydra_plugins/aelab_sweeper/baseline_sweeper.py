"""`hydra/sweeper=baseline`: Hydra's basic sweeper plus a baseline run once, not once per curve.

A sweep over two keys runs their product; where one value of one key makes the other key
meaningless (noise level 0: no corruption, whatever its kind), the product repeats the same run.
This sweeper takes the swept values without that point (levels from 0.1) and adds the baseline
given in `hydra.sweeper.baseline` (`noise_kind: none, noise_level: 0`) once for each combination
of the remaining swept keys (each seed, say), as the first jobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override

from aelab.resolvers import value_text


def _key(item: str) -> str:
    """The config key of a job override `+a.b=1` (`a.b`)."""
    return item.split("=", 1)[0].lstrip("+~")


def with_baseline(jobs: Sequence[Sequence[str]], baseline: Mapping[str, Any]) -> list[list[str]]:
    """The baseline jobs, then `jobs`: each job with the baseline's keys set to its values, once
    each (in first-seen order), less those already among `jobs`.

    `jobs`: each job's overrides (`key=value`) as Hydra's basic sweeper lists them.
    """
    if not baseline:
        return [list(job) for job in jobs]
    values = {str(k): v for k, v in baseline.items()}
    seen = {tuple(job) for job in jobs}
    extra: list[list[str]] = []
    for job in jobs:
        candidate = [
            f"{item.split('=', 1)[0]}={value_text(values[_key(item)])}"
            if _key(item) in values
            else item
            for item in job
        ]
        present = {_key(item) for item in job}
        candidate += [f"{k}={value_text(v)}" for k, v in values.items() if k not in present]
        if tuple(candidate) not in seen:
            seen.add(tuple(candidate))
            extra.append(candidate)
    return extra + [list(job) for job in jobs]


class BaselineSweeper(BasicSweeper):
    """BasicSweeper (`params`, `max_batch_size`) with `baseline`: key -> value of the baseline."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        baseline: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.baseline = dict(baseline or {})

    def split_arguments(  # type: ignore[override]  # BasicSweeper's is a staticmethod
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        (everything,) = BasicSweeper.split_arguments(overrides, None)
        jobs = with_baseline(everything, self.baseline)
        if max_batch_size is None:
            return [jobs]
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))
