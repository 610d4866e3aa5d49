"""What a user sees in TensorBoard: a real `tensorboard` server over a real tiny sweep, checked
through its HTTP data API (runs, scalar tags, images, the HParams experiment and sessions)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sweep_fixtures import tiny_sweep  # noqa: F401 - a fixture

from aelab.runs import hparams_row
from aelab.train import check_trainer

SWEPT = {"model", "latent_dim", "beta", "noise", "noise_level", "lr", "seed"}
SHARED_SCALARS = {"train/loss", "val/loss", "test/loss", "test/recon_mse", "test/psnr"}


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


def wait_for_runs(base: str, server: subprocess.Popen, log: Path, n: int, timeout=120.0) -> list:
    """Poll /data/runs until the server has loaded n runs (it reads them in the background)."""
    deadline, runs = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-2000:]
        try:
            runs = get(f"{base}/data/runs")
        except OSError:  # not listening yet
            runs = []
        if len(runs) >= n:
            return runs
        time.sleep(1)
    raise AssertionError(f"tensorboard served {runs} after {timeout} s")


@pytest.mark.slow
@pytest.mark.mnist
def test_tensorboard_serves_every_run_and_the_hparams_table(tiny_sweep, tmp_path):  # noqa: F811
    jobs = {d.name: d for d in tiny_sweep.iterdir() if d.is_dir()}
    exe = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    assert exe, "the tensorboard command is not installed beside python"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "tensorboard.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [exe, "--logdir", str(tiny_sweep), "--port", str(port), "--host", "127.0.0.1"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        runs = wait_for_runs(base, server, log, len(jobs))
        # one run per job, named by its overrides (the job folder)
        assert sorted(runs) == sorted(f"{name}/tb" for name in jobs)

        tags = get(f"{base}/data/plugin/scalars/tags")
        for run in runs:  # the same tags in every run, so AE and VAE curves overlay
            assert set(tags[run]) >= SHARED_SCALARS, (run, sorted(tags[run]))
        vae_runs = [r for r in runs if "model=vae" in r]
        assert all("val/kl" in tags[r] for r in vae_runs) and len(vae_runs) == 2
        images = get(f"{base}/data/plugin/images/tags")
        assert all("images/reconstructions" in images[r] for r in runs)

        experiment = get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        columns = {h["name"] for h in experiment["hparamInfos"]}
        # every swept value, the VAE's beta although the first run is an AE, and no paths
        assert columns >= SWEPT and not any("dir" in c or "path" in c for c in columns)
        differs = {h["name"] for h in experiment["hparamInfos"] if h.get("differs")}
        assert {"model", "latent_dim"} <= differs and "seed" not in differs
        metric_tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"test/loss", "test/recon_mse", "test/psnr", "test/kl"} <= metric_tags

        groups = get(
            f"{base}/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 100,
            },
        )["sessionGroups"]
        assert sorted(g["name"] for g in groups) == sorted(runs)
        for group in groups:
            job = jobs[group["name"].removesuffix("/tb")]
            metrics = json.loads((job / "metrics.json").read_text())
            hp = group["hparams"]
            # the run's name: job number, then what the sweep varies, as HParams has it
            varied = f"latent_dim={int(hp['latent_dim'])},model={hp['model'].lower()}"
            assert job.name.split("_", 1)[1] == varied
            assert ("beta" in hp) == (hp["model"] == "VAE")
            served = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            for key in ("test/loss", "test/recon_mse", "test/psnr", "val/loss"):
                assert served[key] == pytest.approx(metrics[key], rel=1e-6), key
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
