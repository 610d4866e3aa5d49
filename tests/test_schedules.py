"""KL schedules (warm-up, cyclical, capacity, free bits) and learning-rate schedulers: their
values at chosen steps against the papers' formulas and torch's own schedulers, what reaches
TensorBoard, the refusals, and exact resume in the middle of a schedule."""

from __future__ import annotations

import math
import signal

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from aelab.checks import ConfigError
from aelab.schedules import Capacity, Cyclical, KLSchedule, Warmup
from aelab.train import build_model


# --- the formulas -----------------------------------------------------------------------------
def test_warmup_is_linear_from_start_to_beta():
    s = Warmup(steps=100, start=0.1)
    assert [s.beta(4.0, t) for t in (0, 50, 100, 250)] == pytest.approx([0.1, 2.05, 4.0, 4.0])


def test_cyclical_rises_over_ratio_of_each_period_then_holds():
    s = Cyclical(cycles=2, ratio=0.5, total=100)  # periods of 50 steps, rising over 25
    expected = {0: 0.0, 10: 0.4, 25: 1.0, 49: 1.0, 50: 0.0, 60: 0.4, 99: 1.0, 100: 1.0, 400: 1.0}
    assert {t: s.beta(1.0, t) for t in expected} == pytest.approx(expected)
    run_long = Cyclical(cycles=4, ratio=1.0)  # total null: the run's length, bound at fit start
    run_long.bind(400.0)
    assert run_long.beta(2.0, 150) == pytest.approx(2.0 * 50 / 100)


def test_capacity_penalty_is_gamma_times_distance_to_c():
    s = Capacity(c_max=10.0, steps=100, gamma=50.0)
    assert s.capacity(30) == pytest.approx(3.0) and s.capacity(500) == pytest.approx(10.0)
    kl = torch.tensor(7.5)
    assert float(s.penalty(kl, None, beta=4.0, t=30)) == pytest.approx(50.0 * 4.5)


def test_free_bits_floor_every_units_batch_mean_kl():
    kl_units = torch.tensor([[0.1, 2.0, 0.0, 1.0], [0.3, 4.0, 0.2, 1.0]], requires_grad=True)
    s = KLSchedule(free_bits=0.5)
    # batch means 0.2, 3.0, 0.1, 1.0 -> max(0.5, .) = 0.5, 3.0, 0.5, 1.0
    penalty = s.penalty(kl_units.sum(1).mean(), kl_units, beta=2.0, t=0)
    assert float(penalty) == pytest.approx(2.0 * (0.5 + 3.0 + 0.5 + 1.0))
    penalty.backward()
    assert kl_units.grad[:, 0].abs().sum() == 0 and kl_units.grad[:, 2].abs().sum() == 0
    assert torch.allclose(kl_units.grad[:, 1], torch.full((2,), 1.0))  # 2.0 * 1/2 per image
    grouped = KLSchedule(free_bits=1.5, group_size=2)  # groups: 0.2 + 3.0, 0.1 + 1.0
    assert float(grouped.penalty(None, kl_units, 1.0, 0)) == pytest.approx(3.2 + 1.5)


def test_constant_schedule_is_todays_loss_exactly(make_cfg):
    model = build_model(make_cfg("model=vae"))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 28, 28, generator=g)
    parts, _ = model.loss(x, x, torch.Generator().manual_seed(1))
    assert torch.equal(parts["loss"], parts["recon"] + model.beta * parts["kl"])


def test_free_bits_reach_the_vae_loss(make_cfg):
    model = build_model(make_cfg("model=vae", "kl_schedule=free_bits", "kl_schedule.free_bits=2.0"))
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    parts, _ = model.loss(x, x, torch.Generator().manual_seed(1))
    mu, logvar = model.posterior(x)
    per_unit = (0.5 * (mu.square() + logvar.exp() - 1 - logvar)).mean(0)  # closed form
    expected = parts["recon"] + per_unit.clamp(min=2.0).sum()
    assert float(parts["loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(parts["loss"]) >= float(parts["recon"]) + 2.0 * model.latent_dim - 1e-3


# --- learning rates against torch's own -------------------------------------------------------
def fit(model: pl.LightningModule, batches, tmp_path, **trainer_kwargs) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=TensorBoardLogger(tmp_path, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    trainer.fit(model, train_dataloaders=batches, val_dataloaders=batches)
    return trainer


def lr_now(trainer: pl.Trainer) -> float:
    return trainer.optimizers[0].param_groups[0]["lr"]


def test_step_lr_equals_torchs_step_lr(make_cfg, tiny_batches, tmp_path):
    cfg = make_cfg(
        "lr_scheduler=step",
        "lr_scheduler.scheduler.step_size=2",
        "lr_scheduler.scheduler.gamma=0.5",
    )
    trainer = fit(build_model(cfg), tiny_batches, tmp_path, max_epochs=5)
    reference = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(reference, step_size=2, gamma=0.5)
    for _ in range(5):
        reference.step()
        scheduler.step()
    assert lr_now(trainer) == reference.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)


def test_cosine_with_warmup_follows_its_formula(make_cfg, tiny_batches, tmp_path):
    cfg = make_cfg("lr_scheduler=cosine", "lr_scheduler.scheduler.warmup_steps=4")
    lrs = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            lrs.append(lr_now(trainer))

    trainer = fit(build_model(cfg), tiny_batches, tmp_path, max_epochs=2, callbacks=[Record()])
    total = 2 * len(tiny_batches)  # null total_steps: the run's optimizer steps
    lr, f = cfg.optimizer.lr, 0.001

    def formula(t: int) -> float:
        if t < 4:
            return lr * (f + (1 - f) * t / 4)
        return 0.5 * lr * (1 + math.cos(math.pi * (t - 4) / (total - 4)))

    assert lrs == pytest.approx([formula(t) for t in range(total)], rel=1e-6, abs=1e-12)
    assert lr_now(trainer) == pytest.approx(0.0, abs=1e-12)


def test_beta_logged_to_tensorboard_equals_the_formula(make_cfg, tiny_batches, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(
        "model=vae", "kl_schedule=warmup", "kl_schedule.steps=10", "kl_schedule.start=0.2"
    )
    fit(build_model(cfg), tiny_batches, tmp_path, max_epochs=2, log_every_n_steps=1)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/beta")]
    assert len(logged) == 2 * len(tiny_batches)
    # Lightning records a training step's value at the step count before its update
    assert [v for _, v in logged] == pytest.approx(
        [0.2 + 0.8 * min(1.0, s / 10) for s, _ in logged], rel=1e-6
    )


# --- refusals, before training ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["kl_schedule=warmup", "kl_schedule.steps=-5"], "kl_schedule.steps=-5 .*integer >= 1"),
        (["kl_schedule=cyclical", "kl_schedule.ratio=0"], r"kl_schedule.ratio=0 .*\(0.0, 1.0\]"),
        (
            ["kl_schedule=cyclical", "kl_schedule.ratio=1.5"],
            r"kl_schedule.ratio=1.5 .*\(0.0, 1.0\]",
        ),
        (["kl_schedule=capacity", "kl_schedule.c_max=-1"], r"kl_schedule.c_max=-1 .*\[0.0, inf\)"),
        (["kl_schedule=free_bits", "kl_schedule.free_bits=-0.1"], "kl_schedule.free_bits=-0.1"),
        (["kl_schedule=warmup", "kl_schedule.unit=days"], "kl_schedule.unit='days'"),
        (["model=iwae", "kl_schedule=warmup"], "kl_schedule='warmup' .*constant for IWAE"),
        (["model=ae", "kl_schedule=cyclical"], "kl_schedule='cyclical' .*constant for Autoencoder"),
        (["model=tcvae", "kl_schedule=free_bits"], "kl_schedule.free_bits=0.25 .*0 for BetaTCVAE"),
        (["lr_scheduler=cosine", "lr_scheduler.scheduler.warmup_steps=-1"], "warmup_steps=-1"),
        (["lr_scheduler=step", "lr_scheduler.interval=hour"], "lr_scheduler.interval='hour'"),
        (["lr_scheduler=plateau", "lr_scheduler.monitor=null"], "lr_scheduler.monitor=None"),
    ],
)
def test_bad_schedule_values_are_one_line(make_cfg, overrides, message):
    base = [] if any(o.startswith("model=") for o in overrides) else ["model=vae"]
    with pytest.raises(ConfigError, match=message):
        build_model(make_cfg(*base, *overrides))


T = "lr_scheduler.scheduler._target_=torch.optim.lr_scheduler."
S = "lr_scheduler.scheduler"


@pytest.mark.parametrize(
    "overrides, line",
    [
        (
            ["lr_scheduler=step", f"{S}.step_size=0"],
            f"{S}.step_size=0 is invalid: allowed an integer >= 1",
        ),
        (
            ["lr_scheduler=step", f"{S}.gamma=0"],
            f"{S}.gamma=0 is invalid: allowed a number in (0.0, inf)",
        ),
        (
            ["lr_scheduler=step", f"{S}.gamma=-0.5"],
            f"{S}.gamma=-0.5 is invalid: allowed a number in (0.0, inf)",
        ),
        (
            ["lr_scheduler=multistep", f"{S}.milestones=[60,30]"],
            f"{S}.milestones=[60, 30] is invalid: allowed an increasing list of integers >= 1",
        ),
        (
            ["lr_scheduler=multistep", f"{S}.milestones=[0,10]"],
            f"{S}.milestones=[0, 10] is invalid: allowed an increasing list of integers >= 1",
        ),
        (
            ["lr_scheduler=multistep", f"{S}.gamma=0"],
            f"{S}.gamma=0 is invalid: allowed a number in (0.0, inf)",
        ),
        (
            ["lr_scheduler=plateau", f"{S}.factor=1.5"],
            f"{S}.factor=1.5 is invalid: allowed a number in (0.0, 1.0]",
        ),
        (
            ["lr_scheduler=plateau", f"{S}.factor=1.0"],
            f"{S}.factor=1.0 is invalid: allowed a number in (0.0, 1.0)",
        ),
        (
            ["lr_scheduler=plateau", f"{S}.patience=-1"],
            f"{S}.patience=-1 is invalid: allowed an integer >= 0",
        ),
        (
            [
                "lr_scheduler=step",
                f"{T}CosineAnnealingLR",
                f"~{S}.step_size",
                f"~{S}.gamma",
                f"+{S}.T_max=0",
            ],
            f"{S}.T_max=0 is invalid: allowed an integer >= 1",
        ),
        (
            ["lr_scheduler=step", f"{T}ExponentialLR", f"~{S}.step_size", f"{S}.gamma=0"],
            f"{S}.gamma=0 is invalid: allowed a number in (0.0, inf)",
        ),
        (
            [
                "lr_scheduler=step",
                f"{T}CosineAnnealingWarmRestarts",
                f"~{S}.step_size",
                f"~{S}.gamma",
                f"+{S}.T_0=0",
            ],
            f"{S}.T_0=0 is invalid: allowed an integer >= 1",
        ),
    ],
)
def test_a_torch_schedulers_parameter_out_of_range_is_one_line_before_training(
    make_cfg, overrides, line
):
    """What torch builds without a word and then fails on after the first epoch (StepLR's
    step_size=0: ZeroDivisionError), or turns into an lr of 0 (gamma=0), for every scheduler."""
    with pytest.raises(ConfigError) as err:
        build_model(make_cfg("model=vae", *overrides))
    assert str(err.value) == line


def test_a_plateau_schedule_needs_validation(make_cfg, tiny_batches, tmp_path):
    model = build_model(make_cfg("lr_scheduler=plateau"))
    with pytest.raises(ConfigError, match="lr_scheduler.frequency=1 .*check_val_every_n_epoch=2"):
        fit(model, tiny_batches, tmp_path, max_epochs=2, check_val_every_n_epoch=2)


def test_a_plateau_monitor_that_is_never_logged_is_refused_at_the_first_validation(
    make_cfg, tiny_batches, tmp_path
):
    model = build_model(make_cfg("lr_scheduler=plateau", "lr_scheduler.monitor=val/typo"))
    with pytest.raises(ConfigError, match="lr_scheduler.monitor='val/typo' .*val/loss"):
        fit(model, tiny_batches, tmp_path, max_epochs=2, limit_train_batches=1)


def test_plateau_lowers_the_lr_as_torchs_does(make_cfg, tiny_batches, tmp_path):
    cfg = make_cfg("lr_scheduler=plateau", "lr_scheduler.scheduler.patience=0", "optimizer.lr=3")
    losses = []

    class Record(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation
            losses.append(float(trainer.callback_metrics["val/loss"]))

    # lr 3 overshoots: val/loss stops improving, and the plateau cuts the lr
    trainer = fit(build_model(cfg), tiny_batches, tmp_path, max_epochs=5, callbacks=[Record()])
    reference = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3.0)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(reference, factor=0.5, patience=0)
    for loss in losses:
        plateau.step(loss)
    assert len(losses) == 5
    assert lr_now(trainer) == reference.param_groups[0]["lr"] < 3.0


# --- exact resume in the middle of a schedule -------------------------------------------------
@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(
    "schedule",
    [
        ["model=vae", "kl_schedule=warmup", "kl_schedule.steps=150"],
        ["lr_scheduler=cosine", "lr_scheduler.scheduler.warmup_steps=20"],
    ],
    ids=["warmup", "cosine"],
)
def test_a_killed_run_resumes_mid_schedule_to_the_same_result(tmp_path, mnist_dir, schedule):
    from test_faults import (
        SHORT,
        command,
        metrics,
        scalars,
        start_and_wait_for_a_checkpoint,
        the_run,
        train,
    )

    overrides = [o for o in SHORT if o not in ("model=dae",)] + schedule
    whole = tmp_path / "whole"
    done = train(whole, mnist_dir, *overrides, "trainer.log_every_n_steps=5")
    assert done.returncode == 0, done.stderr[-3000:]
    stopped = tmp_path / "stopped"
    proc = start_and_wait_for_a_checkpoint(
        command(stopped, mnist_dir, *overrides, "trainer.log_every_n_steps=5"), stopped
    )
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = train(stopped, mnist_dir, *overrides, "trainer.log_every_n_steps=5", "resume=true")
    assert done.returncode == 0, done.stderr[-3000:]
    resumed, uninterrupted = the_run(stopped), the_run(whole)
    assert metrics(resumed) == metrics(uninterrupted)
    curves = scalars(resumed)
    assert curves == scalars(uninterrupted)
    assert "train/beta" in curves if "kl_schedule=warmup" in schedule else "lr-Adam" in curves


def test_schedules_stack_and_one_that_cycles_momentum_says_why(make_cfg):
    from aelab.stacked.grouping import group_configs, why_not_stackable

    assert why_not_stackable(make_cfg("model=vae", "kl_schedule=cyclical")) is None
    # members with their own scheduler and step size share a stack
    cfgs = [
        make_cfg("lr_scheduler=step", "lr_scheduler.scheduler.step_size=2"),
        make_cfg("lr_scheduler=step", "lr_scheduler.scheduler.step_size=5"),
        make_cfg("lr_scheduler=cosine"),
        make_cfg("seed=4"),
    ]
    assert group_configs(cfgs, max_models=8) == ([[0, 1, 2, 3]], {})
    # OneCycleLR cycles Adam's betas too, which a stack keeps one value of
    one_cycle = make_cfg(
        "lr_scheduler=step",
        "lr_scheduler.scheduler._target_=torch.optim.lr_scheduler.OneCycleLR",
        "~lr_scheduler.scheduler.step_size",
        "~lr_scheduler.scheduler.gamma",
        "+lr_scheduler.scheduler.max_lr=0.01",
        "+lr_scheduler.scheduler.total_steps=100",
    )
    assert why_not_stackable(one_cycle) == (
        "lr_scheduler.scheduler._target_=torch.optim.lr_scheduler.OneCycleLR: a stack steps the "
        "schedulers that set only the learning rate (StepLR, MultiStepLR, ExponentialLR, "
        "CosineAnnealingLR, LinearLR, ConstantLR, PolynomialLR, ReduceLROnPlateau, "
        "cosine_with_warmup)"
    )


def test_the_report_has_a_posterior_collapse_section_per_schedule():
    from pathlib import Path

    from aelab.report.collapse import posterior_collapse_section
    from aelab.report.load import Job, jobs_frame

    def job(kind, seed, active, iw_nll, **fields):
        hp = {"model": "VAE", "kl_schedule": kind, "seed": seed, **fields}
        metrics = {"test/active_units": active, "test/iw_nll": iw_nll}
        return Job(f"{kind}{seed}{fields}", Path("."), "completed", hparams=hp, metrics=metrics)

    jobs = [
        job("constant", 0, 6.0, 110.0),
        job("constant", 1, 8.0, 112.0),
        job("warmup", 0, 10.0, 99.0, **{"kl_schedule.steps": 100}),
        job("warmup", 0, 12.0, 98.0, **{"kl_schedule.steps": 500}),
    ]
    lines = posterior_collapse_section(jobs_frame(jobs))
    assert lines[0] == "## Posterior collapse"
    assert "| kl_schedule | n | active_units | iw_nll |" in lines
    # mean ± sample std [min, max] over the two seeds: 7 ± 1.4 (sqrt(2)), 111 ± 1.4
    assert "| constant | 2 | 7 ± 1.4 [6, 8] | 111 ± 1.4 [110, 112] |" in lines
    assert "| warmup (steps=100) | 1 | 10 | 99 |" in lines
    assert "| warmup (steps=500) | 1 | 12 | 98 |" in lines
    assert posterior_collapse_section(jobs_frame(jobs[:2])) == []  # one schedule: no section


@pytest.mark.mnist
def test_the_run_length_counted_without_data_equals_lightnings(make_cfg, mnist_dir):
    from aelab.checks import build
    from aelab.schedules.lr import run_steps
    from aelab.train import build_trainer

    for overrides in (
        ["trainer.max_epochs=3", "++trainer.limit_train_batches=7"],
        ["trainer.max_epochs=2", "++trainer.limit_train_batches=0.01", "data.batch_size=100"],
    ):
        cfg = make_cfg(*overrides, "logger=none", "~callbacks.evaluation")
        trainer = build_trainer(cfg, accelerator="cpu")
        datamodule = build(cfg.data, "data")
        datamodule.setup("fit")
        trainer.fit_loop.trainer.strategy.connect(build_model(cfg))
        trainer._data_connector.attach_data(trainer.lightning_module, datamodule=datamodule)
        ours = run_steps(trainer)
        assert ours == trainer.estimated_stepping_batches
