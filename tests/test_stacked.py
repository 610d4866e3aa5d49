"""Stacked sweeps: each member of a stack is the computation of its job run alone."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
from pathlib import Path

import pytest
import torch

from aelab.stacked import NotStackable, group_configs, train_stacked, why_not_stackable
from aelab.stacked.core import StackedAdam, clip_stacked

TINY = [
    "trainer=cpu",
    "trainer.deterministic=true",
    "trainer.max_epochs=2",
    "++trainer.limit_train_batches=3",
    "++trainer.limit_val_batches=1",
    "data.eval_batch_size=100",
    "logger=none",
    "test=false",
    "callbacks.images=null",
    "threads=1",
]


# --- the stacked Adam step and clipping against torch's own, on synthetic tensors -----------------
@pytest.mark.parametrize("decoupled", [False, True])
def test_stacked_adam_matches_torch_adam_per_member(decoupled):
    g = torch.Generator().manual_seed(0)
    lrs, wds = [1e-3, 3e-2, 1e-3], [0.0, 1e-2, 0.5]  # members 0 and 2 share a call
    start = [torch.randn(3, 5, 4, generator=g), torch.randn(3, 7, generator=g)]
    grads = [[torch.randn(3, 5, 4, generator=g), torch.randn(3, 7, generator=g)] for _ in range(4)]
    stacked = [p.clone() for p in start]
    opt = StackedAdam(
        [[p[k] for p in stacked] for k in range(3)], lrs, weight_decay=wds, decoupled=decoupled
    )
    for grad in grads:
        # a stacked matmul's weight gradient is transposed in memory: strides must not matter
        opt.step(
            [[x[k].mT.contiguous().mT if x.dim() == 3 else x[k] for x in grad] for k in range(3)]
        )
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    for k in range(3):
        ps = [torch.nn.Parameter(p[k].clone()) for p in start]
        ref = kind(ps, lr=lrs[k], weight_decay=wds[k], foreach=False)
        for grad in grads:
            for p, x in zip(ps, grad, strict=True):
                p.grad = x[k].clone()
            ref.step()
        for p, mine in zip(ps, stacked, strict=True):
            torch.testing.assert_close(mine[k], p.detach(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("lrs", [[1e-3, 1e-3, 1e-3], [1e-3, 3e-2, 1e-3]])
def test_stacked_adam_steps_all_members_in_one_call_as_one_by_one(lrs):
    """`step` given the stacked gradients (one call on the stacked tensors while the members
    share lr and step count) is member k's own Adam; a member frozen once makes the others step
    member by member."""
    g = torch.Generator().manual_seed(2)
    start = [torch.randn(3, 5, 4, generator=g), torch.randn(3, 7, generator=g)]
    grads = [[torch.randn(3, 5, 4, generator=g), torch.randn(3, 7, generator=g)] for _ in range(4)]
    stacked = [p.clone() for p in start]
    opt = StackedAdam([[p[k] for p in stacked] for k in range(3)], lrs, stacked=stacked)
    for i, grad in enumerate(grads):
        if i == 2:  # member 1 frozen for one step
            opt.step([[x[k] for x in grad] for k in range(3)], alive=[True, False, True])
        else:
            opt.step(grad)
    assert not opt.uniform
    for k in range(3):
        ps = [torch.nn.Parameter(p[k].clone()) for p in start]
        ref = torch.optim.Adam(ps, lr=lrs[k], foreach=False)
        for i, grad in enumerate(grads):
            if i == 2 and k == 1:
                continue
            for p, x in zip(ps, grad, strict=True):
                p.grad = x[k].clone()
            ref.step()
        for p, mine in zip(ps, stacked, strict=True):
            torch.testing.assert_close(mine[k], p.detach(), rtol=1e-5, atol=1e-7)
        assert [float(s) for s in opt.steps[k]] == [3.0 if k == 1 else 4.0] * 2


def test_a_frozen_member_keeps_its_weights_and_the_others_move():
    start = torch.ones(2, 3)
    stacked = start.clone()
    opt = StackedAdam([[stacked[0]], [stacked[1]]], [0.1, 0.1])
    opt.step([[torch.full((3,), math.nan)], [torch.ones(3)]], alive=[False, True])
    assert torch.equal(stacked[0], start[0])
    torch.testing.assert_close(stacked[1], start[1] - 0.1)  # Adam's first step: lr * sign(g)
    assert float(opt.steps[0][0]) == 0 and float(opt.steps[1][0]) == 1


def test_per_member_clipping_matches_clip_grad_norm():
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(3, 6, generator=g), torch.randn(3, 2, 2, generator=g)]
    clip = torch.tensor([0.5, math.inf, 100.0])
    clipped = clip_stacked([x.clone() for x in grads], clip, "norm")
    for k, limit in enumerate([0.5, None, 100.0]):
        ps = [torch.nn.Parameter(torch.zeros_like(x[k])) for x in grads]
        for p, x in zip(ps, grads, strict=True):
            p.grad = x[k].clone()
        if limit is not None:
            torch.nn.utils.clip_grad_norm_(ps, limit)
        for p, c in zip(ps, clipped, strict=True):
            torch.testing.assert_close(c[k], p.grad, rtol=1e-6, atol=1e-7)


# --- grouping -------------------------------------------------------------------------------------
def test_jobs_differing_in_stackable_values_share_a_stack(make_cfg):
    cfgs = [
        make_cfg("model=vae", "model.beta=1"),
        make_cfg("model=vae", "model.beta=4", "seed=3"),
        make_cfg("model=vae", "model.latent_dim=8"),  # another shape
        make_cfg("model=vae", "optimizer.lr=0.01"),
        make_cfg("model=vae", "optimizer=sgd"),  # no stacked step
    ]
    groups, alone = group_configs(cfgs, max_models=8)
    assert groups == [[0, 1, 3]]
    assert alone[2] == "no other job of the sweep has its shape"
    assert alone[4].startswith("optimizer._target_=torch.optim.SGD")
    assert group_configs(cfgs, max_models=2)[0] == [[0, 1]]
    with pytest.raises(ValueError, match="max_models"):
        group_configs(cfgs, max_models=0)


def test_a_model_that_cannot_be_stacked_names_why(make_cfg):
    assert why_not_stackable(make_cfg("model=vae")) is None
    assert "accumulate_grad_batches" in why_not_stackable(
        make_cfg("+trainer.accumulate_grad_batches=2")
    )
    # the zoo's models that cannot stack say why in one line
    assert why_not_stackable(make_cfg("model=factorvae")).startswith(
        "model._target_=aelab.models.FactorVAE: its discriminator is trained beside the VAE"
    )
    assert why_not_stackable(make_cfg("model=vqvae")).startswith(
        "model._target_=aelab.models.VQVAE: its codebook lies outside the encoder and decoder"
    )
    for preset in ("ae", "dae", "vae", "iwae", "tcvae", "dipvae", "sparse_ae", "cae"):
        assert why_not_stackable(make_cfg(f"model={preset}")) is None, preset
    with pytest.raises(NotStackable, match="differ in more than stackable values"):
        train_stacked([make_cfg("model=vae"), make_cfg("model=vae", "model.latent_dim=3")])
    # resume=true: a stack continues from its own checkpoint; a run folder or checkpoint: alone
    groups, alone = group_configs(
        [
            make_cfg("resume=true", "seed=1"),
            make_cfg("seed=2"),
            make_cfg("resume=/some/run"),
            make_cfg("ckpt_path=/x.ckpt"),
        ],
        max_models=8,
    )
    assert groups == [[0, 1]]
    assert alone[2].startswith("resume=<run dir>: ") and alone[3].startswith("ckpt_path: ")
    # a user's datamodule without training_batch(indices): its jobs run alone, saying why
    why = why_not_stackable(make_cfg("data._target_=aelab.data.source.DataSourceError"))
    assert why == (
        "data._target_=aelab.data.source.DataSourceError: a stack draws its members' batches "
        "through the datamodule's training_batch(indices), which this one lacks"
    )


def _own_model_page_module(folder: Path) -> str:
    """The model of docs/how-to/own-model.md ("Stacking your model") written to
    `folder/my_models.py`, as a user copies it; returns its module name."""
    page = (Path(__file__).parents[1] / "docs" / "how-to" / "own-model.md").read_text()
    blocks = re.findall(r"```python\n(# my_models\.py\n.*?)```", page, flags=re.S)
    assert len(blocks) == 1, "the how-to shows one my_models.py"
    (folder / "my_models.py").write_text(blocks[0])
    return "my_models"


@pytest.fixture
def own_model(tmp_path, monkeypatch):
    """The how-to's stacking model importable as `my_models.NoisyCodeAE`, with a model of the
    user's that does not say it stacks (`my_models.Quiet`) beside it."""
    import sys

    folder = tmp_path / "user"
    folder.mkdir()
    name = _own_model_page_module(folder)
    with (folder / "my_models.py").open("a") as f:
        f.write("\n\nclass Quiet(AutoencoderModule):  # says nothing of stacking\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(name, None)
    yield f"{name}.NoisyCodeAE"
    sys.modules.pop(name, None)


def test_a_model_says_whether_it_stacks(make_cfg, own_model):
    from aelab.models.base import AutoencoderModule

    # a user's model that opts in stacks; one that does not runs alone with the base's line
    assert why_not_stackable(make_cfg(f"model._target_={own_model}")) is None
    assert why_not_stackable(make_cfg("model._target_=my_models.Quiet")) == (
        f"model._target_=my_models.Quiet: {AutoencoderModule.why_not_stackable}"
    )
    assert "why_not_stackable = None" in AutoencoderModule.why_not_stackable
    # a target that cannot be imported: one line, the import's own error
    assert why_not_stackable(make_cfg("model._target_=nope.Model")) == (
        "model._target_='nope.Model' is invalid: allowed an importable class or function "
        "(ModuleNotFoundError: No module named 'nope')"
    )
    assert why_not_stackable(make_cfg("model._target_=aelab.nets.MLPNet")) == (
        "model._target_=aelab.nets.MLPNet: not a subclass of aelab.models.base.AutoencoderModule"
    )
    # every model of the zoo declares it on its own class
    import aelab.models

    for name in aelab.models.__all__:
        cls = getattr(aelab.models, name)
        if isinstance(cls, type) and issubclass(cls, AutoencoderModule):
            assert "why_not_stackable" in vars(cls), name


def test_every_trainer_key_is_honoured_by_a_stack_or_runs_its_job_alone():
    """Each keyword of Lightning's Trainer is in one of grouping's three lists, once."""
    import inspect

    import pytorch_lightning as pl

    from aelab.stacked import grouping

    keys = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    listed = [
        *grouping.TRAINER_HONOURED,
        *grouping.TRAINER_NO_EFFECT,
        *grouping.TRAINER_NOT_STACKED,
    ]
    assert sorted(listed) == sorted(keys)


@pytest.mark.parametrize(
    "override, line",
    [
        ("++trainer.fast_dev_run=true", "trainer.fast_dev_run=True: a stack trains for max_epochs"),
        ("++trainer.overfit_batches=2", "trainer.overfit_batches=2: a stack draws each member's"),
        ("trainer.profiler=simple", "trainer.profiler=simple: Lightning's profiler does not see"),
        ("++trainer.detect_anomaly=true", "trainer.detect_anomaly=True: the stacked step runs"),
        ("++trainer.barebones=true", "trainer.barebones=True: a stacked member is written as"),
        ("++trainer.plugins=[x]", "trainer.plugins=['x']: the stacked step takes no Lightning"),
        ("++trainer.reload_dataloaders_every_n_epochs=1", "trainer.reload_dataloaders_every_n_"),
        ("++trainer.strategy=ddp", "trainer.strategy=ddp: a stack trains in one process"),
        (
            "++trainer.val_check_interval=00:00:01:00",
            "trainer.val_check_interval=00:00:01:00: a stack validates at steps, not at times",
        ),
    ],
)
def test_a_trainer_key_a_stack_does_not_honour_runs_its_job_alone(make_cfg, override, line):
    why = why_not_stackable(make_cfg(override))
    assert why.startswith(line) and "\n" not in why
    # its defaults stack
    assert why_not_stackable(make_cfg()) is None


@pytest.mark.parametrize(
    "interval, batches, across, every",
    [
        (None, 20, False, 20),
        (1.0, 20, False, 20),
        (0.5, 20, False, 10),  # Lightning: int(20 * 0.5)
        (0.3, 20, False, 6),  # int(6.0): the epoch's last batch is no validation
        (0.01, 20, False, 1),  # at least every batch
        (7, 20, False, 7),
        (29, 20, True, 29),  # check_val_every_n_epoch=null: counted over the epochs
    ],
)
def test_a_stack_validates_every_val_check_batch_as_lightning(interval, batches, across, every):
    from aelab.stacked.core import val_check_batch

    assert val_check_batch(interval, batches, across) == every


@pytest.mark.parametrize(
    "interval, across, allowed",
    [
        (29, False, "an integer <= the epoch's 20 training batches, or a fraction"),
        (0, False, "a fraction in (0, 1] or an integer >= 1"),
        (1.5, False, "a fraction in (0, 1] or an integer >= 1"),
        (0.5, True, "an integer with trainer.check_val_every_n_epoch=null"),
    ],
)
def test_a_val_check_interval_lightning_refuses_is_one_line(interval, across, allowed):
    from aelab.checks import ConfigError
    from aelab.stacked.core import val_check_batch

    with pytest.raises(ConfigError) as err:
        val_check_batch(interval, 20, across)
    assert (
        str(err.value) == f"trainer.val_check_interval={interval!r} is invalid: allowed {allowed}"
    )


def test_the_stack_has_no_objective_of_its_own():
    """The stacked step computes each member's loss by its model's own `loss`: the engine
    imports none of the objectives' pieces, asks no model's class, calls no private method."""
    import inspect

    import aelab.stacked.core
    import aelab.stacked.nets

    for module in (aelab.stacked.core, aelab.stacked.nets):
        source = inspect.getsource(module)
        assert "aelab.losses" not in source and "isinstance(models" not in source
        assert not re.search(r"model\w*(\[\w+\])?\._[a-z]", source), module.__name__


# --- equivalence with the single runs, on a slice of real MNIST -----------------------------------
@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(
    "common, varying",
    [
        # the denoising AE (noise drawn per member), seeds varying: init and batch order differ
        (["model=dae"], [["seed=1"], ["seed=2"], ["seed=3", "optimizer.lr=0.003"]]),
        # a net other than an MLP runs under vmap(functional_call)
        (["model=ae", "net=conv"], [["seed=1"], ["seed=2"]]),
        # the VAE with dynamic binarization, beta varying (and one clipped member)
        (
            ["model=vae", "data.binarize=dynamic"],
            [
                ["model.beta=0.5"],
                ["model.beta=1"],
                ["model.beta=4", "+trainer.gradient_clip_val=1"],
            ],
        ),
        # each member with its own KL schedule (aelab.schedules): warm-up lengths, capacities,
        # free bits
        (
            ["model=vae", "data.binarize=dynamic"],
            [
                ["kl_schedule=warmup", "kl_schedule.steps=4"],
                ["kl_schedule=warmup", "kl_schedule.steps=12", "kl_schedule.free_bits=0.5"],
                [
                    "kl_schedule=capacity",
                    "kl_schedule.c_max=5",
                    "kl_schedule.steps=6",
                    "kl_schedule.gamma=10",
                ],
                [
                    "kl_schedule=capacity",
                    "kl_schedule.c_max=15",
                    "kl_schedule.steps=6",
                    "kl_schedule.gamma=10",
                ],
            ],
        ),
        # every zoo model whose tensors stack, through its own loss (vmap over the members):
        # IWAE's k x B x d draws, the beta-TCVAE's TC weight under each member's schedule, the
        # sparse AE's batch-mean penalty under per-member noise, the contractive AE's Jacobian
        # (torch.func inside the stack's vmap), DIP-VAE's covariance penalty
        (
            ["model=iwae", "data.binarize=dynamic"],
            [["seed=1"], ["seed=2", "optimizer.lr=0.003"]],
        ),
        (
            ["model=tcvae", "data.binarize=dynamic"],
            [["model.beta=2"], ["model.beta=6", "kl_schedule=warmup", "kl_schedule.steps=4"]],
        ),
        (["model=sparse_ae", "noise=gaussian"], [["seed=1"], ["seed=2", "noise.std=0.2"]]),
        (["model=cae"], [["seed=1"], ["seed=2", "optimizer.lr=0.003"]]),
        (["model=dipvae"], [["seed=1"], ["seed=2", "+model.beta=2"]]),
        # the divergences on the aggregate posterior: the MMD's kernels (both) and the SWAE's
        # projections drawn by `draws`
        (["model=wae"], [["seed=1"], ["seed=2", "optimizer.lr=0.003"]]),
        (["model=wae", "model.kernel=rbf"], [["seed=1"], ["seed=2"]]),
        (["model=infovae"], [["seed=1"], ["seed=2", "optimizer.lr=0.003"]]),
        (["model=swae"], [["seed=1"], ["seed=2", "optimizer.lr=0.003"]]),
        # each member with its own learning-rate scheduler (aelab.stacked.lr): per step, per
        # epoch, with a warm-up, on a plateau (a patience of 0 halves it at once), and none
        (
            ["model=vae", "trainer.max_epochs=3", "logger=tensorboard"],
            [
                [
                    "lr_scheduler=step",
                    "lr_scheduler.interval=step",
                    "lr_scheduler.scheduler.step_size=2",
                ],
                ["lr_scheduler=step", "lr_scheduler.scheduler.step_size=1"],
                ["lr_scheduler=cosine", "lr_scheduler.scheduler.warmup_steps=3"],
                [
                    "lr_scheduler=plateau",
                    "lr_scheduler.scheduler.patience=0",
                    "+lr_scheduler.scheduler.threshold=10",
                ],
                ["optimizer.lr=0.002"],
            ],
        ),
    ],
)
def test_each_member_equals_its_job_run_alone(tmp_path, mnist_dir, common, varying):
    _assert_members_equal_their_runs_alone(tmp_path, common, varying)


@pytest.mark.slow
@pytest.mark.mnist
def test_members_equal_their_runs_alone_by_the_public_torch_func_way(
    tmp_path, mnist_dir, monkeypatch
):
    """Where torch lacks the vmap internals the direct way reads (`aelab.vmapped.AVAILABLE`),
    the stack runs each model's loss by `functional_call` over the members' batched weights and
    the custom functions' own vmap rules: the same values."""
    import aelab.vmapped

    monkeypatch.setattr(aelab.vmapped, "AVAILABLE", False)
    _assert_members_equal_their_runs_alone(
        tmp_path,
        ["model=vae", "data.binarize=dynamic"],
        [["model.beta=0.5"], ["model.beta=4", "kl_schedule=warmup", "kl_schedule.steps=4"]],
    )


@pytest.mark.slow
@pytest.mark.mnist
def test_a_user_model_that_opts_in_stacks_as_its_runs_alone(tmp_path, mnist_dir, own_model):
    """The how-to's own model (docs/how-to/own-model.md), its code noise drawn by `draws`:
    each member equals its job run alone."""
    _assert_members_equal_their_runs_alone(
        tmp_path,
        [f"model._target_={own_model}", "+model.code_noise=0.5"],
        [["seed=1"], ["seed=2", "optimizer.lr=0.003"]],
    )


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(
    "checks", [["++trainer.val_check_interval=0.5"], ["++trainer.val_check_interval=3"]]
)
def test_a_stack_validates_at_the_steps_of_its_runs_alone(tmp_path, mnist_dir, checks):
    """val_check_interval: each member validates where its run alone does (TensorBoard's
    `val/loss` steps and values), so its best checkpoint is chosen among the same points."""
    from aelab.train import train
    from tests.conftest import compose_cfg

    tiny = [o for o in TINY if not o.startswith("logger=")]
    common = [*tiny, "logger=tensorboard", "++trainer.limit_train_batches=4", *checks]
    varying = [["seed=1"], ["seed=2", "optimizer.lr=0.01"]]
    cfgs = []
    for k, own in enumerate(varying):
        folder = tmp_path / f"single{k}"
        folder.mkdir()
        train(compose_cfg([*common, *own], folder))
        cfgs.append(compose_cfg([*common, *own], tmp_path / f"stacked{k}"))
    members = train_stacked(cfgs)
    for k, member in enumerate(members):
        alone = _scalars(tmp_path / f"single{k}", "val/loss")
        # 0.5 of 4 batches: after batches 2 and 4 of each epoch; 3: after batch 3 only
        want = [1, 3, 5, 7] if checks[0].endswith("0.5") else [2, 6]
        assert [step for step, _ in alone] == want
        stacked = [
            (e["step"] - 1, e["figures"]["val/loss"])
            for e in member.history
            if "val/loss" in e["figures"]
        ]
        assert [s for s, _ in stacked] == want
        for (_, mine), (_, theirs) in zip(stacked, alone, strict=True):
            assert mine == pytest.approx(theirs, rel=1e-4)
        best = [p.name for p in (tmp_path / f"single{k}" / "checkpoints").glob("epoch*.ckpt")]
        assert best == [f"epoch{member.best_epoch:03d}.ckpt"]


def _assert_members_equal_their_runs_alone(tmp_path, common, varying):
    from aelab.train import train
    from tests.conftest import compose_cfg

    logged = any(o.startswith("logger=") for o in common)
    tiny = [o for o in TINY if not (logged and o.startswith("logger="))]
    singles, cfgs = [], []
    for k, own in enumerate(varying):
        folder = tmp_path / f"single{k}"
        folder.mkdir()
        cfg = compose_cfg([*tiny, *common, *own], folder)
        metrics = train(cfg)
        state = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        singles.append((metrics, state))
        cfgs.append(compose_cfg([*tiny, *common, *own], tmp_path / f"stacked{k}"))
    members = train_stacked(cfgs)
    for (metrics, state), member in zip(singles, members, strict=True):
        assert member.failed is None
        assert set(member.last_state) == set(state)
        for name, value in state.items():
            # relative to the tensor's norm: Adam divides by sqrt(v), so a weight whose gradient
            # is ~0 (a pixel that is almost always 0) turns float reassociation (1e-12) into a
            # step of up to lr; elementwise, 4 of 100k weights differed by 2e-5
            error = (member.last_state[name] - value).norm() / value.norm()
            assert error < 1e-4, (name, float(error))
        val = member.last_validation
        assert set(val) == {k for k in metrics if k.startswith("val/")}
        for key, value in val.items():
            assert value == pytest.approx(metrics[key], rel=1e-4), key
        stored = json.loads((tmp_path / "single0" / "metrics.json").read_text())
        assert stored["status"] == "completed"
    # each member's learning rate per epoch: what its own run's LearningRateMonitor logged
    for k, member in enumerate(members if logged else []):
        own = _scalars(tmp_path / f"single{k}", "lr-Adam")
        assert own == [(e["start_step"], pytest.approx(e["lr"], rel=1e-6)) for e in member.history]


@pytest.mark.slow
@pytest.mark.mnist
def test_a_diverged_member_is_frozen_and_failed_where_its_run_alone_fails(tmp_path, mnist_dir):
    from aelab.callbacks.faults import NonFiniteLossError
    from aelab.train import train
    from tests.conftest import compose_cfg

    short = [*TINY, "model=vae", "trainer.max_epochs=1", "++trainer.limit_train_batches=4"]
    healthy, diverging = short, [*short, "optimizer.lr=1e4"]  # logvar explodes: kl=inf
    alone = []
    for k, overrides in enumerate([healthy, diverging]):
        folder = tmp_path / f"single{k}"
        folder.mkdir()
        with contextlib.suppress(NonFiniteLossError):  # the diverging one fails, as it should
            train(compose_cfg(overrides, folder))
        alone.append(folder)
    failed = json.loads((alone[1] / "metrics.json").read_text())
    assert failed["status"] == "failed"
    members = train_stacked([compose_cfg(o, tmp_path / "s") for o in (healthy, diverging)])
    assert members[1].failed_step == failed["step"]
    # the single run recomputes the parts on fresh noise: only the place must agree
    assert failed["error"].startswith(members[1].failed.split(": loss=")[0] + ": loss=")
    assert members[0].failed is None  # the other member went on, as if alone
    state = torch.load(alone[0] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, value in state.items():
        assert (members[0].last_state[name] - value).norm() / value.norm() < 1e-4, name
    assert all(torch.isfinite(v).all() for v in members[1].last_state.values())


@pytest.mark.slow
@pytest.mark.mnist
def test_a_stack_stopped_after_a_step_holds_the_weights_of_that_step(tmp_path, mnist_dir):
    from aelab.train import train
    from tests.conftest import compose_cfg

    one_epoch = [*TINY, "model=dae", "trainer.max_epochs=1"]
    folder = tmp_path / "two_batches"
    folder.mkdir()
    train(compose_cfg([*one_epoch, "++trainer.limit_train_batches=2"], folder))
    asked = []

    def after_two_steps() -> bool:  # Ctrl-C during the second step
        asked.append(1)
        return len(asked) == 2

    cfgs = [compose_cfg([*one_epoch, f"seed={s}"], tmp_path / "s") for s in (42, 7)]
    members = train_stacked(cfgs, stop_requested=after_two_steps)
    assert [m.interrupted_step for m in members] == [2, 2]
    assert all(m.history == [] and m.best_state is None for m in members)  # no validation
    state = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, value in state.items():
        assert (members[0].last_state[name] - value).norm() / value.norm() < 1e-4, name


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(
    "common, varying, stop_after, position",
    [
        # Ctrl-C in the middle of epoch 1 (3 batches an epoch): the epoch's sums go on
        (["model=dae"], [["seed=1"], ["seed=2"], ["seed=3", "optimizer.lr=0.003"]], 4, (1, 1)),
        # after an epoch's last batch, before its validation; a member frozen by the NaN guard
        (
            ["model=vae", "data.binarize=dynamic"],
            [["model.beta=0.5"], ["model.beta=4", "optimizer.lr=1e4"], ["seed=5"]],
            3,
            (0, 3),
        ),
        # in the middle of a step-wise StepLR, a cosine warm-up and a plateau schedule
        (
            ["model=vae", "trainer.max_epochs=3"],
            [
                [
                    "lr_scheduler=step",
                    "lr_scheduler.interval=step",
                    "lr_scheduler.scheduler.step_size=2",
                ],
                ["lr_scheduler=cosine", "lr_scheduler.scheduler.warmup_steps=5"],
                [
                    "lr_scheduler=plateau",
                    "lr_scheduler.scheduler.patience=0",
                    "+lr_scheduler.scheduler.threshold=10",
                ],
            ],
            4,
            (1, 1),
        ),
    ],
)
def test_a_stack_continued_from_its_checkpoint_ends_as_if_never_stopped(
    tmp_path, mnist_dir, common, varying, stop_after, position
):
    from tests.conftest import compose_cfg

    cfgs = [
        compose_cfg([*TINY, *common, *own], tmp_path / f"job{k}") for k, own in enumerate(varying)
    ]
    reference = train_stacked(cfgs)
    path = tmp_path / "stacks" / "stack.ckpt"
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) == stop_after

    stopped = train_stacked(cfgs, stop_requested=stop, checkpoint=path)
    assert {m.interrupted_step for m in stopped if m.failed is None} == {stop_after}
    saved = torch.load(path, weights_only=True)  # plain containers and tensors only
    epoch, index = position
    assert saved["position"] == {
        "epoch": epoch,
        "index": index,
        "step": stop_after,
        "finished": False,
    }
    members = train_stacked(cfgs, checkpoint=path)
    assert torch.load(path, weights_only=True)["position"]["finished"]
    for mine, ref in zip(members, reference, strict=True):
        assert mine.resumed and mine.interrupted_step is None
        assert (mine.failed, mine.failed_step) == (ref.failed, ref.failed_step)
        assert mine.global_step == ref.global_step
        assert [(h["epoch"], h["step"]) for h in mine.history] == [
            (h["epoch"], h["step"]) for h in ref.history
        ]
        for got, want in zip(mine.history, ref.history, strict=True):
            assert got["lr"] == want["lr"]  # each member's scheduler went on where it stopped
            assert set(got["figures"]) == set(want["figures"])
            for name, value in want["figures"].items():
                assert got["figures"][name] == pytest.approx(value, rel=1e-6, nan_ok=True), name
        assert (mine.best_epoch, mine.best_val) == (ref.best_epoch, ref.best_val)
        for name, value in ref.last_state.items():
            torch.testing.assert_close(mine.last_state[name], value, rtol=1e-6, atol=1e-7)
    if ["model.beta=4", "optimizer.lr=1e4"] in varying:  # frozen, it stayed frozen
        assert members[1].failed is not None and not bool(saved["alive"][1])
    # a finished stack's checkpoint trains no more: the same members, at once
    again = train_stacked(cfgs, checkpoint=path)
    for mine, ref in zip(again, members, strict=True):
        assert repr(mine.history) == repr(ref.history)  # NaN figures of the frozen member
        for name, value in ref.last_state.items():
            assert torch.equal(mine.last_state[name], value), name
    # another stack (another lr) never continues from it
    other = [
        compose_cfg([*TINY, *common, *own, "optimizer.lr=0.002"], tmp_path / "o") for own in varying
    ]
    assert not train_stacked(other, checkpoint=path, stop_requested=lambda: True)[0].resumed


# --- the launcher: hydra/launcher=stacked ---------------------------------------------------------
SWEEP = [
    "trainer=cpu",
    "trainer.deterministic=true",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.eval_batch_size=100",
    "threads=1",
    "model=dae",
    "seed=1,2,3",
]


def _tensorboard_tags(folder: Path) -> tuple[set[str], set[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tb"))
    events.Reload()
    return set(events.Tags()["scalars"]), set(events.Tags()["images"])


@pytest.mark.slow
@pytest.mark.mnist
def test_a_stacked_sweep_writes_each_job_as_the_unstacked_sweep_does(tmp_path, mnist_dir):
    from helpers.sweeps import run_sweep
    from hydra.utils import get_class

    from aelab.run.checkpoint import load_checkpoint

    plain, _ = run_sweep(tmp_path / "plain", mnist_dir, *SWEEP)
    stacked, out = run_sweep(tmp_path / "stacked", mnist_dir, "hydra/launcher=stacked", *SWEEP)
    assert "stacking 3 jobs: #0 " in out
    names = sorted(p.name for p in plain.iterdir() if (p / "metrics.json").is_file())
    assert len(names) == 3
    assert sorted(p.name for p in stacked.iterdir() if (p / "metrics.json").is_file()) == names
    for k, name in enumerate(names):
        alone = json.loads((plain / name / "metrics.json").read_text())
        mine = json.loads((stacked / name / "metrics.json").read_text())
        assert mine["status"] == alone["status"] == "completed"
        assert set(mine) == set(alone)
        for key, value in alone.items():
            if key != "status":
                assert mine[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, key)
        info = json.loads((stacked / name / "run.json").read_text())
        assert info["stacked"]["group"] == [0, 1, 2] and info["stacked"]["member"] == k
        assert info["flush_denormal"] is True  # the launcher trained the stack flushing them
        assert "stacked" not in json.loads((plain / name / "run.json").read_text())
        assert (stacked / name / ".hydra" / "config.yaml").is_file()
        # the checkpoint loads as an ordinary single model, as aelab-eval loads it
        ckpt = load_checkpoint(stacked / name / "checkpoints" / "last.ckpt")
        model = get_class(ckpt["aelab"]["model_class"])(**ckpt["hyper_parameters"])
        model.load_state_dict(ckpt["state_dict"])
        assert ckpt["aelab"]["config"]["seed"] == k + 1
        reference = load_checkpoint(plain / name / "checkpoints" / "last.ckpt")["state_dict"]
        for key, value in reference.items():
            error = (model.state_dict()[key] - value).norm() / value.norm()
            assert error < 1e-4, (name, key)
        best = sorted(p.name for p in (plain / name / "checkpoints").iterdir())
        assert sorted(p.name for p in (stacked / name / "checkpoints").iterdir()) == best
        assert _tensorboard_tags(stacked / name) == _tensorboard_tags(plain / name)
    assert (stacked / "summary.md").is_file()


@pytest.mark.slow
@pytest.mark.mnist
def test_max_models_below_one_is_refused_in_one_line(tmp_path, mnist_dir):
    from helpers.sweeps import run_sweep_streams

    _, _, err = run_sweep_streams(
        tmp_path,
        mnist_dir,
        "hydra/launcher=stacked",
        "hydra.launcher.max_models=0",
        "seed=1,2",
        returncode=2,
    )
    assert err.strip().splitlines()[-1] == (
        "aelab-train: error: hydra.launcher.max_models=0 is invalid: allowed an integer >= 1"
    )


@pytest.mark.slow
@pytest.mark.mnist
def test_a_stacked_sweep_with_no_end_is_refused_as_the_basic_launcher_refuses_it(
    tmp_path, mnist_dir
):
    """max_epochs=-1 with max_steps=-1 trains for ever: each job refused in the one line of its
    run alone (`aelab.train.check_trainer`), the sweep's status that of failed jobs."""
    from helpers.sweeps import run_sweep_streams

    no_end = ["trainer.max_epochs=-1", "++trainer.limit_train_batches=2", "seed=0,1"]
    lines = {}
    for launcher in ("basic", "stacked"):
        root = tmp_path / launcher
        sweep, _, err = run_sweep_streams(
            root, mnist_dir, f"hydra/launcher={launcher}", *TINY, *no_end, returncode=1
        )
        lines[launcher] = [
            ln.replace(str(sweep), "<sweep>")
            for ln in err.splitlines()
            if ln.startswith("aelab-train: error:")
        ]
        for job in ("0_seed=0", "1_seed=1"):
            assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "failed"
        assert not (sweep / "stacks").exists() or not any((sweep / "stacks").rglob("*.ckpt"))
    why = (
        "trainer.max_epochs=-1 is invalid: allowed an integer >= 0 (-1 or null: no epoch limit, "
        "with max_steps or max_time set)"
    )
    assert lines["stacked"][:2] == [
        f"aelab-train: error: 0_seed=0: {why}",
        f"aelab-train: error: 1_seed=1: {why}",
    ]
    assert lines["stacked"] == lines["basic"]


@pytest.mark.slow
@pytest.mark.mnist
def test_a_sweep_with_nothing_to_stack_says_why_and_runs_unstacked(tmp_path, mnist_dir):
    from helpers.sweeps import TINY, run_sweep_streams

    sweep, _, err = run_sweep_streams(
        tmp_path,
        mnist_dir,
        "hydra/launcher=stacked",
        *TINY,
        "test=false",
        "optimizer=adam,sgd",
        "model.latent_dim=2,3",
    )
    line = next(ln for ln in err.splitlines() if "hydra/launcher=stacked" in ln)
    assert line.startswith("aelab-train: hydra/launcher=stacked: no two of the 4 jobs can be ")
    assert "no other job of the sweep has its shape" in line
    assert "optimizer._target_=torch.optim.SGD: the stacked step has Adam and AdamW" in line
    assert line.endswith("running them one by one")
    jobs = [p for p in sweep.iterdir() if (p / "metrics.json").is_file()]
    assert len(jobs) == 4
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["status"] == "completed"
        assert "stacked" not in json.loads((job / "run.json").read_text())


@pytest.mark.slow
@pytest.mark.mnist
def test_a_diverged_member_fails_its_job_and_the_sweep_goes_on(tmp_path, mnist_dir):
    from helpers.sweeps import TINY, run_sweep

    sweep, out = run_sweep(
        tmp_path,
        mnist_dir,
        "hydra/launcher=stacked",
        *TINY,
        "test=false",
        "model=vae",
        "optimizer.lr=0.001,10000",
        returncode=1,  # the report names the failed job
    )
    assert "stacking 2 jobs" in out
    fine = json.loads((sweep / "0_lr=0.001" / "metrics.json").read_text())
    failed = json.loads((sweep / "1_lr=10000" / "metrics.json").read_text())
    assert fine["status"] == "completed" and math.isfinite(fine["val/loss"])
    assert failed["status"] == "failed" and failed["step"] == 1
    assert failed["error"].startswith("training stopped: non-finite loss at step 1 (epoch 0, ")
    assert (sweep / "0_lr=0.001" / "checkpoints" / "last.ckpt").is_file()
    assert not (sweep / "1_lr=10000" / "checkpoints").exists()


# --- a stopped stacked sweep continues: Ctrl-C, SLURM's requeue -----------------------------------
# the sweep's own process, with a signal sent to itself after the STOP_AFTER-th optimizer step of a
# stack (`<steps>:<signal name>`): a stop at a known step, as a user's Ctrl-C or SLURM's warning
SIGNALLED_SWEEP = """
import os, signal, sys
from aelab.stacked.core import StackedAdam
after, name = os.environ["STOP_AFTER"].split(":")
step, calls = StackedAdam.step, []
def counted(self, *args, **kwargs):
    step(self, *args, **kwargs)
    calls.append(1)
    if len(calls) == int(after):
        os.kill(os.getpid(), getattr(signal, name))
StackedAdam.step = counted
from aelab.train import main
main()
"""
RESUMABLE = [
    "hydra/launcher=stacked",
    *SWEEP,
    "~callbacks.evaluation",
]


def _sweep(args: list[str], returncode: int, **env: str):
    import subprocess
    import sys

    path = os.pathsep.join(
        p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p
    )
    code = ["-c", SIGNALLED_SWEEP] if "STOP_AFTER" in env else ["-m", "aelab.train"]
    done = subprocess.run(
        [sys.executable, *code, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": path, **env},
    )
    assert done.returncode == returncode, done.stderr[-3000:]
    return done


def _jobs(sweep: Path) -> dict[str, dict]:
    return {
        p.name: json.loads((p / "metrics.json").read_text())
        for p in sweep.iterdir()
        if (p / "metrics.json").is_file()
    }


def _assert_same_metrics(sweep: Path, reference: dict[str, dict]) -> None:
    jobs = _jobs(sweep)
    assert set(jobs) == set(reference)
    for name, want in reference.items():
        got = jobs[name]
        assert got["status"] == want["status"] == "completed", (name, got)
        assert set(got) == set(want), name
        for key, value in want.items():
            if key != "status":
                assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, key)


@pytest.mark.slow
@pytest.mark.mnist
def test_a_stopped_stacked_sweep_continues_to_the_uninterrupted_metrics(tmp_path, mnist_dir):
    """Ctrl-C after step 4 (of 2 epochs x 3 batches), then the command metrics.json gives; and
    SLURM's SIGUSR1 after step 4: `scontrol requeue <job>`, then the requeued start."""
    common = ["-m", f"paths.root_dir={tmp_path}", f"paths.data_dir={mnist_dir}", *RESUMABLE]
    ref_dir = tmp_path / "reference"
    _sweep([*common, f"hydra.sweep.dir={ref_dir}"], 0)
    reference = _jobs(ref_dir)
    assert len(reference) == 3

    # Ctrl-C: each job interrupted at step 4, the stack's checkpoint kept
    stopped = tmp_path / "stopped"
    done = _sweep([*common, f"hydra.sweep.dir={stopped}"], 130, STOP_AFTER="4:SIGINT")
    jobs = _jobs(stopped)
    assert {m["status"] for m in jobs.values()} == {"interrupted"}
    assert {m["step"] for m in jobs.values()} == {4}
    (checkpoint,) = stopped.glob("stacks/*/stack.ckpt")
    assert torch.load(checkpoint, weights_only=True)["position"]["step"] == 4
    command = next(iter(jobs.values()))["resume"]
    assert f"to continue: {command}" in done.stderr
    assert command.startswith("aelab-train ") and command.endswith(f"hydra.sweep.dir={stopped}")
    # the command it gives continues the stack and ends where the uninterrupted sweep did
    done = _sweep(shlex.split(command)[1:], 0)
    assert "continuing 3 jobs: #0 " in done.stderr
    assert f"continuing the stack from {checkpoint} at step 4 (epoch 1, batch 1)\n" in done.stdout
    _assert_same_metrics(stopped, reference)
    assert not (stopped / "stacks").exists()  # every job written: the checkpoint is gone
    for name in reference:
        info = json.loads((stopped / name / "run.json").read_text())
        assert len(info["resumed"]) == 1 and info["stacked"]["logged"] == 2
        # TensorBoard: each epoch once, at the uninterrupted run's steps and values
        want, got = (_scalars(folder / name, "val/loss") for folder in (ref_dir, stopped))
        assert [s for s, _ in got] == [s for s, _ in want] == [2, 5]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4)
    # the same command once more: the completed jobs are left as they are
    written = {p: p.stat().st_mtime_ns for p in stopped.glob("*/metrics.json")}
    done = _sweep(shlex.split(command)[1:], 0)
    assert "stacking" not in done.stderr and "continuing" not in done.stderr
    assert {p: p.stat().st_mtime_ns for p in stopped.glob("*/metrics.json")} == written

    # SLURM's warning (SIGUSR1): saved after the step, `scontrol requeue <job>`, no job written
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "train",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    requeued = tmp_path / "requeued"
    args = [*common, f"hydra.sweep.dir={requeued}"]
    done = _sweep(args, 1, STOP_AFTER="4:SIGUSR1", **slurm)
    assert calls.read_text() == "requeue 4242\n"
    assert done.stderr.strip().splitlines()[-1].startswith("requeued after saving ")
    assert _jobs(requeued) == {}
    (checkpoint,) = requeued.glob("stacks/*/stack.ckpt")
    assert torch.load(checkpoint, weights_only=True)["position"]["step"] == 4
    # SLURM starts the same command again
    done = _sweep(args, 0, SLURM_RESTART_COUNT="1", **slurm)
    assert f"continuing the stack from {checkpoint} at step 4 (epoch 1, batch 1)\n" in done.stdout
    _assert_same_metrics(requeued, reference)
    assert calls.read_text() == "requeue 4242\n"  # requeued once


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_sigusr1_requeues_only_a_sweep_whose_folder_a_restart_finds(
    make_cfg, tmp_path, monkeypatch
):
    """A requeued job starts the same command again: without `hydra.sweep.dir` on it, the
    restart would make a new sweep folder, so the stack stops as on Ctrl-C instead; a failing
    `scontrol` leaves it stopping too."""
    from aelab.callbacks.slurm import StoppedBySlurm
    from hydra_plugins.aelab_stacked.stacked_launcher import _requeue

    calls = tmp_path / "calls"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit "${{FAIL:-0}}"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    make_cfg("model=vae")  # HydraConfig: this command line, no hydra.sweep.dir
    _requeue(tmp_path / "stack.ckpt")
    assert not calls.exists()
    make_cfg("model=vae", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    monkeypatch.setenv("FAIL", "1")
    _requeue(tmp_path / "stack.ckpt")  # scontrol failed: returns, the stack stops
    monkeypatch.setenv("FAIL", "0")
    with pytest.raises(StoppedBySlurm, match="requeued after saving"):
        _requeue(tmp_path / "stack.ckpt")
    assert calls.read_text() == "requeue 77\nrequeue 77\n"
