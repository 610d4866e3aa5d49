"""Train M same-shape members as one stacked model, each the computation of its job run alone.

Each member is built as its single job builds its model (`pl.seed_everything(seed)` then
`aelab.train.build_model`), so it starts from its own initialisation. The members' encoder and
decoder parameters are stacked along a new leading dimension (`StackedNets`), and the step's
loss is the model's own `loss`, run on each member's parameters under `vmap(functional_call)`
(`StackedLoss`): the stack has no objective of its own, so every model whose loss reads no
per-member state but its weights, its draws and its KL schedule's values stacks.
Everything random or stateful is per member:

- batch order: the member's own `EpochSampler(seed)`, as its `ResumableLoader` orders it;
- random numbers: before batch `i` of epoch `e` the single run re-seeds the global RNG with
  `derive_seed(seed, e, i)` and then draws dynamic binarization, input noise and the model's
  own draws (`model.draws`: the VAE's reparameterisation noise) in that order; the stacked step
  does the same per member and hands the draws to the loss;
- the KL schedule: each member's own values at its step (`model.schedule_values`), handed to
  the loss; members whose schedules take different code paths (`KLSchedule.form`: capacity,
  free bits) are computed in one vectorised call per path;
- Adam: each member's slices are stepped as the tensors of its own model, with its own moments,
  step count, learning rate and weight decay (`StackedAdam`, torch's fused functional Adam);
- learning-rate schedule: each member's own `lr_scheduler`, stepped where Lightning steps it in
  the member's run (`aelab.stacked.lr`);
- gradient clipping: the 2-norm (or value) per member, with its own threshold;
- NaN guard: a member whose loss is not finite is frozen (no further update) and marked failed
  with the single run's message; the others go on.

Validation runs each member's weights through the ordinary model's own `evaluate_batch`, so
`val/*` figures are computed by the single run's code.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.trainer.connectors.accelerator_connector import _set_torch_flags
from torch import Tensor
from torch.optim.adam import adam

from aelab.callbacks.data_range import check_data_range
from aelab.checks import ConfigError, build, check_seeds
from aelab.data.resumable import EpochSampler, derive_seed, seed_global_rng
from aelab.models.base import AutoencoderModule
from aelab.numerics import set_flush_denormal
from aelab.stacked.checkpoint import group_key, load_stack, save_stack
from aelab.stacked.grouping import NotStackable, shape_key, why_not_stackable
from aelab.stacked.lr import MemberSchedulers
from aelab.stacked.nets import StackedLoss, StackedNets

log = logging.getLogger("aelab.stacked")


@dataclass
class StackedMember:
    """One member's outcome. `best_state`/`last_state`: the ordinary model's state_dict (CPU)."""

    cfg: DictConfig
    model: AutoencoderModule
    last_state: dict[str, Tensor] = field(default_factory=dict)
    best_state: dict[str, Tensor] | None = None
    best_epoch: int | None = None
    best_val: float = math.inf
    # per epoch: epoch, step, figures (train/*, val/*), train_seconds (the stack's loop)
    history: list[dict[str, Any]] = field(default_factory=list)
    failed: str | None = None  # the NaN guard's message
    failed_step: int | None = None
    interrupted_step: int | None = None  # stopped by `stop_requested` after this many steps
    global_step: int = 0
    resumed: bool = False  # continued from a stack checkpoint

    def state(self) -> dict[str, Any]:
        """What the stack checkpoint keeps of this member (plain containers, tensors)."""
        return {
            "failed": self.failed,
            "failed_step": self.failed_step,
            "best_state": self.best_state,
            "best_epoch": self.best_epoch,
            "best_val": self.best_val,
            "history": self.history,
            "global_step": self.global_step,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.failed, self.failed_step = state["failed"], state["failed_step"]
        self.best_state, self.best_epoch = state["best_state"], state["best_epoch"]
        self.best_val, self.history = state["best_val"], state["history"]
        self.global_step = state["global_step"]
        self.resumed = True

    @property
    def last_validation(self) -> dict[str, float]:
        for entry in reversed(self.history):
            val = {k: v for k, v in entry["figures"].items() if k.startswith("val/")}
            if val:
                return val
        return {}


def _num_batches(limit: Any, total: int) -> int:
    """Lightning's reading of `limit_*_batches`: null all, an int a count, a float a share."""
    if limit is None:
        return total
    if isinstance(limit, int):
        return min(total, limit)
    return int(total * float(limit))


def per_member(values: Tensor, like: Tensor) -> Tensor:
    """(M,) values shaped to broadcast over a stacked (M, ...) tensor."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class StackedAdam:
    """Adam / AdamW over stacked parameters, each member with its own learning rate and weight
    decay: torch's own functional Adam (`torch.optim.adam.adam`, fused where the device has the
    kernel, as aelab's `optimizer.fused=true`) steps each member's slices as the tensors of its
    own model, with its own moments and step count. Members sharing (lr, weight decay) go in one
    call. `alive` (M, bool) freezes members: their slices are left out of the step.

    `stacked`: the (M, *shape) tensors whose slices k are `members[k]`; with them the moments
    and step counts are kept stacked alike, and `step` given stacked gradients steps all members
    in one call on the stacked tensors while they share (lr, weight decay) and step count (the
    same arithmetic, element by element, as member by member).
    """

    def __init__(
        self,
        members: Sequence[Sequence[Tensor]],
        lr: Sequence[float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Sequence[float] | None = None,
        decoupled: bool = False,
        fused: bool | None = True,
        stacked: Sequence[Tensor] | None = None,
    ) -> None:
        self.members = [list(m) for m in members]
        self.lr = [float(v) for v in lr]
        self.weight_decay = [float(v) for v in weight_decay or [0.0] * len(self.members)]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.decoupled = decoupled
        device = self.members[0][0].device
        self.fused = fused and device.type in ("cpu", "cuda")
        step_device = device if self.fused else "cpu"
        self.stacked = list(stacked) if stacked is not None else None
        if self.stacked is None:
            self.exp_avg = [[torch.zeros_like(p) for p in m] for m in self.members]
            self.exp_avg_sq = [[torch.zeros_like(p) for p in m] for m in self.members]
            self.steps = [[torch.zeros((), device=step_device) for _ in m] for m in self.members]
        else:  # member k's state: slices k of stacked tensors
            count = len(self.members)
            self._exp_avg = [torch.zeros_like(t) for t in self.stacked]
            self._exp_avg_sq = [torch.zeros_like(t) for t in self.stacked]
            self._steps = [torch.zeros(count, device=step_device) for _ in self.stacked]
            self.exp_avg = [[t[k] for t in self._exp_avg] for k in range(count)]
            self.exp_avg_sq = [[t[k] for t in self._exp_avg_sq] for k in range(count)]
            self.steps = [[t[k] for t in self._steps] for k in range(count)]
        self.uniform = True  # every member has made the same steps
        self.set_lr(self.lr)

    def set_lr(self, lr: Sequence[float]) -> None:
        """Each member's learning rate for the next steps (its scheduler's value)."""
        self.lr = [float(v) for v in lr]
        self.groups: dict[tuple[float, float], list[int]] = {}
        for k, key in enumerate(zip(self.lr, self.weight_decay, strict=True)):
            self.groups.setdefault(key, []).append(k)

    def _step_stacked(self, grads: Sequence[Tensor]) -> None:
        """Every member's step in one call: `grads` like `stacked`."""
        ((lr, wd),) = self.groups
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]
        # member 0's step counts stand for all (they are equal); the others' follow after
        self._adam(self.stacked, grads, self._exp_avg, self._exp_avg_sq, self.steps[0], lr, wd)
        torch._foreach_add_([t[1:] for t in self._steps], 1.0)

    @torch.no_grad()
    def step(
        self,
        grads: Sequence[Sequence[Tensor]] | Sequence[Tensor],
        alive: Sequence[bool] | None = None,
    ) -> None:
        """`grads[k]`: member k's gradients, like its parameters (any strides); or the stacked
        gradients, like `stacked` (member k's their slices k)."""
        everyone = alive is None or all(alive)
        if grads and isinstance(grads[0], Tensor):
            if everyone and self.stacked is not None and self.uniform and len(self.groups) == 1:
                self._step_stacked(grads)  # type: ignore[arg-type]
                return
            grads = [[g[k] for g in grads] for k in range(len(self.members))]  # type: ignore[index]
        if not everyone:
            self.uniform = False
        # the fused kernel reads a gradient as laid out like its parameter: a stacked matmul's
        # weight gradient comes transposed in memory
        grads = [[g if g.is_contiguous() else g.contiguous() for g in gs] for gs in grads]
        for (lr, wd), ks in self.groups.items():
            ks = [k for k in ks if alive is None or alive[k]]
            if not ks:
                continue
            self._adam(
                [p for k in ks for p in self.members[k]],
                [g for k in ks for g in grads[k]],
                [m for k in ks for m in self.exp_avg[k]],
                [v for k in ks for v in self.exp_avg_sq[k]],
                [s for k in ks for s in self.steps[k]],
                lr,
                wd,
            )

    def _adam(
        self,
        params: list[Tensor],
        grads: Sequence[Tensor],
        exp_avg: list[Tensor],
        exp_avg_sq: list[Tensor],
        steps: list[Tensor],
        lr: float,
        weight_decay: float,
    ) -> None:
        """torch's functional Adam (AdamW: decoupled) on these tensors, with the stack's
        betas, eps and kernel."""
        adam(
            params,
            list(grads),
            exp_avg,
            exp_avg_sq,
            [],
            steps,
            fused=self.fused,
            foreach=False if not self.fused else None,
            decoupled_weight_decay=self.decoupled,
            amsgrad=False,
            beta1=self.beta1,
            beta2=self.beta2,
            lr=lr,
            weight_decay=weight_decay,
            eps=self.eps,
            maximize=False,
        )

    def state(self) -> dict[str, list[list[Tensor]]]:
        """Each member's moments and step counts (for the stack checkpoint)."""
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    @torch.no_grad()
    def load(self, state: dict[str, list[list[Tensor]]]) -> None:
        """`state()`'s tensors copied into this optimizer's (any device)."""
        for name in ("exp_avg", "exp_avg_sq", "steps"):
            for mine, saved in zip(getattr(self, name), state[name], strict=True):
                for tensor, value in zip(mine, saved, strict=True):
                    tensor.copy_(value)
        self.uniform = all(all(bool(s == m[0]) for s in m) for m in zip(*self.steps, strict=True))


def clip_stacked(grads: list[Tensor], clip: Tensor, algorithm: str) -> list[Tensor]:
    """Per-member gradient clipping as Lightning does it for one model (`clip_grad_norm_`:
    the 2-norm over all parameters, scaled by min(1, clip / (norm + 1e-6)); or clamping to
    +-clip). `clip`: (M,), inf where a member does not clip."""
    if algorithm == "value":
        return [
            torch.maximum(
                torch.minimum(g, per_member(clip, g)),
                -per_member(clip, g),
            )
            for g in grads
        ]
    norms = torch.stack([g.flatten(1).norm(2, dim=1) for g in grads], dim=1).norm(2, dim=1)
    coef = (clip / (norms + 1e-6)).clamp(max=1.0)
    return [g * per_member(coef, g) for g in grads]


def _member_value(cfg: DictConfig, dotted: str, default: Any) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if node is not None else None
    return default if node is None else node


def build_members(cfgs: Sequence[DictConfig]) -> list[AutoencoderModule]:
    """Each member's model exactly as its single job builds it: seeded by its own seed.

    Raises NotStackable when a config cannot be stacked or the configs differ in shape, and
    ConfigError (`trainer.*`, `seed`) for a value its run alone refuses (`aelab.train
    .check_trainer`: a run with no end among them).
    """
    from aelab.train import build_model, check_trainer  # Lightning's whole stack; only here

    keys = set()
    for cfg in cfgs:
        why = why_not_stackable(cfg)
        if why is not None:
            raise NotStackable(why)
        keys.add(shape_key(cfg))
    if len(keys) > 1:
        raise NotStackable("the members' configs differ in more than stackable values")
    models = []
    for cfg in cfgs:
        check_seeds(cfg)  # as aelab-train checks them, before seed_everything's traceback
        check_trainer(cfg.trainer)  # as a run alone: no end (max_epochs=-1, max_steps=-1), ...
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        models.append(build_model(cfg))
    return models


def val_check_batch(interval: Any, n_batches: int, across_epochs: bool = False) -> int:
    """Every how many training batches the run alone validates (Lightning's `val_check_batch`):
    `val_check_interval` null or a fraction of the epoch's `n_batches` (at least 1), or a count
    (of the epoch's batches; `across_epochs`, check_val_every_n_epoch=null: of all batches).

    Raises ConfigError (`trainer.val_check_interval`) where Lightning refuses it: a count beyond
    the epoch, a fraction across epochs; and for a time (a stack's members validate at steps).
    """
    if across_epochs and (isinstance(interval, bool) or not isinstance(interval, int)):
        raise ConfigError(
            "trainer.val_check_interval",
            interval,
            "an integer with trainer.check_val_every_n_epoch=null",
            grouped=True,
        )
    if interval is None:
        return max(n_batches, 1)
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise ConfigError(
            "trainer.val_check_interval",
            interval,
            "a fraction of the epoch or a number of batches in a stacked sweep (a time: run "
            "the sweep with the basic launcher)",
            grouped=True,
        )
    if not 0 < interval <= (math.inf if isinstance(interval, int) else 1.0):
        raise ConfigError(
            "trainer.val_check_interval",
            interval,
            "a fraction in (0, 1] or an integer >= 1",
            grouped=True,
        )
    if isinstance(interval, int):
        if interval > n_batches and not across_epochs:
            raise ConfigError(
                "trainer.val_check_interval",
                interval,
                f"an integer <= the epoch's {n_batches} training batches, or a fraction",
                grouped=True,
            )
        return interval
    return max(1, int(n_batches * float(interval)))


def _limit(cfg: DictConfig, key: str) -> Any:
    return cfg.trainer.get(key)


def train_stacked(
    cfgs: Sequence[DictConfig],
    device: str | torch.device = "cpu",
    on_epoch: Callable[[list[StackedMember], int, Any], None] | None = None,
    validate: bool = True,
    stop_requested: Callable[[], bool] | None = None,
    checkpoint: str | Path | None = None,
) -> list[StackedMember]:
    """Train the members of one stack for the configs' `trainer.max_epochs` (and `max_steps`).

    `cfgs`: composed run configs that differ only in stackable values (`grouping.STACKABLE`).
    Returns one StackedMember per config, in order, with its last weights, its best by
    `val/loss` (as the run's ModelCheckpoint keeps them) and its per-epoch figures.

    `stop_requested()` is asked after each step (Ctrl-C): when true, training ends there, without
    validation, and each member still training gets `interrupted_step`.
    `on_epoch(members, epoch, datamodule)` runs after each epoch (its validation included) and
    after each validation within an epoch (`val_check_interval`), with each member's model
    holding the weights of that point.
    `checkpoint`: the stack checkpoint (`aelab.stacked.checkpoint`): continued from when it holds
    this stack's state, written at each epoch end (after `on_epoch`) and when stopped; a
    continued stack ends as if never stopped, and its members say `resumed`.

    Raises NotStackable naming why the configs cannot share a stack.
    """
    # one value for the stack (jobs that differ in it do not share one), set before the members
    # are built and torch's threads start, as aelab-train sets it
    set_flush_denormal(cfgs[0].get("flush_denormal", True))
    device = torch.device(device)
    models = build_members(cfgs)
    first = cfgs[0]
    # torch's flags as the run alone's Trainer sets them (`trainer.deterministic`, `benchmark`)
    _set_torch_flags(
        deterministic=first.trainer.get("deterministic"), benchmark=first.trainer.get("benchmark")
    )
    m_count = len(cfgs)
    members = [StackedMember(cfg=c, model=m) for c, m in zip(cfgs, models, strict=True)]
    for model in models:
        model.to(device)
    try:
        nets = StackedNets(models, device)
    except ValueError as err:
        raise NotStackable(str(err)) from None
    params = nets.leaves

    opt_cfg = first.optimizer
    decoupled = opt_cfg._target_.endswith("AdamW")
    optimizer = StackedAdam(
        [nets.member(k) for k in range(m_count)],
        [float(_member_value(c, "optimizer.lr", 1e-3)) for c in cfgs],
        betas=tuple(opt_cfg.get("betas") or (0.9, 0.999)),
        eps=float(opt_cfg.get("eps") or 1e-8),
        weight_decay=[
            float(_member_value(c, "optimizer.weight_decay", 0.01 if decoupled else 0.0))
            for c in cfgs
        ],
        decoupled=decoupled,
        fused=bool(opt_cfg.get("fused", True)) or None,
        stacked=nets.leaves,
    )
    clip_values = [c.trainer.get("gradient_clip_val") for c in cfgs]
    clipping = any(v for v in clip_values)
    clip = torch.tensor([float(v) if v else math.inf for v in clip_values], device=device)
    clip_algorithm = first.trainer.get("gradient_clip_algorithm") or "norm"

    datamodule = build(first.data, "data")
    datamodule.setup("fit")
    if not hasattr(datamodule, "training_batch"):
        raise NotStackable(
            f"data._target_={first.data.get('_target_')}: the datamodule serves no "
            "training_batch(indices), which a stack draws its members' batches from"
        )
    for model in models:  # as `build_trainer`'s DataRangeCheck does for a run of its own
        check_data_range(model, datamodule)
        model.use_data(datamodule, "fit")  # as Lightning's `setup` hands it the datamodule
    schedules = [m.kl_schedule for m in models]
    # members whose KL schedules share a code path: one vectorised loss each (most stacks: one)
    paths: dict[Any, list[int]] = {}
    for k, schedule in enumerate(schedules):
        paths.setdefault(schedule.form, []).append(k)
    path_rows = [
        (
            StackedLoss(models[ks[0]]),
            None if len(ks) == m_count else torch.tensor(ks, device=device),
        )
        for ks in paths.values()
    ]
    order = [k for ks in paths.values() for k in ks]
    restore = None if order == list(range(m_count)) else torch.tensor(order).argsort().to(device)
    n_train = datamodule.split_size("train")
    batch_size = datamodule.batch_size
    total = math.ceil(n_train / batch_size)
    n_batches = _num_batches(_limit(first, "limit_train_batches"), total)
    # the datamodule's seed, as the member's ResumableLoader takes it (`data.seed`: `${seed}`)
    samplers = [EpochSampler(n_train, int(_member_value(c, "data.seed", c.seed))) for c in cfgs]
    max_epochs = first.trainer.get("max_epochs")
    max_steps = int(first.trainer.get("max_steps", -1) or -1)
    if max_epochs in (None, -1):
        max_epochs = 1000 if max_steps < 0 else math.ceil(max_steps / max(n_batches, 1))
    # as Lightning: every `check_val_every_n_epoch` epochs (null: counted over the epochs'
    # batches together), at every `val_check_batch`-th batch
    every = first.trainer.get("check_val_every_n_epoch", 1)
    val_every = None if every is None else int(every)
    interval = first.trainer.get("val_check_interval")
    val_batch = val_check_batch(interval, n_batches, across_epochs=val_every is None)

    def val_check(epoch: int, index: int) -> bool:
        """Whether the run alone validates after batch `index` of `epoch` (Lightning's
        `_should_check_val_fx`, batch-based)."""
        if val_every is not None and (epoch + 1) % val_every:
            return False
        counted = index if val_every is not None else epoch * n_batches + index
        return (counted + 1) % val_batch == 0

    run_steps = max_steps if max_steps >= 0 else int(max_epochs) * n_batches
    for model, schedule in zip(models, schedules, strict=True):
        # as the member's own on_train_start would
        model.steps_per_epoch = n_batches
        length = run_steps if schedule.unit == "steps" else run_steps / max(n_batches, 1)
        schedule.bind(float(length))
    lr_schedules = MemberSchedulers(cfgs, run_steps)
    optimizer.set_lr(lr_schedules.lr)  # a warm-up (LinearLR) starts below the configured lr
    alive = torch.ones(m_count, dtype=torch.bool, device=device)
    step, first_epoch, first_index, finished = 0, 0, 0, False
    sums: dict[str, Tensor] = {}
    seen = 0
    key = group_key(cfgs)
    saved = load_stack(checkpoint, key) if checkpoint is not None else None
    if saved is not None:
        position = saved["position"]
        step, first_epoch, first_index = position["step"], position["epoch"], position["index"]
        finished = position["finished"]
        with torch.no_grad():
            for leaf, value in zip(params, saved["leaves"], strict=True):
                leaf.copy_(value)
        optimizer.load(saved["adam"])
        lr_schedules.load(saved["lr_schedulers"])
        optimizer.set_lr(lr_schedules.lr)
        alive = saved["alive"].to(device)
        sums, seen = {n: v.to(device) for n, v in saved["sums"].items()}, saved["seen"]
        for k, (member, state) in enumerate(zip(members, saved["members"], strict=True)):
            member.load(state)
            nets.copy_to(k, member.model)
        log.info(
            "continuing the stack from %s at step %d (epoch %d, batch %d)%s",
            checkpoint,
            step,
            first_epoch,
            first_index,
            ": trained, nothing left to train" if finished else "",
        )

    epoch_lr, epoch_start = lr_schedules.lr, step

    def save(epoch: int, index: int, done: bool) -> None:
        if checkpoint is None:
            return
        state = {
            "key": key,
            "position": {"epoch": epoch, "index": index, "step": step, "finished": done},
            "leaves": params,
            "adam": optimizer.state(),
            "lr_schedulers": lr_schedules.state(),
            "epoch_start": {"lr": epoch_lr, "step": epoch_start},
            "alive": alive,
            "sums": sums,
            "seen": seen,
            "members": [m.state() for m in members],
        }
        save_stack(checkpoint, state)

    def validate_members(epoch: int, figures: list[dict[str, float]]) -> None:
        """Each live member's `val/*` figures into `figures`, and its best weights kept."""
        for k, member in enumerate(members):
            if member.failed is not None:
                continue
            limit = _limit(first, "limit_val_batches")
            val = evaluate_member(member.model, datamodule, "val", limit)
            figures[k].update({f"val/{n}": v for n, v in val.items()})
            loss_val = val.get("loss", math.inf)
            if loss_val < member.best_val:  # ModelCheckpoint(mode=min) keeps the first best
                member.best_val, member.best_epoch = loss_val, epoch
                member.best_state = _cpu_state(member.model)

    for epoch in range(first_epoch, 0 if finished else int(max_epochs)):
        orders = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            sampler.start = 0
            orders.append(list(iter(sampler)))
        start_index = first_index if epoch == first_epoch else 0
        if start_index == 0:  # a stack continued mid-epoch goes on with the epoch's sums
            sums, seen = {}, 0
        interrupted = False
        # what the member's LearningRateMonitor(logging_interval=epoch) logs at the epoch's start
        if start_index == 0 or saved is None:
            epoch_lr, epoch_start = lr_schedules.lr, step
        else:  # continued mid-epoch: the rates the epoch started with
            epoch_lr, epoch_start = saved["epoch_start"]["lr"], saved["epoch_start"]["step"]
        whole_epoch = False  # its last batch trained (Lightning's `_num_ready_batches_reached`)
        started = time.perf_counter()
        for index in range(start_index, n_batches):
            if 0 <= max_steps <= step:
                break
            xs, x_ins, draws, values = [], [], [], []
            for k, (member, order) in enumerate(zip(members, orders, strict=True)):
                seed_global_rng(derive_seed(samplers[k].seed, epoch, index))
                rows = order[index * batch_size : (index + 1) * batch_size]
                x, _ = datamodule.training_batch(rows)
                x = x.to(device)
                xs.append(x)
                x_in = member.model.noise(x)
                x_ins.append(x_in)
                # drawn after the noise, as the member's own loss draws them in its step
                draws.append(member.model.draws(x_in))
                member.model.schedule_step = step  # as its training_step sets it
                values.append(member.model.schedule_values())
            parts = _member_parts(
                nets, path_rows, restore, torch.stack(xs), torch.stack(x_ins), draws, values
            )
            loss = parts["loss"]
            finite = torch.isfinite(loss.detach())
            newly_bad = alive & ~finite
            if bool(newly_bad.any()):
                for k in newly_bad.nonzero().flatten().tolist():
                    shown = ", ".join(f"{n}={float(v[k].detach()):.6g}" for n, v in parts.items())
                    # the single run's NonFiniteLossGuard message, from the step's own parts
                    members[k].failed = (
                        f"training stopped: non-finite loss at step {step} (epoch {epoch}, "
                        f"batch {index}): {shown}"
                    )
                    members[k].failed_step = step
                alive = alive & finite
                if not bool(alive.any()):
                    break
            grads = list(torch.autograd.grad(torch.where(alive, loss, 0.0).sum(), params))
            if clipping:
                grads = clip_stacked(grads, clip, clip_algorithm)
            optimizer.step(grads, None if bool(alive.all()) else alive.tolist())
            step += 1
            whole_epoch = index + 1 == n_batches
            if lr_schedules.active:
                lr_schedules.after_batch(index, epoch, last_batch=whole_epoch)
                optimizer.set_lr(lr_schedules.lr)
            weight = xs[0].shape[0]
            seen += weight
            for n, v in parts.items():
                v = v.detach() * weight
                sums[n] = sums[n] + v if n in sums else v
            if stop_requested is not None and stop_requested():
                interrupted = True
                break
            if (
                validate
                and index + 1 < n_batches  # the epoch's end validates below
                and not 0 <= max_steps <= step  # as does the last step
                and val_check(epoch, index)
            ):  # a validation within the epoch (val_check_interval): its own history entry
                for k, member in enumerate(members):
                    nets.copy_to(k, member.model)
                within = [{} for _ in members]
                validate_members(epoch, within)
                for k, member in enumerate(members):
                    if within[k]:
                        member.history.append({"epoch": epoch, "step": step, "figures": within[k]})
                if on_epoch is not None:  # the image grids of this validation
                    on_epoch(members, epoch, datamodule)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - started
        for member in members:
            if member.failed is None:
                member.global_step = step
                # the step its last update was made at, as a solo run's training_step sets it
                member.model.schedule_step = max(step - 1, 0)
        for k, member in enumerate(members):
            # a frozen member keeps its last finite weights: the stack no longer updates them
            nets.copy_to(k, member.model)
        if interrupted:  # as GracefulInterrupt: the weights after the step, no validation
            for member in members:
                if member.failed is None:
                    member.interrupted_step = step
            save(epoch, index + 1, done=False)
            break
        figures = [{} for _ in members]
        if seen:
            for n, v in sums.items():
                for k in range(m_count):
                    figures[k][f"train/{n}"] = float(v[k]) / seen
        stop = not bool(alive.any()) or (0 <= max_steps <= step)
        # ValidateAtMaxSteps: a step-limited run validates where it stops
        at_max_steps = 0 <= max_steps <= step
        if validate and (val_check(epoch, n_batches - 1) or at_max_steps):
            validate_members(epoch, figures)
        if lr_schedules.active and whole_epoch and validate:
            # a plateau reads the last validation's figures, as Lightning's callback_metrics
            for k, member in enumerate(members):
                if figures[k].keys().isdisjoint(member.last_validation):
                    figures[k] = {**member.last_validation, **figures[k]}
            lr_schedules.after_validation(epoch, figures, alive.tolist())
            optimizer.set_lr(lr_schedules.lr)
        for k, member in enumerate(members):
            if member.failed is None or figures[k]:
                member.history.append(
                    {
                        "epoch": epoch,
                        "step": step,
                        "figures": figures[k],
                        "train_seconds": train_seconds,  # the whole stack's training loop
                        "lr": epoch_lr[k],
                        "start_step": epoch_start,
                    }
                )
        if on_epoch is not None:
            on_epoch(members, epoch, datamodule)
        save(epoch + 1, 0, done=stop or epoch + 1 == int(max_epochs))
        if stop:
            break
    for member in members:
        member.last_state = _cpu_state(member.model)
    return members


def _stacked(dicts: Sequence[dict[str, Any]], device: torch.device) -> dict[str, Tensor]:
    """Per-member dicts of the same keys (tensors or numbers) as one dict of (M, ...) tensors."""
    out = {}
    for name in dicts[0] if dicts else ():
        column = [d[name] for d in dicts]
        if isinstance(column[0], Tensor):
            out[name] = torch.stack(column)
        else:
            out[name] = torch.tensor(column, dtype=torch.get_default_dtype(), device=device)
    return out


def _member_parts(
    nets: StackedNets,
    path_rows: list[tuple[StackedLoss, Tensor | None]],
    restore: Tensor | None,
    x: Tensor,
    x_in: Tensor,
    draws: list[dict[str, Tensor]],
    values: list[dict[str, float]],
) -> dict[str, Tensor]:
    """Each member's loss parts, (M,) each, by its model's own `loss` (`StackedLoss`): one
    vectorised call per group of members whose KL schedules share a code path, the group's
    first model supplying the code. `path_rows`: (its `StackedLoss`, the group's member
    indices, None for all); `restore`: the permutation back to member order after the groups
    (None: in it)."""
    tensors = nets.tensors()
    results = []
    for loss, rows in path_rows:
        if rows is None:
            results.append(
                loss(tensors, x_in, x, _stacked(draws, x.device), _stacked(values, x.device))
            )
            continue
        ks = rows.tolist()
        results.append(
            loss(
                {name: value[rows] for name, value in tensors.items()},
                x_in[rows],
                x[rows],
                _stacked([draws[k] for k in ks], x.device),
                _stacked([values[k] for k in ks], x.device),
            )
        )
    if len(results) == 1:
        return results[0]
    parts = {name: torch.cat([r[name] for r in results]) for name in results[0]}
    if restore is None:
        return parts
    return {name: value[restore] for name, value in parts.items()}


def _cpu_state(model: AutoencoderModule) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def evaluate_member(
    model: AutoencoderModule, datamodule: Any, stage: str, limit: Any
) -> dict[str, float]:
    """`val/*` (or `test/*`) figures of one member, by the ordinary model's own
    `evaluate_batch`."""
    loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
    n = _num_batches(limit, len(loader))
    was_training = model.training
    model.eval()
    try:
        for index, batch in enumerate(loader):
            if index >= n:
                break
            x, y = batch
            model.evaluate_batch((x.to(model.device), y), index, stage)
        return {k: float(v) for k, v in model.running_means(stage).compute_and_reset().items()}
    finally:
        model.train(was_training)
