"""Which jobs of a sweep may be trained as one stack, and why a job may not.

Two jobs share a stack when their composed configs differ only in values that change neither a
tensor's shape nor a code path of the training step (`STACKABLE`): the seed, beta, the noise
level, the learning rate, weight decay, the gradient-clipping threshold, the KL schedule and the
learning-rate scheduler. Everything else (model
class, net, latent size, batch size, data, trainer limits, ...) must be equal.

Whether a model stacks is the model's own word: its class attribute `why_not_stackable`
(`aelab.models.base.AutoencoderModule`), None for a model whose `loss` reads only its encoder's
and decoder's weights and takes its random numbers from `draws()`, else the one-line reason.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from aelab.checks import import_refusal, locate
from aelab.stacked.lr import why_scheduler_not_stackable

# dotted keys a member may set to its own value
STACKABLE = (
    "seed",
    "data.seed",  # the batch order and random numbers (`${seed}` unless set)
    "model.beta",
    "noise.std",
    "noise.p",
    "optimizer.lr",
    "optimizer.weight_decay",
    "trainer.gradient_clip_val",
    "kl_schedule",  # each member's own (aelab.schedules), evaluated per member in the step
    "lr_scheduler",  # each member's own, stepped per member (aelab.stacked.lr)
)
# keys that say where a job's files go or how its process runs, not what it learns
PER_JOB = ("paths", "hydra", "task_name", "threads", "resume")
# Lightning's Trainer keywords, by what a stack does with each (tests/test_stacked.py checks that
# the three name every keyword of the installed Lightning's Trainer):
# the stack trains by them as the run alone (`train_stacked`), or its job runs alone saying why
TRAINER_HONOURED = (
    "accelerator",
    "devices",  # one: more runs alone
    "num_nodes",
    "strategy",  # auto or single_device: another runs alone
    "precision",  # float32: another runs alone
    "max_epochs",
    "max_steps",
    "max_time",  # null: a time limit runs alone
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",  # the member's own Trainer tests
    "val_check_interval",  # a fraction or a count; a time runs alone
    "check_val_every_n_epoch",
    "accumulate_grad_batches",  # 1: more runs alone
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "deterministic",  # and benchmark: torch's flags, set as Lightning sets them
    "benchmark",
    "default_root_dir",
)
# what changes no figure of a stack nor of its run alone: the member's own Trainer (logging,
# checkpointing, testing), what the display shows, or what ends a run early, which a stack
# does but by its NaN guard (as the run alone's raises)
TRAINER_NO_EFFECT = (
    "logger",
    "callbacks",
    "min_epochs",
    "min_steps",
    "limit_predict_batches",
    "num_sanity_val_steps",
    "log_every_n_steps",
    "enable_checkpointing",
    "enable_progress_bar",
    "enable_model_summary",
    "enable_autolog_hparams",
    "model_registry",
    "inference_mode",
    "use_distributed_sampler",
    "sync_batchnorm",
)
# what the stacked loop does not do: a job setting one (to other than these values) runs alone
TRAINER_NOT_STACKED = {
    "fast_dev_run": ((False, 0, None), "a stack trains for max_epochs / max_steps"),
    "overfit_batches": ((0, 0.0, None), "a stack draws each member's batches by its own sampler"),
    "profiler": ((None,), "Lightning's profiler does not see the stacked loop"),
    "detect_anomaly": ((False, None), "the stacked step runs without autograd's anomaly mode"),
    "barebones": ((False, None), "a stacked member is written as a full run"),
    "plugins": ((None,), "the stacked step takes no Lightning plugin"),
    "reload_dataloaders_every_n_epochs": ((0, None), "a stack draws its batches by index"),
}
OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW")
PRECISIONS = (32, "32", "32-true", None)


class NotStackable(ValueError):
    """A config a stacked run cannot train; the message names the key and why."""


def _plain(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The config as plain containers, its job folder (and what is made from it) left out."""
    if isinstance(cfg, DictConfig):
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.pop("hydra", None)  # `${hydra:...}` resolves only inside a running job
            if "paths" in cfg:
                cfg.paths.output_dir = "<job folder>"
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return json.loads(json.dumps(cfg, default=str))


def why_not_stackable(cfg: DictConfig | Mapping[str, Any]) -> str | None:
    """None when `cfg` can be a member of a stack, else one line naming the key and the reason."""
    c = _plain(cfg)
    model, opt, trainer = c.get("model", {}), c.get("optimizer", {}), c.get("trainer", {})
    why = _model_why_not(model.get("_target_"))
    if why is not None:
        return why
    if opt.get("_target_") not in OPTIMIZERS:
        return f"optimizer._target_={opt.get('_target_')}: the stacked step has Adam and AdamW"
    for flag in ("amsgrad", "maximize"):
        if opt.get(flag):
            return f"optimizer.{flag}=true: the stacked Adam step has no {flag}"
    if trainer.get("accumulate_grad_batches", 1) != 1:
        return "trainer.accumulate_grad_batches: the stacked step takes one batch per step"
    if trainer.get("devices", 1) not in (1, "1", "auto") or trainer.get("num_nodes", 1) != 1:
        return "trainer.devices: a stack trains on one device"
    if trainer.get("precision", "32-true") not in PRECISIONS:
        return f"trainer.precision={trainer.get('precision')}: a stack trains in float32"
    if trainer.get("gradient_clip_algorithm") not in (None, "norm", "value"):
        return f"trainer.gradient_clip_algorithm={trainer['gradient_clip_algorithm']}: not known"
    if trainer.get("max_time") is not None:
        return "trainer.max_time: members would stop at different steps"
    if trainer.get("strategy", "auto") not in ("auto", "single_device", None):
        return f"trainer.strategy={trainer['strategy']}: a stack trains in one process"
    interval = trainer.get("val_check_interval")
    timed = isinstance(interval, bool) or not isinstance(interval, int | float)
    if interval is not None and timed:
        return f"trainer.val_check_interval={interval}: a stack validates at steps, not at times"
    for key, (defaults, why) in TRAINER_NOT_STACKED.items():
        if trainer.get(key) not in defaults:
            return f"trainer.{key}={trainer[key]}: {why}"
    why = why_scheduler_not_stackable(c.get("lr_scheduler"))
    if why is not None:
        return why
    if c.get("ckpt_path"):
        return "ckpt_path: a stack starts from fresh weights or from its own stack checkpoint"
    data_target = (c.get("data") or {}).get("_target_")
    if not _serves_training_batches(data_target):
        return (
            f"data._target_={data_target}: a stack draws its members' batches through the "
            "datamodule's training_batch(indices), which this one lacks"
        )
    if c.get("resume") not in (None, False, True):
        # a stack continues from its checkpoint in the sweep folder (resume=true or not)
        return "resume=<run dir>: a stack continues from its checkpoint in the sweep folder"
    return None


def _model_why_not(target: Any) -> str | None:
    """None when the model class `target` names declares that it stacks (its class attribute
    `why_not_stackable` is None: `aelab.models.base.AutoencoderModule`), else one line: the
    class's own reason, or why the target cannot be read."""
    try:
        found = locate(str(target))  # as hydra's get_class finds it, without its logged error
    except ImportError as err:
        return str(import_refusal("model", target, err))
    if not isinstance(found, type):
        return f"model._target_={target}: a stack builds its members from a model class"
    if not hasattr(found, "why_not_stackable"):
        return f"model._target_={target}: not a subclass of aelab.models.base.AutoencoderModule"
    why = found.why_not_stackable
    return None if why is None else f"model._target_={target}: {why}"


def _serves_training_batches(target: str | None) -> bool:
    try:
        return target is not None and hasattr(get_class(target), "training_batch")
    except Exception:  # noqa: BLE001 - not importable: the job, run alone, says why in one line
        return False


def shape_key(cfg: DictConfig | Mapping[str, Any]) -> str:
    """The config less its stackable and per-job values, as text: equal for stackable jobs."""
    c = _plain(cfg)
    for key in PER_JOB:
        c.pop(key, None)
    for dotted in STACKABLE:
        *parents, last = dotted.split(".")
        node: Any = c
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return json.dumps(c, sort_keys=True, default=str)


def group_configs(
    cfgs: Sequence[DictConfig | Mapping[str, Any]], max_models: int
) -> tuple[list[list[int]], dict[int, str]]:
    """Job indices in stacks of at most `max_models` (first-seen order), and the jobs that run
    alone with the reason (a model that cannot be stacked, or no other job of its shape).

    Raises ValueError for `max_models` < 1.
    """
    if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 1:
        raise ValueError(f"max_models must be an integer >= 1, got {max_models!r}")
    alone: dict[int, str] = {}
    by_shape: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        why = why_not_stackable(cfg)
        if why is not None:
            alone[i] = why
            continue
        by_shape.setdefault(shape_key(cfg), []).append(i)
    groups: list[list[int]] = []
    for members in by_shape.values():
        for start in range(0, len(members), max_models):
            chunk = members[start : start + max_models]
            if len(chunk) == 1:
                alone[chunk[0]] = (
                    "max_models=1" if max_models == 1 else "no other job of the sweep has its shape"
                )
            else:
                groups.append(chunk)
    return groups, alone
