"""aelab-train: compose a run with Hydra, train it with Lightning, test it, write metrics.json.

    aelab-train model=vae model.latent_dim=8 model.beta=4 noise=gaussian noise.std=0.3
    aelab-train -m model=ae,vae model.latent_dim=2,16        # a sweep, one folder per job
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger

from aelab import CONFIG_DIR
from aelab.checks import ConfigError, build, check_float, check_int, exit_on_config_error, in_group
from aelab.runs import hparams_row, load_checkpoint, run_info, write_json_atomic

log = logging.getLogger("aelab.train")


def build_model(cfg: DictConfig) -> pl.LightningModule:
    """The model from `cfg.model`, with the `net`, `noise` and `optimizer` groups handed in.

    The groups are built once first, on their own, so a bad value is reported as `noise.std`
    rather than as an error inside the model.
    """
    for group in ("net", "noise"):
        build(cfg[group], group)
    if cfg.optimizer.get("lr") is not None:
        with in_group("optimizer"):
            check_float("lr", cfg.optimizer.lr, 0.0, low_open=True)
    groups = {
        g: OmegaConf.to_container(cfg[g], resolve=True) for g in ("net", "noise", "optimizer")
    }
    return build(cfg.model, "model", _recursive_=False, **groups)


def check_trainer(trainer: DictConfig) -> None:
    """Lightning's own checks come late and deep; these are the values users get wrong."""
    with in_group("trainer"):
        check_int("max_epochs", trainer.get("max_epochs"), 0)


def build_trainer(cfg: DictConfig, **kwargs: Any) -> pl.Trainer:
    callbacks = [build(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items()]
    loggers = [build(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items()]
    return build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False, **kwargs)


def resume_path(cfg: DictConfig, model: pl.LightningModule) -> str | None:
    """The checkpoint to resume from, after checking it belongs to this kind of model."""
    if not cfg.ckpt_path:
        return None
    path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    path = path if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    stored = load_checkpoint(path)
    wanted = f"{type(model).__module__}.{type(model).__qualname__}"
    found = stored["aelab"]["model_class"]
    stored_latent = stored["hyper_parameters"].get("latent_dim")
    if found != wanted or stored_latent != model.latent_dim:
        raise ConfigError(
            "ckpt_path",
            str(path),
            f"a checkpoint of {wanted} with latent_dim="
            f"{model.latent_dim} (it holds {found} with latent_dim={stored_latent})",
        )
    return str(path)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test the best checkpoint, and write `metrics.json` and the HParams row."""
    check_trainer(cfg.trainer)
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = build(cfg.data, "data")
    model = build_model(cfg)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    trainer = build_trainer(cfg)
    ckpt_path = resume_path(cfg, model)
    write_json_atomic(output_dir / "run.json", run_info())

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    # the last validation figures; testing replaces callback_metrics
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in results[0].items()})
    write_json_atomic(output_dir / "metrics.json", {"status": "completed", **metrics})
    for logger in trainer.loggers:  # TensorBoard's HParams tab pairs the row with the metrics
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams_row(model.run_config), metrics=metrics)
        else:
            logger.log_hyperparams(hparams_row(model.run_config))
    _say_where(output_dir, trainer, metrics)
    return metrics


def _say_where(output_dir: Path, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    ckpt = trainer.checkpoint_callback
    lines = [f"run directory:  {output_dir}"]
    if ckpt is not None:
        lines.append(
            f"checkpoints:    {ckpt.dirpath} (last.ckpt, best {Path(ckpt.best_model_path).name})"
        )
    lines.append(f"tensorboard:    tensorboard --logdir {output_dir}")
    shown = {k: round(v, 5) for k, v in metrics.items() if k.startswith("test/")}
    lines.append(f"test metrics:   {shown}")
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    with exit_on_config_error("aelab-train"):
        metrics = train(cfg)
    return metrics.get("val/loss")


if __name__ == "__main__":
    main()
