"""logger=mlflow against a real `mlflow server` (127.0.0.1, SQLite backend in tmp_path), read
back through mlflow's own client: params, metrics by step, artifacts, a resumed run as one run;
and the one-line refusal when mlflow is not installed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on a free port; its URI once /health answers (at most 120 s)."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination", str(root / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _train(root: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "aelab.train", f"paths.root_dir={root}", f"paths.data_dir={data_dir}",
        "model=vae", "model.latent_dim=3", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "data.eval_batch_size=200",
        "eval.images=false", "threads=1", "logger=mlflow", *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))


@pytest.mark.slow
@pytest.mark.mnist
def test_a_run_in_mlflow_params_metrics_artifacts_and_resumed_as_one(server, tmp_path, mnist_dir):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"logger.mlflow.tracking_uri={server}"
    done = _train(tmp_path, mnist_dir, uri, "logger.mlflow.experiment_name=test")
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*_train")
    run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    metrics = json.loads((run_dir / "metrics.json").read_text())

    mlflow.set_tracking_uri(server)
    runs = mlflow.search_runs(experiment_names=["test"])
    assert list(runs["run_id"]) == [run_id]
    row = runs.iloc[0]
    assert row["status"] == "FINISHED"
    assert row["tags.mlflow.runName"] == run_dir.name
    # the HParams row's names, not Lightning's nested `net/hidden`
    assert row["params.model"] == "VAE" and row["params.latent_dim"] == "3"
    assert row["params.max_epochs"] == "2" and row["params.net.hidden"] == "[400, 200, 100]"
    assert not any(c.startswith("params.net/") for c in runs.columns)
    assert row["metrics.test/neg_elbo"] == pytest.approx(metrics["test/neg_elbo"], rel=1e-6)

    client = MlflowClient(server)
    # one val/loss per epoch (steps 3 and 6: 3 batches an epoch), as TensorBoard gets them
    history = client.get_metric_history(run_id, "val/loss")
    assert [m.step for m in history] == [2, 5]
    assert history[-1].value == pytest.approx(metrics["val/loss"], rel=1e-6)
    names = {a.path for a in client.list_artifacts(run_id)}
    assert "metrics.json" in names
    files = _walk(client, run_id, "")
    assert "last/last.ckpt" in files, files  # Lightning's log_model: the run's last checkpoint

    # resumed: the same MLflow run, no second one
    again = _train(
        tmp_path, mnist_dir, uri, "logger.mlflow.experiment_name=test", f"resume={run_dir}"
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert list(mlflow.search_runs(experiment_names=["test"])["run_id"]) == [run_id]


def _walk(client, run_id: str, path: str) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path or None):
        found.extend(_walk(client, run_id, item.path) if item.is_dir else [item.path])
    return found


@pytest.mark.mnist
def test_a_missing_tracker_package_is_refused_before_training_in_one_line(tmp_path, mnist_dir):
    # mlflow blocked as if not installed (None in sys.modules: `import mlflow` fails)
    code = (
        "import sys; sys.modules['mlflow'] = None; sys.argv[0] = 'aelab-train'; "
        "from aelab.train import main; main()"
    )
    cmd = [sys.executable, "-c", code, f"paths.root_dir={tmp_path}",
           f"paths.data_dir={mnist_dir}", "logger=mlflow", "threads=1"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "aelab-train: error: logger='mlflow' is invalid: allowed an installed tracker: "
        "the mlflow package is missing (pip install 'aelab[mlflow]')"
    )
    assert not list(tmp_path.glob("outputs/runs/*/*"))  # refused before any run folder
