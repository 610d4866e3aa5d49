"""aelab's Hydra sweepers (Hydra finds plugins only under the `hydra_plugins` package)."""
