"""`aelab.load_sweep`: a sweep folder as one pandas DataFrame (rows, columns, values), the report's
table against a pandas groupby computed here, and a folder with no jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import aelab
from aelab.report import main
from aelab.report.cli import report
from aelab.report.load import NotASweepError

# (folder, model, latent_dim, seed, metrics.json or None: the job has not finished)
JOBS = [
    ("0_latent_dim=2,model=ae", "Autoencoder", 2, 0, {"test/recon_mse": 0.5, "val/loss": 9.0}),
    ("1_latent_dim=2,model=ae", "Autoencoder", 2, 1, {"test/recon_mse": 0.25, "val/loss": 8.0}),
    ("2_latent_dim=8,model=vae", "VAE", 8, 0, {"test/recon_mse": 0.125, "test/kl": 3.0}),
    ("3_latent_dim=8,model=vae", "VAE", 8, 1, {"test/recon_mse": 0.0625, "test/kl": 5.0}),
    ("4_latent_dim=8,model=vae", "VAE", 8, 2, {"status": "failed", "error": "loss is nan"}),
    ("10_latent_dim=2,model=vae", "VAE", 2, 0, None),
]


def job_config(model: str, latent_dim: int, seed: int) -> dict:
    """A job's stored config: the groups the HParams row reads, as Hydra saves them."""
    fields = {"latent_dim": latent_dim, **({"beta": 4.0} if model == "VAE" else {})}
    return {
        "model": {"_target_": f"aelab.models.{model}", **fields},
        "net": {"_target_": "aelab.nets.MLPNet", "hidden": [64]},
        "noise": {"_target_": "aelab.noise.Noise"},
        "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.001},
        "data": {"batch_size": 32, "binarize": "none", "classes": None},
        "trainer": {"max_epochs": 1, "max_steps": -1},
        "seed": seed,
    }


@pytest.fixture
def sweep(tmp_path) -> Path:
    folder = tmp_path / "sweep"
    for name, model, latent, seed, metrics in JOBS:
        job = folder / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(job_config(model, latent, seed)))
        if metrics is not None:
            (job / "metrics.json").write_text(json.dumps({"status": "completed", **metrics}))
    return folder


def test_one_row_per_job_with_its_values_status_and_every_metric(sweep):
    jobs = aelab.load_sweep(sweep)
    assert list(jobs["job"]) == [j[0] for j in JOBS]  # job order: 10 after 4
    assert list(jobs["status"]) == ["completed"] * 4 + ["failed", "unfinished"]
    assert jobs.loc[4, "error"] == "loss is nan"
    assert jobs.loc[5, "error"] == "no metrics.json: still running, or stopped"
    assert list(jobs["model"]) == ["AE", "AE", "VAE", "VAE", "VAE", "VAE"]
    assert list(jobs["latent_dim"]) == [2, 2, 8, 8, 8, 2]
    assert list(jobs["seed"]) == [0, 1, 0, 1, 2, 0]
    assert list(jobs["beta"]) == [None, None, 4.0, 4.0, 4.0, 4.0]  # an AE has none
    assert list(jobs.columns[:3]) == ["job", "status", "error"]
    assert jobs.attrs["metrics"] == ["test/kl", "test/recon_mse", "val/loss"]
    assert {"model", "latent_dim", "beta", "noise", "lr", "seed"} <= set(jobs.attrs["hparams"])
    assert jobs["test/recon_mse"].tolist()[:4] == [0.5, 0.25, 0.125, 0.0625]
    assert jobs["test/recon_mse"].iloc[4:].isna().all()
    assert jobs["test/kl"].tolist()[2:4] == [3.0, 5.0] and jobs["test/kl"].iloc[:2].isna().all()
    assert jobs["val/loss"].dtype == float
    assert [Path(p).name for p in jobs["path"]] == [j[0] for j in JOBS]
    assert jobs.attrs["sweep"] == sweep


def test_the_reports_table_is_a_pandas_groupby_over_seeds(sweep):
    report(sweep)
    lines = (sweep / "summary.md").read_text().split("\n\n| ", 1)[1].split("\n\n", 1)[0]
    cells = [[c.strip() for c in ln.strip("| ").split(" | ")] for ln in lines.split("\n")]
    header, _, *rows = cells
    # the same figures, grouped here by pandas from the numbers written above
    frame = pd.DataFrame(
        [(m, d, x["test/recon_mse"]) for _, m, d, _, x in JOBS if x and "status" not in x],
        columns=["model", "latent_dim", "mse"],
    )
    stats = frame.groupby(["model", "latent_dim"])["mse"].agg(["mean", "std", "count"])
    expected = [
        [{"Autoencoder": "AE"}.get(m, m), str(d), str(int(n)), f"{mean:.4g} ± {std:.2g}"]
        for (m, d), (mean, std, n) in stats.iterrows()
    ]
    assert header[:4] == ["model", "latent_dim", "n", "recon_mse"]
    assert [r[:4] for r in rows] == expected
    assert expected[0][3] == "0.375 ± 0.18"  # mean and std of 0.5, 0.25, by hand


def test_a_job_with_a_corrupt_config_is_reported_unreadable_and_the_others_are_reported(
    sweep, capsys
):
    bad = sweep / JOBS[1][0]
    (bad / ".hydra" / "config.yaml").write_text("model: {_target_: [unclosed\n")
    jobs = aelab.load_sweep(sweep)
    assert list(jobs["job"]) == [j[0] for j in JOBS]
    row = jobs[jobs["job"] == bad.name].iloc[0]
    assert row["status"] == "failed"
    assert row["error"].startswith("unreadable .hydra/config.yaml: ParserError: ")
    assert "\n" not in row["error"] and row["model"] is None
    assert list(jobs["status"]) == ["completed", "failed", "completed", "completed", "failed",
                                    "unfinished"]  # fmt: skip
    # the others keep their rows and figures
    assert jobs[jobs["job"] == JOBS[0][0]].iloc[0]["test/recon_mse"] == 0.5

    main([str(sweep)])
    out, err = capsys.readouterr()
    assert out.startswith("aelab-report: wrote summary.csv")
    assert err.strip().splitlines() == [f"aelab-report: warning: {bad.name}: {row['error']}"]
    summary = (sweep / "summary.csv").read_text()
    assert JOBS[0][0] in summary and bad.name in summary


def test_a_folder_with_no_jobs_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    for folder in (empty, tmp_path / "missing"):
        with pytest.raises(NotASweepError, match=str(folder)) as info:
            aelab.load_sweep(folder)
        assert isinstance(info.value, ValueError) and info.value.folder == folder
        with pytest.raises(SystemExit) as exit_info:
            main([str(folder)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("aelab-report: error: ") and err.count("\n") == 1
    assert not list(empty.iterdir())


def test_the_report_imports_no_lightning(sweep):
    code = (
        "import sys\nfrom aelab.report import main\n"
        f"main([{str(sweep)!r}])\n"
        "print('lightning' if 'pytorch_lightning' in sys.modules else 'no lightning')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "no lightning"
    assert (sweep / "summary.csv").is_file()


@pytest.mark.parametrize("written", [None, {"status": "failed", "error": "boom"}, {}])
def test_a_sweep_without_any_figure_still_gets_its_report(tmp_path, written):
    """No job wrote a figure (still running, failed early, or completed without test): the
    DataFrame has no metric column and the report its table of jobs without figures."""
    sweep = tmp_path / "sweep"
    for num, latent in enumerate((2, 8)):
        job = sweep / f"{num}_latent_dim={latent}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(job_config("VAE", latent, 0)))
        if written is not None:
            (job / "metrics.json").write_text(json.dumps(written))
    jobs = aelab.load_sweep(sweep)
    assert jobs.attrs["metrics"] == [] and len(jobs) == 2
    names = {p.name for p in report(sweep)}
    assert names == {"summary.csv", "summary.md"}
    summary = (sweep / "summary.md").read_text()
    status = jobs["status"].iloc[0]
    assert f"2 jobs: 2 {status}. Swept: latent_dim; seeds: 0." in summary
    rows = [] if status != "completed" else ["| 2 | 1 |", "| 8 | 1 |"]
    assert all(row in summary for row in rows)


def _tagged_sweep(folder: Path, tags: list[str]) -> Path:
    """Jobs of one config but for a `+tag=` override, which is no HParams field, as Hydra
    stores a job's overrides (one job's overrides.yaml per tag; seeds 0 and 1 of each)."""
    for i, (tag, seed) in enumerate((t, s) for t in tags for s in (0, 1)):
        job = folder / f"{i}_tag={i}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(job_config("VAE", 2, seed)))
        overrides = [f"+tag={tag}", f"seed={seed}", "trainer.max_epochs=1"]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (job / "metrics.json").write_text(json.dumps({"test/recon_mse": 0.5 + i}))
    return folder


def test_jobs_told_apart_only_by_an_override_outside_the_hparams_get_one_row_each(tmp_path):
    # issue 22 item 6: `-m "+tag='é',\"'日本'\""` gave two job folders but one summary row
    sweep = _tagged_sweep(tmp_path / "sweep", ["'é'", "\"'日本'\"", "a/b c"])
    jobs = aelab.load_sweep(sweep)
    assert list(jobs["tag"]) == ["é", "é", "'日本'", "'日本'", "a/b c", "a/b c"]
    assert aelab.report.sweep_variables(jobs) == ["tag"]  # not seed, not the shared max_epochs
    report(sweep)
    header, rows = _summary_table(sweep)
    assert header[:2] == ["tag", "n"]
    assert sorted(r[:2] for r in rows) == sorted([["é", "2"], ["'日本'", "2"], ["a/b c", "2"]])


def _summary_table(sweep: Path) -> tuple[list[str], list[list[str]]]:
    """summary.md's main table: header and rows, as cells."""
    text = (sweep / "summary.md").read_text(encoding="utf-8")
    lines = text.split("\n\n| ", 1)[1].split("\n\n", 1)[0]
    cells = [[c.strip() for c in ln.strip("| ").split(" | ")] for ln in lines.split("\n")]
    return cells[0], cells[2:]


def test_an_override_the_hparams_already_tell_apart_is_no_extra_variable(sweep):
    # `model.latent_dim=2,8` is the HParams field latent_dim: it must not be a second column
    for job in sweep.iterdir():
        dim = job.name.split("latent_dim=")[1].split(",")[0]
        overrides = [f"model.latent_dim={dim}", f"model={job.name.rsplit('=', 1)[1]}"]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    jobs = aelab.load_sweep(sweep)
    assert list(jobs["model.latent_dim"]) == [2, 2, 8, 8, 8, 2]
    assert aelab.report.sweep_variables(jobs) == ["model", "latent_dim"]


@pytest.mark.slow
@pytest.mark.mnist
def test_a_real_sweep_over_unicode_tags_reports_one_row_per_tag(tmp_path, mnist_dir):
    from helpers.sweeps import TINY, run_sweep

    sweep, out = run_sweep(tmp_path, mnist_dir, "+tag='é',\"'日本'\"", *TINY, "threads=1")
    assert len([d for d in sweep.iterdir() if (d / "metrics.json").is_file()]) == 2
    header, rows = _summary_table(sweep)
    assert header[:2] == ["tag", "n"], out[-2000:]
    assert sorted(r[:2] for r in rows) == sorted([["é", "1"], ["'日本'", "1"]])


def test_jobs_that_differ_only_in_their_seed_are_one_group():
    """A sweep over seeds alone has no swept variable: its jobs form one group (numbered 0),
    not an error from a row-less itertuples."""
    import pandas as pd

    from aelab.report.groups import group_order

    jobs = pd.DataFrame({"seed": [1, 2, 3], "val/loss": [1.0, 2.0, 3.0]}, index=[4, 5, 6])
    number, keys = group_order(jobs, [])
    assert number.tolist() == [0, 0, 0] and number.index.tolist() == [4, 5, 6]
    assert keys == [()]
