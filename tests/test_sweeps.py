"""Sweep presets: every job of every preset composes and builds; job folders are named by their
overrides; sweeps never share a folder; a parallel (joblib) sweep and an Optuna search run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import joblib
import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import OmegaConf
from optuna.samplers import TPESampler
from sweep_fixtures import TINY, run_sweep

from aelab import CONFIG_DIR
from aelab.models import VAE, Autoencoder
from aelab.noise import GaussianNoise, MaskingNoise
from aelab.report import report
from aelab.search import TrialSeededTPESampler
from aelab.train import build_model

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def compose_with_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper expands `-m <overrides>` with the sweep
    parameters of the presets they select (command-line values win)."""
    cfg = compose_with_hydra([o for o in overrides if "," not in o])
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + overrides)
    (batch,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return batch


def job_config(overrides: list[str]):
    """A job's composed config (hydra node included) and its built model."""
    cfg = compose_with_hydra(overrides)
    HydraConfig.instance().set_config(cfg)
    return cfg, build_model(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_job_of_a_preset_composes_and_builds(experiment):
    jobs = sweep_jobs([f"experiment={experiment}"])
    assert len(jobs) > 1
    seen = []
    for job in jobs:
        cfg, model = job_config([f"experiment={experiment}", *job])
        excluded = set(cfg.hydra.job.config.override_dirname.exclude_keys)
        named = sorted(o for o in job if o.split("=")[0] not in excluded)
        assert cfg.hydra.job.override_dirname == ",".join(named)  # the folder: its overrides
        assert "experiment" not in cfg.hydra.job.override_dirname
        seen.append((cfg, model))

    if experiment == "latent_sweep":
        assert {(type(m), m.latent_dim) for _, m in seen} == {
            (cls, d) for cls in (Autoencoder, VAE) for d in (2, 4, 8, 16, 32, 64)
        }
    elif experiment == "beta_sweep":
        betas = sorted(m.beta for _, m in seen)
        assert all(isinstance(m, VAE) for _, m in seen)
        assert len(betas) >= 7 and betas[0] == 0.1 and betas[-1] == 16 and 1.0 in betas
        ratios = [b / a for a, b in zip(betas, betas[1:], strict=False)]
        assert all(1.5 <= r <= 3.0 for r in ratios), ratios  # log-spaced
    elif experiment == "noise_sweep":
        levels = {"gaussian": set(), "masking": set()}
        for cfg, model in seen:
            noise = model.noise
            assert isinstance(noise, GaussianNoise | MaskingNoise)
            assert noise.level == pytest.approx(cfg.noise_level)
            levels[noise.kind].add(round(noise.level, 3))
        assert {0.0, 0.3, 0.8} <= levels["gaussian"] and {0.0, 0.3, 0.7} <= levels["masking"]
        assert len(levels["gaussian"]) >= 5 and len(levels["masking"]) >= 5


def test_seeds_and_command_line_values_combine_with_a_preset():
    jobs = sweep_jobs(["experiment=latent_sweep", "model=vae", "seed=0,1,2"])
    assert len(jobs) == 6 * 3
    assert all("model=vae" in job for job in jobs)
    cfg, model = job_config(["experiment=latent_sweep", *jobs[-1]])
    assert isinstance(model, VAE) and cfg.seed == 2
    assert cfg.hydra.job.override_dirname == "model.latent_dim=64,model=vae"


def test_an_ad_hoc_sweep_names_its_jobs_by_their_overrides():
    jobs = sweep_jobs(["model=ae,vae", "model.latent_dim=2,16", "paths.data_dir=/data"])
    names = sorted(job_config(job)[0].hydra.job.override_dirname for job in jobs)
    assert names == [
        "model.latent_dim=16,model=ae",
        "model.latent_dim=16,model=vae",
        "model.latent_dim=2,model=ae",
        "model.latent_dim=2,model=vae",
    ]


def test_the_optuna_preset_searches_lr_and_latent_size():
    from optuna.distributions import CategoricalDistribution, LogUniformDistribution

    cfg = compose_with_hydra(["hparams_search=vae_optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    space, fixed = create_params_from_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    assert isinstance(space["optimizer.lr"], LogUniformDistribution)
    assert isinstance(space["model.latent_dim"], CategoricalDistribution) and not fixed
    # a trial's overrides compose into a VAE with those values
    _, model = job_config(["hparams_search=vae_optuna", "optimizer.lr=0.003", "model.latent_dim=8"])
    assert isinstance(model, VAE) and model.latent_dim == 8
    assert model.hparams["optimizer"]["lr"] == 0.003


def lr_and_latent(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    latent = trial.suggest_categorical("latent", [2, 4, 8, 16, 32, 64])
    return (math.log10(lr) + 3) ** 2 + abs(math.log2(latent) - 3)


def stopped_and_resumed(storage: str, sampler: type, stops: tuple[int, ...]) -> list[dict]:
    """A study run for stops[0] trials, then resumed by a new sampler (as a new `aelab-train -m`
    makes) for stops[1] more, ...; each trial's parameters."""
    for n_trials in stops:
        study = optuna.create_study(
            study_name="s",
            storage=storage,
            sampler=sampler(seed=0, n_startup_trials=3),
            load_if_exists=True,
        )
        study.optimize(lr_and_latent, n_trials=n_trials)
    return [t.params for t in optuna.load_study(study_name="s", storage=storage).trials]


def test_a_resumed_study_proposes_what_an_uninterrupted_one_would(tmp_path):
    whole = stopped_and_resumed(f"sqlite:///{tmp_path / 'whole.db'}", TrialSeededTPESampler, (6,))
    assert len({p["lr"] for p in whole}) == 6
    # stopped in the random start-up (3 trials) and after it: TPE's own draws are covered too
    for i, stops in enumerate([(2, 4), (4, 1, 1)]):
        storage = f"sqlite:///{tmp_path / f'resumed{i}.db'}"
        assert stopped_and_resumed(storage, TrialSeededTPESampler, stops) == whole, stops
    # why: optuna's own TPE, seeded once per process, repeats the first trial on resuming
    plain = stopped_and_resumed(f"sqlite:///{tmp_path / 'plain.db'}", TPESampler, (2, 4))
    assert plain[2] == plain[0]


def test_two_sweeps_get_different_folder_tags(monkeypatch, tmp_path):
    """The random tag, not the clock, keeps sweeps started in the same second apart."""
    monkeypatch.setenv("AELAB_ROOT", str(tmp_path))
    dirs = []
    for _ in range(2):
        cfg = compose_with_hydra([])
        HydraConfig.instance().set_config(cfg)
        dirs.append(Path(cfg.hydra.sweep.dir))
        assert dirs[-1] == Path(cfg.hydra.sweep.dir)  # one folder however often it is read
    for d in dirs:
        assert d.parent.parent == tmp_path / "outputs" / "multiruns"
        time, tag, task = d.name.split("_")
        assert len(time) == len("12-34-56") and len(tag) == 9 and task == "train"
    assert dirs[0].name.split("_")[1] != dirs[1].name.split("_")[1]


@pytest.mark.slow
def test_two_sweeps_launched_together_never_share_a_folder(tmp_path):
    """Two real `aelab-train -m` processes started at once (their jobs stop at a bad value)."""
    env = {**os.environ, "AELAB_ROOT": str(tmp_path)}
    cmd = [sys.executable, "-m", "aelab.train", "-m", "trainer.max_epochs=-1"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    for p in procs:
        p.wait(timeout=300)
    sweeps = sorted((tmp_path / "outputs" / "multiruns").glob("*/*"))
    assert len(sweeps) == 2, sweeps
    for sweep in sweeps:
        assert (sweep / "multirun.yaml").is_file()
        assert [d.name for d in sweep.iterdir() if d.is_dir()] == ["0_trainer.max_epochs=-1"]


@pytest.mark.slow
@pytest.mark.mnist
def test_a_parallel_sweep_runs_its_jobs_in_one_folder(tmp_path, mnist_dir):
    """joblib workers (loky processes) compose each job again: the folder tag resolved in the
    launching process must carry over, and each job gets its share of the cores."""
    sweep, _ = run_sweep(
        tmp_path,
        mnist_dir,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model=ae,vae",
        "model.latent_dim=2",
        *TINY,
    )
    jobs = sorted(d.name for d in sweep.iterdir() if d.is_dir())
    assert jobs == [
        "0_model.latent_dim=2,model=ae,trainer.limit_train_batches=5,trainer.max_epochs=1",
        "1_model.latent_dim=2,model=vae,trainer.limit_train_batches=5,trainer.max_epochs=1",
    ]
    # loky limits each worker to cores // n_jobs threads unless the environment says otherwise
    share = os.environ.get("OMP_NUM_THREADS", max(joblib.cpu_count() // 2, 1))
    for job in jobs:
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["status"] == "completed" and math.isfinite(metrics["test/recon_mse"])
        assert f"torch threads: {share}\n" in (sweep / job / "train.log").read_text()
    assert (sweep / "summary.md").is_file()  # the report, written when the sweep ended


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_jobs_with_dataloader_workers_score_as_without(tmp_path, mnist_dir, launcher):
    """The same job with and without DataLoader workers, side by side in one sweep: identical
    metrics.json (a VAE on dynamically binarized digits: every random draw counts). In a joblib
    (loky) worker the DataLoader could not start its workers at all ("'Process' object has no
    attribute 'env'"); submitit_local starts jobs as SLURM does (`python -m
    submitit.core._submit`)."""
    sweep, _ = run_sweep(
        tmp_path,
        mnist_dir,
        f"hydra/launcher={launcher}",
        "model=vae",
        "model.latent_dim=2",
        "data.binarize=dynamic",
        "data.num_workers=0,2",
        "threads=1",
        "~callbacks.evaluation",
        *TINY,
    )
    jobs = sorted(d for d in sweep.iterdir() if d.is_dir() and d.name[0].isdigit())
    assert [d.name[:2] for d in jobs] == ["0_", "1_"]
    workers = [OmegaConf.load(d / ".hydra" / "config.yaml").data.num_workers for d in jobs]
    assert workers == [0, 2]
    without, with_workers = (json.loads((d / "metrics.json").read_text()) for d in jobs)
    assert without["status"] == "completed" and math.isfinite(without["test/neg_elbo"])
    assert with_workers == without
    assert (sweep / "summary.md").is_file()


@pytest.mark.slow
@pytest.mark.mnist
def test_an_optuna_study_in_a_database_resumes_where_it_stopped(tmp_path, mnist_dir):
    """The preset's advertised `storage`: optuna 2.10 under SQLAlchemy 2 died at once
    (AssertionError, its schema version table empty). A second run adds to the stored study."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    search = [
        "hparams_search=vae_optuna",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.n_jobs=1",
        "~callbacks.evaluation",
        *TINY,
    ]
    jobs = []
    for run in ("first", "resumed"):
        sweep, _ = run_sweep(tmp_path / run, mnist_dir, *search)
        (job,) = [d for d in sweep.iterdir() if d.is_dir() and d.name[0].isdigit()]
        jobs.append(job)
    study = optuna.load_study(study_name="vae_lr_latent", storage=storage)
    assert [t.number for t in study.trials] == [0, 1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for trial, job in zip(study.trials, jobs, strict=True):
        assert trial.value == json.loads((job / "metrics.json").read_text())["val/loss"]
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert config.model.latent_dim == trial.params["model.latent_dim"]
        assert config.optimizer.lr == pytest.approx(trial.params["optimizer.lr"], rel=1e-12)
    # the second trial is the one an uninterrupted search would have asked next, not the first
    # one again: the preset's sampler and search space, asked twice in memory
    sweeper = compose_with_hydra(["hparams_search=vae_optuna"]).hydra.sweeper
    space, _ = create_params_from_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    fresh = optuna.create_study(sampler=instantiate(sweeper.sampler))
    expected = []
    for _ in range(2):
        trial = fresh.ask()
        expected.append({name: trial._suggest(name, dist) for name, dist in space.items()})
    assert [t.params for t in study.trials] == expected
    assert expected[0] != expected[1]


@pytest.mark.slow
@pytest.mark.mnist
def test_an_optuna_search_saves_its_study(tmp_path, mnist_dir):
    sweep, _ = run_sweep(
        tmp_path,
        mnist_dir,
        "hparams_search=vae_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=1",
        *TINY,
    )
    study = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(study.best_params) == {"optimizer.lr", "model.latent_dim"}
    jobs = [d for d in sweep.iterdir() if d.is_dir()]
    losses = [json.loads((d / "metrics.json").read_text())["val/loss"] for d in jobs]
    assert len(jobs) == 2 and study.best_value == pytest.approx(min(losses))
    for job in jobs:  # named by the trial's values
        assert "model.latent_dim=" in job.name and "optimizer.lr=" in job.name
        assert "hparams_search" not in job.name
    report(sweep)
    summary = (sweep / "summary.md").read_text()
    assert "## Optuna study" in summary and f"{study.best_value:.4g}" in summary
