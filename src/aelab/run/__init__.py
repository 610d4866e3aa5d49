"""A run's bookkeeping, without torch or Lightning (`aelab-report` and the resolvers use it).

- `atomic`: the one atomic writer (`write_atomic`, `write_json_atomic`).
- `folder`: where a run's folder is (new, or the one to resume), its lock, the output-folder
  check, and clearing a refused run's folder.
- `record`: run.json (command line, versions, commit, SLURM), the HParams row, metrics.json
  reading (`read_metrics`).
- `checkpoint`: the checkpoint key, `last.ckpt`'s place, weights-only loading.
- `outcome`: how a run ends: metrics.json's `status` (completed, failed, interrupted), written
  there only, and the exit status.
- `sweep`: Hydra callbacks of a sweep: the launcher check, its plan, the progress lines.

Nothing is imported here: the submodules sit on different layers (pyproject.toml's
`[tool.importlinter]`): `aelab.data` uses `atomic`; `folder` and `sweep` sit above it.
"""
