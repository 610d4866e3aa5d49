"""aelab-report: on hand-made sweep folders (exact numbers, seeds, failures, every section) and
on a real tiny sweep."""

from __future__ import annotations

import copy
import csv
import functools
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.sweeps import tiny_sweep  # noqa: F401 - a fixture
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from aelab import CONFIG_DIR
from aelab.report import (
    group_jobs,
    job_dirs,
    load_sweep,
    main,
    plot_noise,
    report,
    sweep_variables,
)

PLOT_NAMES = {"recon_vs_latent.png", "rate_distortion.png", "psnr_vs_noise.png"}


@pytest.fixture(scope="module", autouse=True)
def hydra_configs():
    """Hydra set up once for the module: fake jobs compose their configs in milliseconds."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


@functools.cache
def composed(groups: tuple[str, ...]) -> DictConfig:
    return compose("train", overrides=list(groups))


def make_job(sweep: Path, num: int, overrides: list[str], metrics: dict | None) -> Path:
    """A job folder as `aelab-train -m` leaves it: the composed config (unresolved, as Hydra
    saves it) and metrics.json (None: the job has not finished). Configs are composed once per
    choice of config groups; values are set on a copy (composing every job is slow)."""
    job = sweep / f"{num}_{','.join(sorted(o for o in overrides if not o.startswith('seed')))}"
    pairs = [o.split("=", 1) for o in overrides]
    is_group = [(Path(CONFIG_DIR) / key).is_dir() for key, _ in pairs]
    cfg = copy.deepcopy(composed(tuple(o for o, g in zip(overrides, is_group, strict=True) if g)))
    for (key, value), group in zip(pairs, is_group, strict=True):
        if not group:
            OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def fake_metrics(model: str, latent: int, seed: int) -> dict:
    """Distinct, known numbers per job."""
    mse = 0.01 * latent + 0.1 * (model == "vae") + 0.001 * seed
    metrics = {"status": "completed", "test/recon_mse": mse, "test/psnr": 20 - latent - seed}
    if model == "vae":
        metrics.update({"test/kl": 3.0 * latent + seed, "test/recon": 100.0 - latent})
    return metrics


@pytest.fixture
def latent_sweep(tmp_path) -> Path:
    """model ae/vae x latent 2/8 x seed 0/1, plus one failed and one unfinished job."""
    sweep = tmp_path / "sweep"
    num = 0
    for model in ("ae", "vae"):
        for latent in (2, 8):
            for seed in (0, 1):
                overrides = [f"model={model}", f"model.latent_dim={latent}", f"seed={seed}"]
                make_job(sweep, num, overrides, fake_metrics(model, latent, seed))
                num += 1
    make_job(
        sweep,
        num,
        ["model=vae", "model.latent_dim=16", "seed=0"],
        {"status": "failed", "error": "RuntimeError: loss is nan at epoch 3"},
    )
    make_job(sweep, num + 1, ["model=vae", "model.latent_dim=16", "seed=1"], None)
    return sweep


def md_rows(summary: str) -> list[list[str]]:
    """The cells of the first table of summary.md."""
    lines = summary.split("\n\n| ", 1)[1].split("\n\n", 1)[0].splitlines()
    return [
        [c.strip() for c in line.strip("|").split("|")] for line in ["| " + lines[0], *lines[1:]]
    ]


def test_the_table_holds_each_jobs_numbers_over_seeds(latent_sweep):
    written = report(latent_sweep)
    assert {p.name for p in written} >= {"summary.csv", "summary.md", "recon_vs_latent.png"}
    assert not list(latent_sweep.glob(".summary*"))  # temp files renamed away

    rows = md_rows((latent_sweep / "summary.md").read_text())
    header, _, *body = rows
    assert header[:3] == ["model", "latent_dim", "n"]  # net/loss/beta follow the model: left out
    assert "seed" not in header and "net.hidden" not in header
    assert [r[:3] for r in body] == [
        ["AE", "2", "2"],
        ["AE", "8", "2"],
        ["VAE", "2", "2"],
        ["VAE", "8", "2"],
    ]  # sorted by the variables; the failed and unfinished VAE-16 jobs are not averaged in
    col = header.index("recon_mse")
    for (model, latent), row in zip(
        [("ae", 2), ("ae", 8), ("vae", 2), ("vae", 8)], body, strict=True
    ):
        values = [fake_metrics(model, latent, s)["test/recon_mse"] for s in (0, 1)]
        expected = f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"
        assert row[col] == expected
    kl = header.index("kl")
    assert body[0][kl] == "" and body[3][kl] == f"{statistics.fmean([24.0, 25.0]):.4g} ± 0.71"


def test_failed_and_unfinished_jobs_are_shown_with_their_error(latent_sweep):
    stopped = {"status": "interrupted", "step": 7, "resume": "aelab-train resume=/x"}
    make_job(latent_sweep, 10, ["model=ae", "model.latent_dim=16"], stopped)
    report(latent_sweep)
    summary = (latent_sweep / "summary.md").read_text()
    assert "11 jobs: 8 completed, 1 failed, 1 unfinished, 1 interrupted." in summary
    section = summary.split("## Jobs that did not complete", 1)[1]
    assert "| failed | RuntimeError: loss is nan at epoch 3 |" in section
    assert "| unfinished | no metrics.json" in section
    assert "| interrupted | to continue: aelab-train resume=/x |" in section

    with (latent_sweep / "summary.csv").open() as f:
        rows = {r["job"]: r for r in csv.DictReader(f)}
    assert len(rows) == 11
    failed = next(r for r in rows.values() if r["status"] == "failed")
    assert (
        failed["error"] == "RuntimeError: loss is nan at epoch 3" and failed["latent_dim"] == "16"
    )
    done = rows["0_model.latent_dim=2,model=ae"]
    assert float(done["test/recon_mse"]) == fake_metrics("ae", 2, 0)["test/recon_mse"]
    assert done["model"] == "AE" and done["seed"] == "0"


def test_a_beta_sweep_gets_the_rate_distortion_plane(tmp_path):
    sweep = tmp_path / "beta"
    for num, beta in enumerate((0.5, 1, 4)):
        make_job(
            sweep,
            num,
            ["model=vae", f"model.beta={beta}"],
            {"status": "completed", "test/kl": 30 / beta, "test/recon": 80 + 5 * beta},
        )
    names = {p.name for p in report(sweep)}
    assert "rate_distortion.png" in names and "recon_vs_latent.png" not in names
    header, _, *body = md_rows((sweep / "summary.md").read_text())
    assert [r[0] for r in body] == ["0.5", "1", "4"]
    assert [r[header.index("kl")] for r in body] == ["60", "30", "7.5"]
    assert [r[header.index("recon")] for r in body] == ["82.5", "85", "100"]


def test_a_noise_sweep_gets_psnr_against_the_noise_level(tmp_path):
    """experiment=noise_sweep: one clean-input baseline (noise none, level 0), then each kind's
    levels; the baseline starts every kind's PSNR curve."""
    sweep = tmp_path / "noise"
    baseline = ["experiment=noise_sweep", "noise_kind=none", "noise_level=0"]
    make_job(sweep, 0, baseline, {"status": "completed", "test/recon_mse": 0.01, "test/psnr": 21.0})
    num = 1
    psnr = {("gaussian", 0.3): 18.0, ("gaussian", 0.6): 15.0, ("masking", 0.3): 17.0}
    for (kind, level), value in psnr.items():
        metrics = {"status": "completed", "test/recon_mse": 0.02}
        metrics.update({"test/psnr": value, "test/psnr_noisy_input": value - 8})
        overrides = ["experiment=noise_sweep", f"noise_kind={kind}", f"noise_level={level}"]
        make_job(sweep, num, overrides, metrics)
        num += 1
    assert "psnr_vs_noise.png" in {p.name for p in report(sweep)}
    header, _, *body = md_rows((sweep / "summary.md").read_text())
    assert header[:2] == ["noise", "noise_level"]
    assert [r[:2] for r in body] == [
        ["gaussian", "0.3"],
        ["gaussian", "0.6"],
        ["masking", "0.3"],
        ["none", "0"],
    ]
    jobs = load_sweep(sweep)
    variables = sweep_variables(jobs)
    ax = plot_noise(group_jobs(jobs, variables), variables).axes[0]
    curves = {c.get_label(): c.lines[0].get_xydata().tolist() for c in ax.containers}
    assert curves == {
        "noise=gaussian: output": [[0.0, 21.0], [0.3, 18.0], [0.6, 15.0]],
        "noise=gaussian: noisy input": [[0.3, 10.0], [0.6, 7.0]],
        "noise=masking: output": [[0.0, 21.0], [0.3, 17.0]],
        "noise=masking: noisy input": [[0.3, 9.0]],
    }


def test_one_class_runs_get_the_anomaly_table(tmp_path):
    sweep = tmp_path / "anomaly"
    for num, digit in enumerate((0, 3)):
        make_job(
            sweep,
            num,
            ["model=ae", f"data.classes=[{digit}]"],
            {"status": "completed", "test/auroc": 0.9 + 0.01 * digit},
        )
    report(sweep)
    section = (sweep / "summary.md").read_text().split("## One-class anomaly detection", 1)[1]
    try:
        from aelab.metrics.anomaly import DCAE_BASELINE_AUROC
    except ImportError:
        DCAE_BASELINE_AUROC = {}
    baseline = DCAE_BASELINE_AUROC.get(3)
    assert f"| [3] | 1 | 93.0 | {'' if baseline is None else f'{baseline:.4g}'} |" in section


def test_an_optuna_study_is_summarised(latent_sweep):
    OmegaConf.save(
        {
            "name": "optuna",
            "best_params": {"optimizer.lr": 0.002, "model.latent_dim": 8},
            "best_value": 91.5,
        },
        latent_sweep / "optimization_results.yaml",
    )
    report(latent_sweep)
    summary = (latent_sweep / "summary.md").read_text()
    assert "Best trial: optimizer.lr=0.002, model.latent_dim=8; validation loss 91.5." in summary


def test_an_empty_or_non_sweep_folder_gets_one_clear_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    run = tmp_path / "single_run"
    (run / ".hydra").mkdir(parents=True)
    for folder, says in (
        (tmp_path / "empty", "no sweep jobs in"),
        (run, "it is a single run"),
        (tmp_path / "missing", "is not a folder"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([str(folder)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("aelab-report: error: ") and says in err and err.count("\n") == 1
    assert not list((tmp_path / "empty").iterdir())


def test_two_sweeps_give_one_report_of_all_their_jobs(tmp_path, capsys):
    """`aelab-report outputs/multiruns/*/*`: two β sweeps of seeds 0 and 1, the second with
    β = 4 only; one table, each β averaged over the jobs of both sweeps."""
    multiruns = tmp_path / "outputs" / "multiruns" / "2030-01-01"
    recon = {(1, 0): 50.0, (1, 1): 52.0, (4, 0): 60.0, (4, 1): 61.0, (4, 2): 65.0}
    first, second = multiruns / "10-00-00_a_train", multiruns / "11-00-00_b_train"
    runs = [(first, 1, 0), (first, 1, 1), (first, 4, 0), (first, 4, 1), (second, 4, 2)]
    for num, (sweep, beta, seed) in enumerate(runs):
        metrics = {"status": "completed", "test/recon": recon[beta, seed], "test/kl": 1.0 * beta}
        make_job(sweep, num, ["model=vae", f"model.beta={beta}", f"seed={seed}"], metrics)
    main([str(first), str(second), str(first)])  # a folder given twice counts once
    out = capsys.readouterr().out
    (report_dir,) = (tmp_path / "outputs" / "reports").iterdir()  # beside multiruns/, not in it
    assert out.strip().splitlines()[-1].endswith(f" in {report_dir}")
    header, _, *body = md_rows((report_dir / "summary.md").read_text())
    assert header[:2] == ["beta", "n"]
    col = header.index("recon")
    ones, fours = [50.0, 52.0], [60.0, 61.0, 65.0]
    assert [r[:2] for r in body] == [["1", "2"], ["4", "3"]]  # β = 4 from both sweeps
    assert body[0][col] == f"{statistics.fmean(ones):.4g} ± {statistics.stdev(ones):.2g}"
    assert body[1][col] == f"{statistics.fmean(fours):.4g} ± {statistics.stdev(fours):.2g}"
    with open(report_dir / "summary.csv", newline="") as handle:
        names = [row["job"] for row in csv.DictReader(handle)]
    # each job named by its sweep too: both sweeps have a job 0...
    expected = [f"{sweep.name}/{job.name}" for sweep in (first, second) for job in job_dirs(sweep)]
    assert names == expected and len(set(names)) == len(runs)
    # ... and the sweeps themselves are left as they were
    assert not list(first.glob("summary*")) and not list(second.glob("summary*"))


def test_jobs_are_read_in_job_order(tmp_path):
    for num in (10, 2, 1):
        (tmp_path / f"{num}_x" / ".hydra").mkdir(parents=True)
        (tmp_path / f"{num}_x" / ".hydra" / "config.yaml").write_text("{}")
    assert [d.name for d in job_dirs(tmp_path)] == ["1_x", "2_x", "10_x"]


@pytest.mark.slow
@pytest.mark.mnist
def test_report_of_a_real_sweep(tiny_sweep):  # noqa: F811 - the fixture
    outputs = ("summary.csv", "summary.md", "recon_vs_latent.png", "reconstructions.png")
    for name in outputs:  # written when the sweep ended (WriteReport); made again below
        (tiny_sweep / name).unlink()
    done = subprocess.run(
        [sys.executable, "-m", "aelab.report", str(tiny_sweep)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for name in outputs:
        assert (tiny_sweep / name).stat().st_size > 0, name

    header, _, *body = md_rows((tiny_sweep / "summary.md").read_text())
    assert header[:3] == ["model", "latent_dim", "n"] and len(body) == 4
    col = header.index("recon_mse")
    for row in body:  # the jobs are named by the swept variables, the report's too
        (job,) = [
            d
            for d in tiny_sweep.iterdir()
            if (d / ".hydra").is_dir()
            and d.name.split("_", 1)[1] == f"latent_dim={row[1]},model={row[0].lower()}"
        ]
        metrics = json.loads((job / "metrics.json").read_text())
        assert row[2] == "1" and row[col] == f"{metrics['test/recon_mse']:.4g}"


def test_a_beta_sweep_with_generation_figures_gets_fid_against_beta(tmp_path):
    sweep = tmp_path / "beta_fid"
    for num, beta in enumerate((0.5, 1, 4)):
        metrics = {"status": "completed", "test/kl": 30 / beta, "test/recon": 80 + 5 * beta,
                   "test/gen/prior/fid": 10 * beta, "test/gen/floor/fid": 1.0}  # fmt: skip
        make_job(sweep, num, ["model=vae", f"model.beta={beta}"], metrics)
    names = {p.name for p in report(sweep)}
    assert {"rate_distortion.png", "fid_vs_beta.png"} <= names
    assert "fid_vs_latent.png" not in names  # not a latent sweep
