"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher, with sbatch's refusal of the
sweep's array job (a partition that does not exist, a time limit over the partition's, no
sbatch on this machine) as one line and exit status 2 instead of submitit's traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)

from aelab.run import outcome


def sbatch_refusal(err: BaseException) -> str | None:
    """What sbatch said when it refused the submission (its stderr, as one line), or that there
    is no SLURM here; None for any other error (a job that failed on the cluster is not one)."""
    cause = err.__cause__
    if isinstance(cause, subprocess.CalledProcessError) and "sbatch" in str(cause.cmd[0]):
        lines = [" ".join(line.split()) for line in str(err).splitlines() if line.strip()]
        said = "; ".join(lines) or f"exit status {cause.returncode}"
        return f"sbatch refused the sweep's array job: {said}"
    missing = isinstance(err, FileNotFoundError) and "sbatch" in str(err.filename)
    if missing or (type(err) is RuntimeError and '"srun"' in str(err)):  # submitit's own check
        return (
            "no SLURM on this machine (no sbatch, srun): hydra/launcher=slurm submits from a "
            "SLURM login node"
        )
    return None


class SlurmLauncher(SubmititSlurmLauncher):
    """Submits a sweep to SLURM as one array job (hydra-submitit-launcher's `SlurmLauncher`).

    Raises SystemExit (exit status 2) after printing `aelab-<task>: error: sbatch refused ...`
    on stderr when sbatch refuses the array job (`sbatch_refusal`).
    """

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from submitit.core.utils import FailedJobError

        try:
            return super().launch(job_overrides, initial_job_idx)
        except (FailedJobError, FileNotFoundError, RuntimeError) as err:
            line = sbatch_refusal(err)
            if line is None:
                raise
            task = self.config.hydra.job.name if self.config is not None else "train"
            print(f"aelab-{task}: error: {line}", file=sys.stderr)
            raise SystemExit(outcome.REFUSED) from None
