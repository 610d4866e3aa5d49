"""Sweep presets: every job of every preset composes and builds; job folders are named by their
overrides; sweeps never share a folder; a parallel (joblib) sweep and an Optuna search run."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote_to_bytes

import joblib
import optuna
import pytest
from helpers.sweeps import (  # noqa: F401 - tiny_sweep*: fixtures
    TINY,
    assert_headline_table,
    assert_progress_line,
    run_sweep,
    run_sweep_streams,
    tiny_sweep,
    tiny_sweep_stdout,
)
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class, instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import OmegaConf, open_dict
from optuna.samplers import TPESampler

from aelab import CONFIG_DIR
from aelab.models import VAE, Autoencoder
from aelab.noise import GaussianNoise, MaskingNoise, Noise
from aelab.report import report
from aelab.resolvers import (
    JOB_NAME_MAX_BYTES,
    SWEEP_ENV,
    job_dirname,
    varying_keys,
    varying_overrides,
)
from aelab.run.sweep import RecordSweep, _job_count, progress_line
from aelab.search import TrialSeededTPESampler
from aelab.train import build_model
from hydra_plugins.aelab_sweeper.baseline_sweeper import with_baseline

# the sweep presets (a single-run preset, e.g. experiment=celeba_vae, is tested with its data)
EXPERIMENTS = sorted(
    p.stem
    for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")
    if "mode: MULTIRUN" in p.read_text()
)


def compose_with_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Each job's overrides, as the sweeper the presets select (Hydra's basic one unless they
    say otherwise) expands `-m <overrides>` with their sweep parameters (command-line values
    win)."""
    cfg = compose_with_hydra([o for o in overrides if "," not in o])
    conf = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    sweeper = get_class(conf.pop("_target_"))(**conf)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + overrides)
    (batch,) = sweeper.split_arguments(parsed, max_batch_size=None)
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
        levels = {"none": [], "gaussian": [], "masking": []}
        for cfg, model in seen:
            noise = model.noise
            assert type(noise) in (Noise, GaussianNoise, MaskingNoise)
            assert noise.level == pytest.approx(cfg.noise_level)
            levels[noise.kind].append(round(noise.level, 3))
        assert levels["none"] == [0.0]  # the clean-input baseline, once, as job 0
        assert type(seen[0][1].noise) is Noise
        for kind in ("gaussian", "masking"):  # 0.1 ... 0.8, each once; 0 is the baseline
            assert levels[kind] == [round(0.1 * n, 3) for n in range(1, 9)]


def effective_config(job: list[str], experiment: str) -> str:
    """What a job trains: its composed config, resolved, less the hydra node and the paths (where
    it runs), and with the corruption as the noise it builds (kind and level; an identity noise is
    `none` at 0) in place of the keys that select it."""
    cfg, model = job_config([f"experiment={experiment}", *job])
    left_out = ("hydra", "paths", "noise", "noise_kind", "noise_level", "corruptions")
    data = {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        if OmegaConf.is_config(cfg[key])
        else cfg[key]
        for key in cfg
        if key not in left_out
    }
    noise = model.noise
    data["noise"] = ("none", 0.0) if noise.is_identity else (noise.kind, noise.level)
    return json.dumps(data, sort_keys=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, n_jobs",
    [([], 1 + 2 * 8), (["noise_kind=masking"], 1 + 8), (["seed=0,1"], 2 * (1 + 2 * 8))],
)
def test_the_noise_sweep_trains_each_config_once(extra, n_jobs):
    """Level 0 (no corruption) is one run, not one per kind; one kind only keeps its baseline."""
    jobs = sweep_jobs(["experiment=noise_sweep", *extra])
    assert len(jobs) == n_jobs
    configs = [effective_config(job, "noise_sweep") for job in jobs]
    assert len(set(configs)) == len(configs)
    baselines = [c for c in configs if '"noise": ["none", 0.0]' in c]
    assert len(baselines) == (2 if "seed=0,1" in extra else 1)


def test_the_baseline_sweeper_adds_each_baseline_once_and_first():
    jobs = [
        ["kind=a", "level=0.1", "seed=0"],
        ["kind=a", "level=0.2", "seed=0"],
        ["kind=b", "level=0.1", "seed=1"],
        ["kind=none", "level=0", "seed=1"],  # already a job: not added again
    ]
    assert with_baseline(jobs, {"kind": "none", "level": 0}) == [
        ["kind=none", "level=0", "seed=0"],
        *jobs,
    ]
    # a baseline key the jobs do not set is added; `+key` keeps its prefix
    assert with_baseline([["+x=1", "y=2"], ["+x=3", "y=2"]], {"x": 0.0, "z": True}) == [
        ["+x=0.0", "y=2", "z=true"],
        ["+x=1", "y=2"],
        ["+x=3", "y=2"],
    ]
    assert with_baseline(jobs, {}) == jobs


def test_seeds_and_command_line_values_combine_with_a_preset():
    jobs = sweep_jobs(["experiment=latent_sweep", "model=vae", "seed=0,1,2"])
    assert len(jobs) == 6 * 3
    assert all("model=vae" in job for job in jobs)
    cfg, model = job_config(["experiment=latent_sweep", *jobs[-1]])
    assert isinstance(model, VAE) and cfg.seed == 2
    # the seed varies across the jobs: it names them too
    assert cfg.hydra.job.override_dirname == "model.latent_dim=64,model=vae,seed=2"


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
        # a sweep of one job varies nothing: its number names it
        assert [d.name for d in sweep.iterdir() if (d / ".hydra").is_dir()] == ["0"]


@pytest.mark.slow
@pytest.mark.mnist
def test_a_parallel_sweep_runs_its_jobs_in_one_folder(tmp_path, mnist_dir):
    """joblib workers (loky processes) compose each job again: the folder tag resolved in the
    launching process must carry over, and each job gets its share of the cores."""
    overrides = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=ae,vae"]
    overrides += ["model.latent_dim=2", *TINY]
    sweep, stdout, _ = run_sweep_streams(tmp_path, mnist_dir, *overrides)
    jobs = sorted(d.name for d in sweep.iterdir() if (d / ".hydra").is_dir())
    # named by what varies: latent_dim=2 and TINY are the same in both jobs
    assert jobs == ["0_model=ae", "1_model=vae"]
    # each worker's line reaches the launching process's stdout, whichever job ends first
    for i, job in enumerate(jobs):
        assert_progress_line(stdout, i, 2, sweep / job)
    assert_headline_table(stdout, sweep)
    # loky limits each worker to cores // n_jobs threads unless the environment says otherwise
    share = os.environ.get("OMP_NUM_THREADS", max(joblib.cpu_count() // 2, 1))
    for job in jobs:
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["status"] == "completed" and math.isfinite(metrics["test/recon_mse"])
        # threads=auto: the free cores, at most that share
        found = re.search(r"torch threads: (\d+) ", (sweep / job / "train.log").read_text())
        assert found is not None and 1 <= int(found[1]) <= int(share)
        # run.json: the user's sweep command, not the loky worker's own command line
        argv = json.loads((sweep / job / "run.json").read_text())["argv"]
        paths = [f"paths.root_dir={tmp_path}", f"paths.data_dir={mnist_dir}"]
        assert argv[1:] == ["-m", *paths, *overrides], argv
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
    sweep, stdout, _ = run_sweep_streams(
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
    jobs = sorted(d for d in sweep.iterdir() if (d / ".hydra").is_dir() and d.name[0].isdigit())
    # num_workers is left out of names, unless, as here, nothing else varies
    assert [d.name for d in jobs] == ["0_num_workers=0", "1_num_workers=2"]
    # submitit's jobs print into their own logs: the launching process shows their lines
    for num, job in enumerate(jobs):
        assert_progress_line(stdout, num, 2, job)
    assert_headline_table(stdout, sweep)
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
        (job,) = [d for d in sweep.iterdir() if (d / ".hydra").is_dir() and d.name[0].isdigit()]
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
    sweep, stdout, _ = run_sweep_streams(
        tmp_path,
        mnist_dir,
        "hparams_search=vae_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=1",
        *TINY,
    )
    study = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(study.best_params) == {"optimizer.lr", "model.latent_dim"}
    jobs = sorted(d for d in sweep.iterdir() if (d / ".hydra").is_dir())
    losses = [json.loads((d / "metrics.json").read_text())["val/loss"] for d in jobs]
    assert len(jobs) == 2 and study.best_value == pytest.approx(min(losses))
    for num, job in enumerate(jobs):  # named by the trial's values only, lr rounded
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        lr = f"{config.optimizer.lr:.4g}"
        assert job.name == f"{num}_latent_dim={config.model.latent_dim},lr={lr}"
        assert_progress_line(stdout, num, 2, job)  # N: n_trials
    assert_headline_table(stdout, sweep)
    report(sweep)
    summary = (sweep / "summary.md").read_text()
    assert "## Optuna study" in summary and f"{study.best_value:.4g}" in summary


# --- job folder names -------------------------------------------------------------------------

ODD_OVERRIDES = [
    "",
    "model.latent_dim=16,model=vae",
    "+tag=exp/a",
    "+tag=exp%2Fa",  # what "exp/a" is escaped to: must not give the same name
    "+tag=../../etc",
    "+tag=/",
    "+tag=a\x00b",
    "+tag=a b\tc\nd",
    "+tag='quoted value',+other=\"double\"",
    "+tag=a:b",
    "+tag=[1,2,3],data.classes=[0]",
    "+tag={a:1,b:[2,3]}",
    "+tag=${oc.env:HOME}",
    "+tag=~x,~callbacks.evaluation",
    "+tag=\\back\\slash",
    "+tag=*?|<>&;$`!#",
    "+tag=é/ü/日本語",
    "+tag=\udcff\udc80",  # undecodable command-line bytes (surrogateescape)
    "+tag=" + ",".join(str(i) for i in range(200)),  # a long list
    ",".join(f"+k{i}=v{i}" for i in range(60)),  # many overrides
    "+tag=" + "a" * 300,
    "+tag=" + "a" * 300 + "b",  # the same first 120 bytes as the one above
    "+tag=" + "/" * 300,
    "+tag=" + "é" * 300,
]


@pytest.mark.parametrize("overrides", ODD_OVERRIDES)
def test_a_job_name_is_one_safe_bounded_folder(overrides, tmp_path):
    name = job_dirname(7, overrides)
    raw = name.encode("ascii")  # ASCII only: bytes == characters
    assert len(raw) <= JOB_NAME_MAX_BYTES == 120
    assert "/" not in name and "\x00" not in name and name not in {"", ".", ".."}
    assert name.isprintable() and " " not in name
    assert name.startswith("7_") if overrides else name == "7"  # nothing varies: its number
    folder = tmp_path / name
    folder.mkdir()  # a real folder, directly under its parent
    assert [p.name for p in tmp_path.iterdir()] == [name]
    full = (f"7_{overrides}" if overrides else "7").encode("utf-8", "surrogatepass")
    if "~" not in name:  # not cut: %XX decodes back to the string
        assert unquote_to_bytes(name) == full
    else:  # cut: the first bytes, then ~ and a hash of the whole string
        head, digest = name.rsplit("~", 1)
        assert digest == hashlib.sha256(full).hexdigest()[:10]
        assert full.startswith(unquote_to_bytes(head)) and len(head) > 60


def test_job_names_are_unique_and_readable():
    pairs = [(n, o) for n in (0, 1, 12) for o in ODD_OVERRIDES]
    # the text of every cut name, given as overrides: still a different name
    pairs += [(0, job_dirname(0, o).partition("_")[2]) for o in ODD_OVERRIDES]
    names = [job_dirname(n, o) for n, o in pairs]
    assert len(set(names)) == len(set(pairs))
    assert job_dirname(3, "model.latent_dim=16,model=vae") == "3_model.latent_dim=16,model=vae"
    assert job_dirname(0, "+tag=exp/a") == "0_+tag=exp%2Fa"
    assert job_dirname(1, "data.classes=[0]") == "1_data.classes=[0]"
    assert job_dirname(0, "") == job_dirname(0, None) == "0"  # a sweep that varies nothing
    with pytest.raises(ValueError, match="max_bytes=8"):
        job_dirname(0, "x", max_bytes=8)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["+tag=exp/a", "seed=3"], "5_+tag=exp%2Fa,seed=3"),
        (["+tag='a b:c'"], "5_+tag=%27a%20b%3Ac%27"),
        # read as typed: an interpolation that only a job can resolve does not stop the sweep
        (["+tag='${nowhere}'"], "5_+tag=%27%24%7Bnowhere%7D%27"),
    ],
)
def test_hydra_names_a_sweep_job_folder_with_job_dirname(overrides, expected, monkeypatch):
    monkeypatch.delenv(SWEEP_ENV, raising=False)  # no plan recorded: every override names it
    cfg = compose_with_hydra(overrides)
    with open_dict(cfg):
        cfg.hydra.job.num = 5
    HydraConfig.instance().set_config(cfg)
    assert cfg.hydra.sweep.subdir == expected


@pytest.mark.slow
@pytest.mark.mnist
def test_a_slash_in_a_swept_value_gives_one_folder_per_job(tmp_path, mnist_dir):
    sweep, _ = run_sweep(tmp_path, mnist_dir, "+tag=exp/a,exp/b", "threads=1", *TINY)
    jobs = ["0_tag=exp%2Fa", "1_tag=exp%2Fb"]
    assert sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir()) == jobs
    for job in jobs:
        assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "completed"
    # TensorBoard: one run (folder of event files) per job, inside the job's folder, and the
    # sweep's own (its HParams columns) in the sweep's report/ folder
    runs = {p.parent.relative_to(sweep) for p in sweep.rglob("*/events.out.tfevents.*")}
    assert sorted(r.parts[0] for r in runs) == [*jobs, "report"]
    done = subprocess.run(
        [sys.executable, "-m", "aelab.report", str(sweep)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    with (sweep / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"]) for r in rows] == [(j, "completed") for j in jobs]


# --- failed jobs ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_sweep_with_failed_jobs_runs_them_all_reports_and_exits_1(tmp_path, mnist_dir, launcher):
    """Job 0 raises a plain error after its folder exists, jobs 1 and 3 have a bad value (which
    ends a single run with exit 2), job 2 completes."""
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    sweep, out = run_sweep(
        tmp_path,
        mnist_dir,
        *parallel,
        "+callbacks.boom._target_=helpers.sweeps.FailOnFitStart",
        "+callbacks.boom.fail=true,false",
        "trainer.max_epochs=0,-1",
        "test=false",
        "threads=1",
        returncode=1,
    )
    jobs = sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: p.name)
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1", "2", "3"]
    status = {p.name: json.loads((p / "metrics.json").read_text()) for p in jobs}
    bad_epochs = (
        "trainer.max_epochs=-1 is invalid: allowed an integer >= 0 (-1 or null: no epoch limit, "
        "with max_steps or max_time set)"
    )
    errors = ["RuntimeError: boom at fit start", bad_epochs, None, bad_epochs]
    assert [status[p.name].get("error") for p in jobs] == errors
    assert [status[p.name]["status"] for p in jobs] == ["failed", "failed", "completed", "failed"]
    failed = [p.name for p in jobs if status[p.name]["status"] == "failed"]
    for num, (job, error) in enumerate(zip(jobs, errors, strict=True)):
        if error is not None:  # as each job ends, its error
            assert f"job {num + 1} of 4: {job.name}  failed: {error}  (" in out
    line = out.strip().splitlines()[-1]
    assert line == (
        f"aelab-train: error: 3 of 4 jobs did not complete, see {sweep / 'summary.md'}: "
        + ", ".join(f"{name} (failed)" for name in failed)
    )
    summary = (sweep / "summary.md").read_text()
    assert "4 jobs: 3 failed, 1 completed." in summary
    assert "| " + failed[0] + " | failed | RuntimeError: boom at fit start |" in summary


# --- names from what the sweep varies -----------------------------------------------------------


def test_varying_keys_are_those_with_more_than_one_value():
    issue = ["model=ae,vae", "model.latent_dim=2,16", "trainer.max_epochs=2"]
    issue += ["++trainer.limit_train_batches=200", "seed=0,1"]
    assert varying_keys(issue) == ["model", "model.latent_dim", "seed"]
    # one value, however written, is constant; a deletion is the same in every job
    same = ["a=1", "b=2,2", "c=range(3,4)", "d=choice(x)", "~callbacks.evaluation", "+e=5"]
    assert varying_keys(same) == []
    assert varying_keys(["c=range(3,5)", "d=choice(x,y)", "+e=1,2"]) == ["c", "d", "e"]
    # what Hydra cannot list here varies: an interval (Optuna), a glob
    assert varying_keys(["lr=interval(0.1,1)", "model=glob(*)"]) == ["lr", "model"]
    # a preset's params, replaced key by key by the command line
    params = {"model": "ae,vae", "model.latent_dim": "2,4,8"}
    assert varying_keys(["model=vae"], params) == ["model.latent_dim"]
    assert varying_keys(["model.latent_dim=4"], params) == ["model"]
    # the baseline run gives its keys one more value; a key only the baseline sets varies too
    levels = {"noise_kind": "gaussian,masking", "noise_level": "0.1,0.2"}
    baseline = {"noise_kind": "none", "noise_level": 0, "extra": True}
    assert varying_keys(["noise_kind=masking"], levels, baseline) == [
        "extra",
        "noise_kind",
        "noise_level",
    ]
    assert varying_keys(["x=1"], None, {"x": 1}) == []  # the baseline repeats a constant
    optuna_space = {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "model.latent_dim": "2"}
    assert varying_keys([], optuna_space, search_space=["net.depth"]) == [
        "net.depth",
        "optimizer.lr",
    ]


@pytest.mark.parametrize(
    "overrides, varying, expected",
    [
        # the issue's sweep: constants left out, dotted keys shortened
        (
            [
                "model=ae",
                "model.latent_dim=2",
                "trainer.max_epochs=2",
                "++trainer.limit_train_batches=200",
            ],
            ["model", "model.latent_dim"],
            "latent_dim=2,model=ae",
        ),
        # two keys ending alike stay whole; a third key is still shortened
        (
            ["model.beta=2", "optimizer.beta=0.9", "data.batch_size=64"],
            ["model.beta", "optimizer.beta", "data.batch_size"],
            "batch_size=64,model.beta=2,optimizer.beta=0.9",
        ),
        # a group and a field named like it
        (["model=vae", "net.model=x"], ["model", "net.model"], "model=vae,net.model=x"),
        # excluded keys (seed, paths, threads) stay out, even when they vary ...
        (["model=ae", "seed=1", "threads=2"], ["model", "seed", "threads"], "model=ae"),
        # ... but name the job when nothing else varies
        (["seed=3", "trainer.max_epochs=2"], ["seed"], "seed=3"),
        (["seed=3", "threads=2", "x=1"], ["seed", "threads"], "seed=3,threads=2"),
        # nothing varies: a sweep of one job
        (["trainer.max_epochs=2"], [], ""),
        # `+`/`++` go, the value stays as typed
        (["+tag=exp/a", "++x.y='a b'"], ["tag", "x.y"], "tag=exp/a,y='a b'"),
        # a float a program wrote (an Optuna trial) with 4 significant digits; typed ones as typed
        (
            ["optimizer.lr=0.0025807388671386143", "model.beta=0.12345", "x=1.2345678901e-05"],
            ["optimizer.lr", "model.beta", "x"],
            "beta=0.12345,lr=0.002581,x=1.235e-05",
        ),
        (["a=1e-3", "b=100000000", "c=0.1000000000"], ["a", "b", "c"], "a=1e-3,b=100000000,c=0.1"),
    ],
)
def test_a_job_is_named_by_the_overrides_that_vary(overrides, varying, expected):
    excluded = ["seed", "threads"]
    assert varying_overrides(overrides, varying, excluded) == expected


def sweep_job_names(overrides: list[str], monkeypatch) -> list[str]:
    """Each job folder's name in `aelab-train -m <overrides>`: RecordSweep's plan from the sweep's
    config, then `hydra.sweep.subdir` of each job's own config, as Hydra's launchers read it."""
    parser = OverridesParser.create()
    fixed = [o for o in overrides if not parser.parse_override(o).is_sweep_override()]
    sweep_cfg = compose_with_hydra(fixed)
    with open_dict(sweep_cfg):
        sweep_cfg.hydra.overrides.task = overrides
    monkeypatch.setenv(SWEEP_ENV, "")  # restored after the test
    RecordSweep().on_multirun_start(sweep_cfg)
    names = []
    for num, job in enumerate(sweep_jobs(overrides)):
        cfg = compose_with_hydra(job)
        with open_dict(cfg):
            cfg.hydra.job.num = num
        HydraConfig.instance().set_config(cfg)
        names.append(cfg.hydra.sweep.subdir)
    return names


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (  # the issue's command
            ["model=ae,vae", "model.latent_dim=2,16", "trainer.max_epochs=2"]
            + ["++trainer.limit_train_batches=200"],
            [
                "0_latent_dim=2,model=ae",
                "1_latent_dim=16,model=ae",
                "2_latent_dim=2,model=vae",
                "3_latent_dim=16,model=vae",
            ],
        ),
        (["seed=0,1,2", "trainer.max_epochs=2"], ["0_seed=0", "1_seed=1", "2_seed=2"]),
        (
            ["model=ae,vae", "seed=0,1"],
            ["0_model=ae,seed=0", "1_model=ae,seed=1", "2_model=vae,seed=0", "3_model=vae,seed=1"],
        ),
        (  # a varying seed names the jobs too: no two names look alike
            ["model=vae", "model.beta=1,0.5", "seed=0,1"],
            ["0_beta=1,seed=0", "1_beta=1,seed=1", "2_beta=0.5,seed=0", "3_beta=0.5,seed=1"],
        ),
        (["model=vae", "model.beta=1,0.5", "seed=3"], ["0_beta=1", "1_beta=0.5"]),
        (  # a preset's sweep, its model fixed on the command line: only the size varies
            ["experiment=latent_sweep", "model=vae", "model.latent_dim=2,8"],
            ["0_latent_dim=2", "1_latent_dim=8"],
        ),
        (  # the baseline run is what makes noise_kind vary here
            ["experiment=noise_sweep", "noise_kind=masking", "noise_level=0.1,0.2"],
            [
                "0_noise_kind=none,noise_level=0",
                "1_noise_kind=masking,noise_level=0.1",
                "2_noise_kind=masking,noise_level=0.2",
            ],
        ),
        (
            ["model=vae", "model.beta=1,4", "+optimizer.beta=0.5"],
            ["0_beta=1", "1_beta=4"],
        ),
        (
            ["model=vae", "model.beta=1,4", "+optimizer.beta=0.5,0.9"],
            [
                "0_model.beta=1,optimizer.beta=0.5",
                "1_model.beta=1,optimizer.beta=0.9",
                "2_model.beta=4,optimizer.beta=0.5",
                "3_model.beta=4,optimizer.beta=0.9",
            ],
        ),
        (["+tag=exp/a,exp/b", "threads=1"], ["0_tag=exp%2Fa", "1_tag=exp%2Fb"]),
        # read as typed: an interpolation only a job could resolve does not stop the sweep
        (["+tag='${nowhere}',b"], ["0_tag=%27%24%7Bnowhere%7D%27", "1_tag=b"]),
    ],
)
def test_hydra_names_sweep_jobs_by_what_varies(overrides, expected, monkeypatch):
    assert sweep_job_names(overrides, monkeypatch) == expected


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_preset_names_its_jobs_uniquely_by_its_params(experiment, monkeypatch):
    names = sweep_job_names([f"experiment={experiment}"], monkeypatch)
    assert len(set(names)) == len(names) > 1
    hydra = compose_with_hydra([f"experiment={experiment}"]).hydra
    # job names leave out the excluded keys (the seed) when something else varies, and a key's
    # `+` (added keys are named by the key itself)
    excluded = set(hydra.job.config.override_dirname.exclude_keys)
    shown = {k.lstrip("+").rsplit(".", 1)[-1] for k in hydra.sweeper.params if k not in excluded}
    for num, name in enumerate(names):
        head, items = name.split("_", 1)
        assert head == str(num) and len(name) <= JOB_NAME_MAX_BYTES
        assert {item.split("=")[0] for item in items.split(",") if "=" in item} == shown


def test_the_job_count_of_each_sweeper():
    basic = OmegaConf.to_container(compose_with_hydra([]).hydra.sweeper)
    assert _job_count(["model=ae,vae", "model.latent_dim=2,16", "x=1"], basic) == 4
    cfg = compose_with_hydra(["experiment=noise_sweep"])
    noise = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert _job_count([], noise) == 1 + 2 * 8  # the baseline once
    assert _job_count(["seed=0,1"], noise) == 2 * (1 + 2 * 8)
    cfg = compose_with_hydra(["hparams_search=vae_optuna", "hydra.sweeper.n_trials=7"])
    assert _job_count([], OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)) == 7
    assert _job_count(["model=glob(*)"], basic) is None  # needs Hydra's config loader
    assert _job_count([], {"_target_": "collections.OrderedDict"}) is None


def test_a_progress_line_says_which_job_its_figures_and_time(tmp_path):
    job = tmp_path / "2_latent_dim=2,model=vae"
    job.mkdir()
    metrics = {"status": "completed", "val/loss": 45.123456, "test/loss": 44.98, "test/psnr": 9.0}
    (job / "metrics.json").write_text(json.dumps(metrics))
    assert progress_line(2, 8, job, 12.34) == (
        "job 3 of 8: 2_latent_dim=2,model=vae  val/loss 45.12  test/loss 44.98  (12.3 s)"
    )
    (job / "metrics.json").write_text(json.dumps({"status": "completed", "test/psnr": 9.0}))
    assert (
        progress_line(2, 8, job, 1.0) == "job 3 of 8: 2_latent_dim=2,model=vae  completed  (1.0 s)"
    )
    (job / "metrics.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    assert progress_line(2, None, job, None) == "job 3: 2_latent_dim=2,model=vae  failed: boom"
    (job / "metrics.json").unlink()
    assert progress_line(0, 1, job, 0.5).endswith("failed: no metrics.json  (0.5 s)")


def test_resume_true_still_finds_a_single_run(tmp_path, monkeypatch):
    """A single run's folder does not come from the sweep's job names, plan set or not."""
    monkeypatch.setenv("AELAB_ROOT", str(tmp_path))
    monkeypatch.setenv(SWEEP_ENV, json.dumps({"varying": ["model"], "jobs": 2}))
    run = tmp_path / "outputs" / "runs" / "2030-01-01" / "10-00-00_a_train"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- model=vae\n- trainer.max_epochs=2\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    cfg = compose_with_hydra(["model=vae", "trainer.max_epochs=2", "resume=true"])
    HydraConfig.instance().set_config(cfg)
    assert Path(cfg.hydra.run.dir) == run
    cfg = compose_with_hydra(["model=ae", "trainer.max_epochs=2", "resume=true"])
    HydraConfig.instance().set_config(cfg)
    assert Path(cfg.hydra.run.dir).parent.parent == tmp_path / "outputs" / "runs"
    assert Path(cfg.hydra.run.dir) != run


# --- a sweep says where it is ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.mnist
def test_a_sweep_names_jobs_by_what_varies_and_says_where_it_is(  # noqa: F811 - the fixtures
    tiny_sweep,  # noqa: F811
    tiny_sweep_stdout,  # noqa: F811
):
    """The basic launcher: `-m model=ae,vae model.latent_dim=2,4` plus TINY, the same in every
    job; a line as each job ends, then the report's table and where summary.md is."""
    jobs = sorted(
        (d for d in tiny_sweep.iterdir() if (d / ".hydra").is_dir()), key=lambda d: d.name
    )
    assert [d.name for d in jobs] == [
        "0_latent_dim=2,model=ae",
        "1_latent_dim=4,model=ae",
        "2_latent_dim=2,model=vae",
        "3_latent_dim=4,model=vae",
    ]
    for num, job in enumerate(jobs):
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        model = "ae" if config.model._target_.endswith("Autoencoder") else "vae"
        assert job.name == f"{num}_latent_dim={config.model.latent_dim},model={model}"
        assert_progress_line(tiny_sweep_stdout, num, 4, job)
    # the basic launcher runs jobs in order: the lines come in order
    starts = [tiny_sweep_stdout.index(f"job {n + 1} of 4: ") for n in range(4)]
    assert starts == sorted(starts)
    assert_headline_table(tiny_sweep_stdout, tiny_sweep)


# --- an Optuna search with no finite objective (issue 22 items 7 and 13a) ----------------------


def _optuna_search(tmp_path, mnist_dir, *extra):
    return run_sweep_streams(
        tmp_path,
        mnist_dir,
        "hparams_search=vae_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=1",
        *TINY,
        "threads=1",
        *extra,
        returncode=1,
    )


@pytest.mark.slow
@pytest.mark.mnist
def test_an_optuna_search_whose_jobs_never_validate_ends_with_its_report_and_one_line(
    tmp_path, mnist_dir
):
    # Lightning#6791: validation every 2nd epoch of 1; Hydra's sweeper raised "No trials are
    # completed yet" (a traceback, exit 1, no summary.md)
    sweep, stdout, stderr = _optuna_search(tmp_path, mnist_dir, "trainer.check_val_every_n_epoch=2")
    assert "Traceback" not in stderr and "No trials are completed" not in stdout + stderr
    assert stderr.strip().splitlines()[-1] == (
        "aelab-train: error: no job logged a finite val/loss, the objective the sweep minimises "
        "(2 jobs; a job that never validates has none: check trainer.check_val_every_n_epoch, "
        "trainer.limit_val_batches and the training budget)"
    )
    assert (sweep / "summary.md").is_file() and not (sweep / "optimization_results.yaml").exists()
    for job in (d for d in sweep.iterdir() if (d / ".hydra").is_dir()):
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "completed" and "val/loss" not in metrics
    assert_headline_table(stdout, sweep)


@pytest.mark.slow
@pytest.mark.mnist
def test_an_optuna_search_with_no_finite_trial_names_no_best_trial(tmp_path, mnist_dir):
    # every trial fails (objective inf): Hydra's sweeper logged "Best value: inf" and the report
    # a "Best trial: ...; validation loss inf"
    fail = ["+callbacks.boom._target_=helpers.sweeps.FailOnFitStart", "+callbacks.boom.fail=true"]
    sweep, stdout, stderr = _optuna_search(tmp_path, mnist_dir, *fail)
    assert "Best value" not in stdout + stderr and "Best parameters" not in stdout + stderr
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_value == math.inf
    summary = (sweep / "summary.md").read_text()
    assert "No trial reached a finite validation loss: the study has no best trial." in summary
    assert "Best trial" not in summary
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("aelab-train: error: 2 of 2 jobs did not complete"), last


def test_a_study_continued_from_a_storage_counts_its_earlier_finite_trials(tmp_path):
    from hydra_plugins.aelab_sweeper.optuna_sweeper import _finite_trials

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert _finite_trials("s", storage) == 0  # no study yet
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask(), math.inf)  # a diverged trial
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # one that never validated
    assert _finite_trials("s", storage) == 0
    study.tell(study.ask(), 1.5)
    assert _finite_trials("s", storage) == 1
    assert _finite_trials("s", None) == 0  # in memory: nothing before this command
