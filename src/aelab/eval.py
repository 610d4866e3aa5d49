"""aelab-eval: re-score a checkpoint on the test set, from the config stored inside it.

aelab-eval ckpt_path=outputs/runs/.../checkpoints/last.ckpt [data.binarize=static]
aelab-eval ckpt_path=... eval.iw_samples=5000 eval.iw_images=null   # Burda et al.'s protocol
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from aelab import CONFIG_PATH
from aelab.checks import (
    ConfigError,
    build,
    check_search_path,
    check_seeds,
    check_test_batches,
)
from aelab.numerics import set_flush_denormal, set_threads
from aelab.run import outcome
from aelab.run.atomic import write_json_atomic
from aelab.run.checkpoint import load_checkpoint, model_from_checkpoint, stored_entry
from aelab.run.folder import nothing_left_if_refused
from aelab.run.outcome import RunInterrupted
from aelab.run.output import quiet_lightning
from aelab.run.record import run_info
from aelab.train import build_trainer


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score `cfg.ckpt_path` on the test set; writes run.json and metrics.json in the run folder.

    Raises ConfigError for a missing or foreign checkpoint or a bad value (named `group.key`).
    """
    given = None if OmegaConf.is_missing(cfg, "ckpt_path") else cfg.ckpt_path
    if not given:
        raise ConfigError("ckpt_path", given, "a checkpoint written by aelab-train (required)")
    quiet_lightning(bool(cfg.get("verbose", False)))
    check_seeds(cfg)
    check_test_batches(cfg.trainer.get("limit_test_batches"))
    flushed = set_flush_denormal(cfg.get("flush_denormal", True))
    set_threads(cfg.get("threads"))
    ckpt = load_checkpoint(cfg.ckpt_path)
    stored = OmegaConf.create(stored_entry(ckpt)["config"])
    data_overrides = {k: v for k, v in cfg.data.items() if v is not None}
    data_cfg = OmegaConf.merge(stored.data, data_overrides)
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = build(data_cfg, "data")
    model = model_from_checkpoint(ckpt, str(cfg.ckpt_path))
    if cfg.get("sampler") is not None:  # `sampler=gmm`: this sampler replaces the list
        cfg.eval.generation.samplers = [cfg.sampler]
    trainer = build_trainer(cfg)  # as aelab-train does: `trainer`, `callbacks`, `logger`
    write_json_atomic(output_dir / "run.json", run_info(flush_denormal=flushed))
    try:
        results = trainer.test(model, datamodule=datamodule)
    except (outcome.Terminated, SIGTERMException):
        # nothing to continue: scoring the checkpoint again is the same command
        command = shlex.join(["aelab-eval", *sys.argv[1:]])
        outcome.interrupted(output_dir, None, command)
        raise RunInterrupted(
            f"interrupted while testing; to score it again: {command}", signal.SIGTERM
        ) from None
    metrics = {k: float(v) for k, v in results[0].items()}
    outcome.completed(output_dir, {"ckpt_path": str(cfg.ckpt_path), **metrics})
    print(
        f"run directory:  {output_dir}\ntest metrics:   "
        f"{ {k: round(v, 5) for k, v in metrics.items()} }",
        flush=True,
    )
    return metrics


def main() -> None:
    """aelab-eval: the command line's config folders checked first (as aelab-train does)."""
    with outcome.exit_on_config_error("aelab-eval"):
        check_search_path(sys.argv[1:])
    hydra_main()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    with outcome.exit_on_config_error("aelab-eval"), nothing_left_if_refused():
        try:
            with outcome.sigterm_stops_the_run():
                evaluate(cfg)
        except (RunInterrupted, outcome.Terminated) as err:
            outcome.job_failed(err, Path(cfg.paths.output_dir), False, program="aelab-eval")


if __name__ == "__main__":
    main()
