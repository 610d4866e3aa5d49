"""aelab's SLURM launcher (Hydra finds plugins only under the `hydra_plugins` package)."""
