"""What a user sees in TensorBoard: a real `tensorboard` server over a real tiny sweep and over
event files written by aelab's own code, checked through its HTTP data API (runs, scalar tags,
images, the HParams experiment and sessions, the custom-scalars layout)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import compose_cfg
from google.protobuf.json_format import MessageToDict
from helpers.sweeps import tiny_sweep  # noqa: F401 - a fixture
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import metadata as hp_metadata

from aelab.board import logger as board
from aelab.board import summaries as sweep_board
from aelab.report import HEADLINE, report
from aelab.run.record import hparams_row
from aelab.train import check_trainer

SWEPT = {"model", "latent_dim", "beta", "noise", "noise_level", "lr", "seed"}
SHARED_SCALARS = {"train/loss", "val/loss", "test/loss", "test/recon_mse", "test/psnr"}
# the metric columns there may be: nothing else (no epoch, lr-*, flag or per-unit column)
METRIC_COLUMNS = {"val/loss", "test/loss", *HEADLINE}
SESSIONS = {
    "experimentName": "",
    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
    "colParams": [],
    "startIndex": 0,
    "sliceSize": 100,
}


def test_the_logger_target_of_stored_configs_still_resolves():
    """Every run's stored config names `aelab.board.TensorBoardLogger` (aelab-eval and a resume
    instantiate it): the package's lazy name is the logger class itself."""
    from aelab.checks import locate

    target = OmegaConf.load(Path(__file__).parents[1] / "conf/logger/tensorboard.yaml")
    assert target.tensorboard._target_ == "aelab.board.TensorBoardLogger"
    assert locate("aelab.board.TensorBoardLogger") is board.TensorBoardLogger


def test_hparams_row_is_flat_readable_and_pathless(make_cfg):
    from omegaconf import OmegaConf

    rows = {
        o: hparams_row(OmegaConf.to_container(make_cfg(o, "optimizer=sgd"), resolve=True))
        for o in ("model=ae", "model=vae", "model=dae")
    }
    for row in rows.values():
        assert all(isinstance(v, str | int | float) for v in row.values())
        assert not any("dir" in k or "path" in k for k in row)
        assert {"model", "latent_dim", "noise", "noise_level", "lr", "seed"} <= set(row)
        assert row["optimizer"] == "SGD" and row["optimizer.momentum"] == 0.9
    assert rows["model=vae"]["beta"] == 1.0 and "beta" not in rows["model=ae"]
    assert rows["model=vae"]["net.hidden"] == "[400, 200, 100]"
    assert (rows["model=dae"]["noise"], rows["model=dae"]["noise_level"]) == ("gaussian", 0.3)
    assert (rows["model=ae"]["model"], rows["model=ae"]["noise"]) == ("AE", "none")
    assert rows["model=ae"]["max_epochs"] == 10 and "max_steps" not in rows["model=ae"]


@pytest.mark.parametrize("max_epochs", ["-1", "null"])
def test_hparams_row_of_a_step_based_run(max_epochs, make_cfg):
    from omegaconf import OmegaConf

    cfg = make_cfg(f"trainer.max_epochs={max_epochs}", "trainer.max_steps=30")
    check_trainer(cfg.trainer)  # no epoch limit, ended by max_steps: allowed
    row = hparams_row(OmegaConf.to_container(cfg, resolve=True))
    assert (row["max_epochs"], row["max_steps"]) == (-1, 30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serve(logdir: Path, log: Path):
    """A `tensorboard` server on a free loopback port over `logdir`; its base URL. Stopped on
    exit (terminate, then kill after 30 s)."""
    exe = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    assert exe, "the tensorboard command is not installed beside python"
    port = free_port()
    with log.open("w") as out:
        server = subprocess.Popen(
            [exe, "--logdir", str(logdir), "--port", str(port), "--host", "127.0.0.1"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until(ask, ready, server: subprocess.Popen, log: Path, timeout: float = 120.0):
    """Poll `ask()` until `ready(answer)`: the server loads event files in the background."""
    deadline, answer = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-2000:]
        try:
            answer = ask()
        except OSError:  # not listening yet
            answer = None
        if answer is not None and ready(answer):
            return answer
        time.sleep(1)
    raise AssertionError(f"tensorboard served {answer} after {timeout} s")


def loaded(base: str, server: subprocess.Popen, log: Path, runs: set[str], sessions: int):
    """The runs, the experiment and the session groups once the server has them all."""
    wait_until(lambda: get(f"{base}/data/runs"), lambda r: runs <= set(r), server, log)

    def ask():
        experiment = get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        groups = get(f"{base}/data/plugin/hparams/session_groups", SESSIONS)["sessionGroups"]
        return experiment, groups

    def ready(answer):
        experiment, groups = answer
        full = all(len(g["sessions"][0]["metricValues"]) > 0 for g in groups)
        return experiment.get("metricInfos") and len(groups) == sessions and full

    return wait_until(ask, ready, server, log)


def events(folder: Path) -> list:
    """Every (step, summary value) in the event files of a folder (not its subfolders)."""
    return [
        (event.step, value)
        for path in sorted(folder.glob("*tfevents*"))
        for event in EventFileLoader(str(path)).Load()
        for value in event.summary.value
    ]


def experiment_of(folder: Path) -> dict:
    """The HParams experiment summary written in a folder: hparam names, differs, metrics."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    (content,) = [
        v.metadata.plugin_data.content for _, v in events(folder)
        if v.tag == hp_metadata.EXPERIMENT_TAG
    ]  # fmt: skip
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    return {
        "hparams": [h.name for h in experiment.hparam_infos],
        "differs": {h.name for h in experiment.hparam_infos if h.differs},
        "metrics": [m.name.tag for m in experiment.metric_infos],
    }


def check_layout(layout: dict, parts: set[str]) -> None:
    """One category, one multiline chart per loss part, whose regex matches exactly the train
    and val scalars of that part."""
    (category,) = layout["category"]
    charts = {c["title"]: c["multiline"]["tag"] for c in category["chart"]}
    assert set(charts) == parts
    tags = ["train/loss", "val/loss", "test/loss", "train/recon", "val/recon", "val/recon_mse"]
    tags += ["train/kl", "val/kl", "test/kl", "val/kl_per_unit"]
    for part, (regex,) in charts.items():
        assert [t for t in tags if re.search(regex, t)] == [f"train/{part}", f"val/{part}"]


# --- the logger and the writers, on their own -------------------------------------------------


def test_per_unit_figures_become_one_image_and_flags_no_scalar(tmp_path):
    logger = board.TensorBoardLogger(str(tmp_path), name="tb", version="")
    per_unit = {f"test/kl_dim_{j}": 0.5 / (j + 1) for j in reversed(range(12))}
    logger.log_metrics({"val/loss": 3.0, "val/recon": 2.5, "val/psnr": 12.0}, step=5)
    logger.log_metrics({"test/loss": 2.0, "test/likelihood_on_binarized": 1.0, **per_unit}, 9)
    logger.finalize("success")
    written = events(tmp_path / "tb")
    scalars = {v.tag for _, v in written if v.metadata.plugin_data.plugin_name == "scalars"}
    assert scalars == {"val/loss", "val/recon", "val/psnr", "test/loss"}
    images = [(s, v) for s, v in written if v.metadata.plugin_data.plugin_name == "images"]
    assert [(s, v.tag) for s, v in images] == [(9, "test/kl_per_unit")]
    # an AE's parts: the loss and recon charts, no kl chart
    (layout,) = [v for _, v in written if v.tag == "custom_scalars__config__"]
    proto = layout_pb2.Layout.FromString(layout.tensor.string_val[0])
    check_layout(MessageToDict(proto), {"loss", "recon"})
    # units in their order (given backwards; 10 and 11 after 2, not after 1), each its value
    _, units = board.split_metrics(per_unit)
    assert units == {"test/kl_per_unit": [0.5 / (j + 1) for j in range(12)]}


def test_a_single_run_gets_its_own_columns_and_its_flag_as_an_hparam(tmp_path, make_cfg):
    cfg = make_cfg("model=vae")
    row = hparams_row(OmegaConf.to_container(cfg, resolve=True))
    metrics = {"val/loss": 2.0, "test/loss": 1.0, "test/kl": 0.5, "test/kl_dim_0": 0.5}
    metrics |= {"test/likelihood_on_binarized": 0.0, "test/recon_bce": 9.0}
    row = sweep_board.hparams_with_flags(row, metrics)
    assert row["likelihood_on_binarized"] is False
    logger = board.TensorBoardLogger(str(tmp_path), name="tb", version="")
    board.write_hparams(logger, row, metrics, experiment=True)
    logger.finalize("success")
    experiment = experiment_of(tmp_path / "tb")
    assert experiment["hparams"] == list(row) and not experiment["differs"]
    assert experiment["metrics"] == ["val/loss", "test/loss", "test/kl"]

    sweep_job = tmp_path / "job"
    logger = board.TensorBoardLogger(str(sweep_job), name="tb", version="")
    board.write_hparams(logger, row, metrics, experiment=False)  # the sweep writes them
    logger.finalize("success")
    tags = {v.tag for _, v in events(sweep_job / "tb")}
    assert hp_metadata.SESSION_START_INFO_TAG in tags
    assert hp_metadata.EXPERIMENT_TAG not in tags


def fake_sweep(root: Path, name: str, betas: tuple[float, ...]) -> Path:
    """A β sweep as `aelab-train -m` leaves it, each job's TensorBoard run written by aelab's
    logger and `write_hparams` (no training): figures known per job."""
    sweep = root / name
    for num, beta in enumerate(betas):
        job = sweep / f"{num}_model.beta={beta}"
        cfg = compose_cfg(["model=vae", f"model.beta={beta}"], job)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
        metrics = {"val/loss": 90.0 + beta, "test/loss": 88.0 + beta, "test/kl": 30 / beta}
        metrics |= {"test/recon": 80 + 5 * beta, "test/kl_dim_0": 30 / beta}
        metrics |= {"test/likelihood_on_binarized": 1.0}
        (job / "metrics.json").write_text(json.dumps({"status": "completed", **metrics}))
        logger = board.TensorBoardLogger(str(job), name="tb", version="")
        logger.log_metrics({"train/loss": 95.0, "val/loss": metrics["val/loss"]}, step=10)
        logger.log_metrics({k: v for k, v in metrics.items() if k.startswith("test/")}, 10)
        row = hparams_row(OmegaConf.to_container(cfg, resolve=True))
        board.write_hparams(logger, sweep_board.hparams_with_flags(row, metrics), metrics, False)
        logger.finalize("success")
    return sweep


def test_a_beta_sweep_gets_its_columns_and_the_rate_distortion_image(tmp_path):
    sweep = fake_sweep(tmp_path, "beta", (0.5, 4.0))
    # a report written before the sweep's event file had a folder of its own
    (sweep / f"events.out.tfevents.1.0{sweep_board.SWEEP_EVENTS_SUFFIX}").write_bytes(b"")
    report(sweep)
    report(sweep)  # made again: still one sweep summary
    board_dir = sweep / sweep_board.BOARD_DIR
    assert len(list(board_dir.glob(f"*{sweep_board.SWEEP_EVENTS_SUFFIX}"))) == 1
    assert not list(board_dir.glob(".board.*"))
    # nothing at the sweep's root for TensorBoard to list as a run `.`
    assert not list(sweep.glob("*tfevents*"))
    experiment = experiment_of(board_dir)
    assert experiment["differs"] == {"beta"} and experiment["hparams"][0] == "beta"
    assert "likelihood_on_binarized" in experiment["hparams"]
    assert experiment["metrics"] == ["val/loss", "test/loss", "test/recon", "test/kl"]
    (image,) = [v for _, v in events(board_dir) if v.metadata.plugin_data.plugin_name == "images"]
    assert image.tag == "report/rate_distortion"
    png = (sweep / "rate_distortion.png").read_bytes()
    assert image.tensor.string_val[2] == png  # the report's plot as it is


def test_the_optimized_metric_is_the_first_metric_column():
    figures = [{"val/loss": 1.0, "test/loss": 2.0, "test/kl": 3.0}]
    assert sweep_board.headline_metrics(figures) == ["val/loss", "test/loss", "test/kl"]
    chosen = sweep_board.headline_metrics(figures, "test/kl")
    assert chosen == ["test/kl", "val/loss", "test/loss"]
    assert sweep_board.headline_metrics(figures, "val/nosuch") == chosen[1:] + ["test/kl"]


# --- a real server ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.mnist
def test_tensorboard_serves_every_run_and_the_hparams_table(tiny_sweep, tmp_path):  # noqa: F811
    jobs = {d.name: d for d in tiny_sweep.iterdir() if (d / ".hydra").is_dir()}
    log = tmp_path / "tensorboard.log"
    with serve(tiny_sweep, log) as (base, server):
        runs = {f"{name}/tb" for name in jobs}
        board_run = sweep_board.BOARD_DIR
        experiment, groups = loaded(base, server, log, runs | {board_run}, len(jobs))
        # one run per job, named by its overrides (the job folder), and the sweep's own
        # (`report`; no run `.`)
        assert sorted(get(f"{base}/data/runs")) == sorted(runs | {board_run})

        tags = get(f"{base}/data/plugin/scalars/tags")
        for run in runs:  # the same tags in every run, so AE and VAE curves overlay
            assert set(tags[run]) >= SHARED_SCALARS, (run, sorted(tags[run]))
            assert not [t for t in tags[run] if "_dim_" in t or "likelihood_on" in t]
        vae_runs = [r for r in runs if "model=vae" in r]
        assert all("val/kl" in tags[r] for r in vae_runs) and len(vae_runs) == 2
        images = get(f"{base}/data/plugin/images/tags")
        assert all("images/reconstructions" in images[r] for r in runs)
        # the rate of each latent unit: one image per VAE run
        assert {r for r in runs if "test/kl_per_unit" in images[r]} == set(vae_runs)

        hparams = [h["name"] for h in experiment["hparamInfos"]]
        # the swept values first, then every other one (the VAE's beta although the first run
        # is an AE), and no paths
        assert set(hparams[:2]) == {"model", "latent_dim"}
        assert {"beta", "seed", "lr", "noise", "likelihood_on_binarized"} <= set(hparams[2:])
        assert not any("dir" in c or "path" in c for c in hparams)
        differs = {h["name"] for h in experiment["hparamInfos"] if h.get("differs")}
        assert differs == {"model", "latent_dim"}
        metric_tags = [m["name"]["tag"] for m in experiment["metricInfos"]]
        assert set(metric_tags) <= METRIC_COLUMNS, metric_tags
        assert {"val/loss", "test/loss", "test/recon_mse", "test/psnr", "test/kl"} <= set(
            metric_tags
        )

        assert sorted(g["name"] for g in groups) == sorted(runs)
        for group in groups:
            job = jobs[group["name"].removesuffix("/tb")]
            metrics = json.loads((job / "metrics.json").read_text())
            hp = group["hparams"]
            # the run's name: job number, then what the sweep varies, as HParams has it
            varied = f"latent_dim={int(hp['latent_dim'])},model={hp['model'].lower()}"
            assert job.name.split("_", 1)[1] == varied
            assert ("beta" in hp) == (hp["model"] == "VAE")
            # the flag: an hparam, true or false as metrics.json says (1.0 or 0.0)
            assert hp["likelihood_on_binarized"] is bool(metrics["test/likelihood_on_binarized"])
            # per-unit KL stays in metrics.json: one per latent unit of a VAE
            units = [k for k in metrics if k.startswith("test/kl_dim_")]
            assert len(units) == (hp["latent_dim"] if hp["model"] == "VAE" else 0)
            served = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            assert set(served) == {t for t in metric_tags if t in metrics}
            for key, value in served.items():
                assert value == pytest.approx(metrics[key], rel=1e-6), key

        layout = get(f"{base}/data/plugin/custom_scalars/layout")
        check_layout(layout, {"loss", "recon", "kl"})


def single_run(folder: Path, metrics: dict) -> dict:
    """A run outside a sweep, written by aelab's logger and `write_hparams`; its HParams row."""
    cfg = compose_cfg(["model=ae"], folder)
    logger = board.TensorBoardLogger(str(folder), name="tb", version="")
    logger.log_metrics({"train/loss": 2.0, "train/recon": 2.0}, step=3)
    logger.log_metrics(metrics, step=3)
    row = hparams_row(OmegaConf.to_container(cfg, resolve=True))
    board.write_hparams(logger, row, metrics, experiment=True)
    logger.finalize("success")
    return row


@pytest.mark.slow
def test_tensorboard_serves_a_single_runs_own_columns(tmp_path):
    metrics = {"val/loss": 1.5, "val/recon": 1.5, "test/loss": 1.25, "test/recon_mse": 0.5}
    metrics |= {"test/psnr": 9.0, "test/recon_bce": 7.0}
    row = single_run(tmp_path / "run", metrics)
    log = tmp_path / "tensorboard.log"
    with serve(tmp_path / "run", log) as (base, server):
        experiment, (group,) = loaded(base, server, log, {"tb"}, 1)
        # every hyper-parameter, none swept; the headline figures in their order, no others
        assert [h["name"] for h in experiment["hparamInfos"]] == sorted(row)
        assert not any(h.get("differs") for h in experiment["hparamInfos"])
        tags = [m["name"]["tag"] for m in experiment["metricInfos"]]
        assert tags == ["val/loss", "test/loss", "test/recon_mse", "test/psnr"]
        served = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert served == {t: metrics[t] for t in tags}
        assert group["hparams"] == row  # booleans too (`optimizer.fused`: true, not 1)
        check_layout(get(f"{base}/data/plugin/custom_scalars/layout"), {"loss", "recon"})


@pytest.mark.slow
@pytest.mark.mnist
def test_tensorboard_over_several_sweeps_serves_every_row(tiny_sweep, tmp_path):  # noqa: F811
    """`tensorboard --logdir outputs/`: two sweeps (each with its HParams columns) and a single
    run; the server shows one set of columns, and every job of every sweep as a row with its
    own hparams and figures."""
    outputs = tmp_path / "outputs"
    shutil.copytree(
        tiny_sweep,
        outputs / "multiruns" / "tiny",
        ignore=shutil.ignore_patterns("checkpoints", "images", "*.png", "*.log"),
    )
    beta = fake_sweep(outputs / "multiruns", "beta", (0.5, 4.0))
    report(beta)
    single_run(outputs / "runs" / "single", {"val/loss": 1.5, "test/loss": 1.25})

    tiny_jobs = [
        d.name for d in (outputs / "multiruns" / "tiny").iterdir() if (d / ".hydra").is_dir()
    ]
    rows = {f"multiruns/tiny/{j}/tb" for j in tiny_jobs}
    rows |= {f"multiruns/beta/{j.name}/tb" for j in beta.iterdir() if (j / ".hydra").is_dir()}
    rows.add("runs/single/tb")
    log = tmp_path / "tensorboard.log"
    with serve(outputs, log) as (base, server):
        experiment, groups = loaded(base, server, log, rows, len(rows))
        assert {g["name"] for g in groups} == rows
        columns = [h["name"] for h in experiment["hparamInfos"]]
        # the columns of one of them, swept values first; no value domain filters rows out
        assert columns[0] in {"beta", "latent_dim", "model", "batch_size"}
        assert not any("domainDiscrete" in h or "domainInterval" in h for h in experiment[
            "hparamInfos"
        ])  # fmt: skip
        metric_tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"val/loss", "test/loss"} <= metric_tags <= METRIC_COLUMNS
        for group in groups:
            hp = group["hparams"]
            served = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            if group["name"].startswith("multiruns/beta/"):
                assert served["test/loss"] == pytest.approx(88.0 + hp["beta"])
            elif group["name"] == "runs/single/tb":
                assert served["test/loss"] == pytest.approx(1.25) and hp["model"] == "AE"
            else:
                job = outputs / Path(group["name"]).parent
                stored = json.loads((job / "metrics.json").read_text())
                assert served["test/loss"] == pytest.approx(stored["test/loss"], rel=1e-6)
        images = get(f"{base}/data/plugin/images/tags")
        # the sweep's own run: its report/ folder, named so, not the sweep folder itself
        assert "report/rate_distortion" in images[f"multiruns/beta/{sweep_board.BOARD_DIR}"]
        assert "multiruns/beta" not in images
