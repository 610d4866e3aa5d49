"""Bad input fails before training, with one line naming the field, the value and the range."""

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from aelab import CONFIG_DIR, runs
from aelab.checks import ConfigError, exit_on_config_error
from aelab.data.source import MNIST_FILES, DataSourceError
from aelab.runs import SweepLauncherCheck
from aelab.train import build_model, train

CASES = [
    (["model.latent_dim=0"], "model.latent_dim=0", "an integer >= 1"),
    (["model=vae", "model.beta=-1"], "model.beta=-1", "a number in [0.0, inf)"),
    (["noise=gaussian", "noise.std=-0.2"], "noise.std=-0.2", "a number in [0.0, inf)"),
    (["noise=masking", "noise.p=1.5"], "noise.p=1.5", "a number in [0.0, 1.0]"),
    (["noise=salt_pepper", "noise.p=-0.1"], "noise.p=-0.1", "a number in [0.0, 1.0]"),
    (["data.batch_size=0"], "data.batch_size=0", "an integer >= 1"),
    (["data.val_size=60000"], "data.val_size=60000", "an integer in [1, 59999]"),
    (["data.classes=[3,10]"], "data.classes=10", "an integer in [0, 9]"),
    (["data.classes=[]"], "data.classes=[]", "non-empty list"),
    (["data.binarize=yes"], "data.binarize='yes'", "one of none, dynamic, static"),
    (["optimizer.lr=0"], "optimizer.lr=0", "a number in (0.0, inf)"),
    (["trainer.max_epochs=-2"], "trainer.max_epochs=-2", "an integer >= 0"),
    (["net.hidden=[128,0]"], "net.hidden=0", "an integer >= 1"),
    (["resume=true"], "resume=True", "a run under"),
    (["resume=no/such/run"], "resume='no/such/run'", "a run folder started with these overrides"),
    (["resume=true", "ckpt_path=x.ckpt"], "ckpt_path='x.ckpt'", "null with resume"),
    (["ckpt_path=missing.ckpt"], "ckpt_path='missing.ckpt'", "an existing checkpoint file"),
    (["ckpt_path=pyproject.toml"], "ckpt_path='pyproject.toml'", "a checkpoint written by"),
    (["eval.iw_images=0"], "eval.iw_images=0", "an integer >= 1"),
    (["trainer.limit_test_batches=0"], "trainer.limit_test_batches=0", "a number of batches >= 1"),
    (["trainer.limit_test_batches=1.5"], "trainer.limit_test_batches=1.5", "(0.0, 1.0]"),
    (["trainer.limit_test_batches=-2"], "trainer.limit_test_batches=-2", "or null"),
    (["eval.probe_train_size=10", "eval.knn_k=11"], "eval.knn_k=11", "an integer in [1, 10]"),
]


@pytest.mark.parametrize(("overrides", "field_value", "allowed"), CASES)
def test_bad_value_is_named_before_training(overrides, field_value, allowed, make_cfg):
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError) as info:
        train(cfg)
    message = str(info.value)
    assert message.startswith(field_value), message
    assert allowed in message and "\n" not in message


def cli(*overrides: str, program: str = "aelab.train") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", program, *overrides], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_cli_prints_one_line_and_exits_2(tmp_path):
    done = cli("model.latent_dim=0", f"paths.log_dir={tmp_path}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "aelab-train: error: model.latent_dim=0 is invalid: allowed an integer >= 1"
    )
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "runs").glob("*/*"))  # no run folder left behind


@pytest.mark.slow
def test_eval_without_a_checkpoint_is_one_line_and_leaves_nothing(tmp_path):
    done = cli(f"paths.log_dir={tmp_path}", program="aelab.eval")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "aelab-eval: error: ckpt_path=None is invalid: allowed a checkpoint written by "
        "aelab-train (required)"
    )
    assert not list((tmp_path / "runs").glob("*/*"))


@pytest.mark.slow
def test_a_refused_resume_leaves_the_run_untouched(tmp_path):
    """The run folder is found (same overrides, a last.ckpt), then its checkpoint refused."""
    run = tmp_path / "runs" / "2030-01-01" / "12-00-00_x_train"
    overrides = ["model.latent_dim=3", f"paths.log_dir={tmp_path}"]
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    (run / "train.log").write_text("the first session\n")
    done = cli(*overrides, f"resume={run}")
    assert done.returncode == 2, done.stderr[-2000:]
    # the refusal of the checkpoint inside: this folder was the one resumed
    last = run / "checkpoints" / "last.ckpt"
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"aelab-train: error: ckpt_path='{last}'")
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"not a checkpoint"
    assert (run / "train.log").read_text().startswith("the first session\n")
    assert list((tmp_path / "runs").glob("*/*")) == [run]


@pytest.mark.slow
def test_a_refused_sweep_job_keeps_its_folder_marked_failed(tmp_path):
    done = cli("-m", "model.latent_dim=0", f"paths.log_dir={tmp_path}")
    assert done.returncode == 2
    [job] = list((tmp_path / "multiruns").glob("*/*/0_*"))
    assert json.loads((job / "metrics.json").read_text()) == {
        "status": "failed",
        "error": "model.latent_dim=0 is invalid: allowed an integer >= 1",
    }


@pytest.mark.slow
def test_unknown_option_lists_the_choices(tmp_path):
    done = cli("model=transformer", f"paths.log_dir={tmp_path}")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "Could not find 'model/transformer'" in done.stderr
    assert all(name in done.stderr for name in ("ae", "vae", "dae"))


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["missing.ckpt", "pyproject.toml"])
def test_eval_refuses_what_is_not_a_checkpoint(bad, tmp_path):
    done = cli(f"ckpt_path={bad}", f"paths.log_dir={tmp_path}", program="aelab.eval")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"aelab-eval: error: ckpt_path='{bad}'")


# --- checkpoints that are not this run's ----------------------------------------------------


def save_checkpoint(make_cfg, path, *overrides: str) -> str:
    """A checkpoint as aelab-train writes it (weights, hyper-parameters, config), of that model."""
    cfg = make_cfg(*overrides)
    model = build_model(cfg)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


@pytest.mark.parametrize(
    ("stored", "holds"),
    [(["model=vae"], "aelab.models.vae.VAE with latent_dim=20"), (["model.latent_dim=3"], "=3")],
)
def test_checkpoint_of_another_model_is_refused(stored, holds, make_cfg, tmp_path):
    path = save_checkpoint(make_cfg, tmp_path / "other.ckpt", *stored)
    with pytest.raises(ConfigError) as info:
        train(make_cfg(f"ckpt_path={path}"))
    message = str(info.value)
    assert message.startswith(f"ckpt_path='{path}' is invalid: allowed a checkpoint of ")
    assert "aelab.models.ae.Autoencoder with latent_dim=12" in message and holds in message


class Malicious:
    """Unpickling this runs a shell command (a checkpoint is a pickle)."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused_unopened(make_cfg, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": Malicious(marker)}, path)
    with pytest.raises(ConfigError) as info:
        train(make_cfg(f"ckpt_path={path}"))
    assert "unsupported global posix.system" in str(info.value).lower()
    assert not marker.exists()


@pytest.mark.slow
def test_cli_refuses_a_malicious_checkpoint_in_one_line(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": Malicious(marker)}, path)
    done = cli(f"ckpt_path={path}", f"paths.log_dir={tmp_path}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"aelab-train: error: ckpt_path='{path}' is invalid: allowed a checkpoint written by"
        )
    )
    assert not marker.exists()


# --- keys, folders, disks ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_misspelt_key_is_named(tmp_path):
    done = cli("model.latnt_dim=3", f"paths.log_dir={tmp_path}")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "Could not override 'model.latnt_dim'" in done.stderr


DDP_IN_A_SWEEP = (
    "aelab-train: error: trainer='ddp' is invalid: allowed in a sweep (-m) only with "
    "hydra/launcher=slurm (here {}): Lightning starts the other DDP processes by re-running the "
    "command line, here the sweep's"
)


@pytest.mark.slow
def test_ddp_in_a_sweep_off_slurm_is_refused_before_any_job(tmp_path):
    """Lightning re-runs the command line for DDP's second process: in a joblib job that is
    loky's (the worker died and took the sweep with it), in a basic sweep the whole sweep."""
    done = cli("-m", "hydra/launcher=joblib", "trainer=default,ddp", f"paths.log_dir={tmp_path}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == DDP_IN_A_SWEEP.format("joblib")
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no job


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["trainer=ddp"], "basic"),
        (["hydra/launcher=submitit_local", "trainer=glob(*)"], "submitit_local"),
        (["hydra/launcher=joblib", "trainer=cpu,default"], None),
        (["hydra/launcher=slurm", "trainer=ddp"], None),  # SLURM starts DDP's processes
        (["trainer=ddp", "trainer.devices=2,4"], "basic"),
    ],
)
def test_sweep_launcher_check(overrides, refused, capsys):
    # the multirun config: sweeps (values with commas, globs) stay out of the composition
    composed = [o for o in overrides if "," not in o and "glob" not in o]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=composed, return_hydra_config=True)
    cfg.hydra.overrides.task = overrides
    if refused is None:
        SweepLauncherCheck().on_multirun_start(cfg)
        return
    with pytest.raises(SystemExit) as info:
        SweepLauncherCheck().on_multirun_start(cfg)
    assert info.value.code == 2
    assert capsys.readouterr().err == DDP_IN_A_SWEEP.format(refused) + "\n"


@pytest.mark.slow
def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path):
    # as root a read-only mode stops nothing; a path under a regular file fails for everyone
    (tmp_path / "file").write_text("")
    log_dir = tmp_path / "file" / "outputs"
    done = cli(f"paths.log_dir={log_dir}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(
        f"aelab-train: error: paths.log_dir='{log_dir}' is invalid: "
        "allowed a folder runs can be written in ("
    )
    assert line.endswith(": Not a directory)")


@pytest.mark.slow
def test_a_data_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    data_dir = tmp_path / "file" / "data"
    done = cli(f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path}", "data.download=false")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"aelab-train: error: data.data_dir: data folder {data_dir}/MNIST/raw cannot be created:"
        " Not a directory"
    )


@pytest.mark.slow
@pytest.mark.mnist
def test_a_truncated_idx_file_is_rebuilt_never_used(tmp_path, mnist_dir):
    offline = tmp_path / "data" / "MNIST" / "offline"
    offline.mkdir(parents=True)
    for wheel in (mnist_dir / "MNIST" / "offline").glob("*.whl"):
        shutil.copy(wheel, offline)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir()
    labels = (mnist_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte").read_bytes()
    (raw / "train-labels-idx1-ubyte").write_bytes(labels[:1000])
    done = cli(
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path}",
        "data.download=false",
        "trainer.max_epochs=0",
        "test=false",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train-labels-idx1-ubyte: md5 mismatch, rebuilding" in done.stdout  # Hydra's log
    for name, md5 in MNIST_FILES.items():
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5, name


def test_a_full_disk_leaves_no_half_written_metrics(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    runs.write_json_atomic(target, {"status": "completed"})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runs.os, "fsync", full)
    with pytest.raises(OSError):
        runs.write_json_atomic(target, {"status": "failed", "error": "x" * 100_000})
    assert json.loads(target.read_text()) == {"status": "completed"}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/runs/x/last.ckpt"),
            1,
            "cannot write /runs/x/last.ckpt: No space left on device",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/runs/x/metrics.json"),
            1,
            "cannot write /runs/x/metrics.json: Read-only file system",
        ),
        (
            DataSourceError("data folder /d/MNIST/raw is not writable"),
            2,
            "data.data_dir: data folder /d/MNIST/raw is not writable",
        ),
    ],
)
def test_environment_errors_are_one_line(error, status, line, capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as info, exit_on_config_error("aelab-train"):
        raise error
    assert info.value.code == status
    assert capsys.readouterr().err == f"aelab-train: error: {line}\n"


def test_other_os_errors_keep_their_traceback():
    with pytest.raises(FileNotFoundError), exit_on_config_error("aelab-train"):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")


@pytest.mark.parametrize("limit", [1, 0.5, 1.0, None])
def test_a_test_loop_with_batches_is_accepted(limit):
    from aelab.checks import check_test_batches

    check_test_batches(limit)  # raises for no batches


def test_eval_refuses_a_test_loop_without_batches(make_cfg):
    from aelab.eval import evaluate

    cfg = make_cfg("ckpt_path=missing.ckpt", "trainer.limit_test_batches=0", name="eval")
    with pytest.raises(ConfigError, match=r"^trainer\.limit_test_batches=0 is invalid"):
        evaluate(cfg)
