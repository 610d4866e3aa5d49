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

from aelab import CONFIG_DIR
from aelab.callbacks import RunConfigInCheckpoints
from aelab.checkpoint_io import AtomicCheckpointIO
from aelab.checks import ConfigError
from aelab.data.source import MNIST_FILES, DataSourceError
from aelab.run import atomic
from aelab.run.outcome import exit_on_config_error
from aelab.run.sweep import SweepLauncherCheck
from aelab.train import build_model, train

CASES = [
    (["model.latent_dim=0"], "model.latent_dim=0", "an integer >= 1"),
    (["model=vae", "model.beta=-1"], "model.beta=-1", "a number in [0.0, inf)"),
    (["model=iwae", "model.k=0"], "model.k=0", "an integer >= 1"),
    (["model=vqvae", "model.code_dim=3"], "model.code_dim=3", "a divisor of model.latent_dim=16"),
    (["model=tcvae", "model.gamma=-1"], "model.gamma=-1", "a number in [0.0, inf)"),
    (["model=tcvae", "model.estimator=x"], "model.estimator='x'", "one of mws, mss"),
    (["eval.tc_images=0"], "eval.tc_images=0", "an integer >= 1"),
    (["model=cae", "model.contraction_weight=-1"], "model.contraction_weight=-1", "[0.0, "),
    (["model=sparse_ae", "model.rho=1"], "model.rho=1", "a number in (0.0, 1.0)"),
    (["model=sparse_ae", "model.sparsity_weight=-1"], "model.sparsity_weight=-1", "[0.0, inf)"),
    (["noise=gaussian", "noise.std=-0.2"], "noise.std=-0.2", "a number in [0.0, inf)"),
    (["noise=masking", "noise.p=1.5"], "noise.p=1.5", "a number in [0.0, 1.0]"),
    (["noise=salt_pepper", "noise.p=-0.1"], "noise.p=-0.1", "a number in [0.0, 1.0]"),
    (["data.batch_size=0"], "data.batch_size=0", "an integer >= 1"),
    (["data.val_size=60000"], "data.val_size=60000", "an integer in [1, 59999]"),
    (["data.classes=[3,10]"], "data.classes=10", "an integer in [0, 9]"),
    (["data.classes=[]"], "data.classes=[]", "non-empty list"),
    (["data.binarize=yes"], "data.binarize='yes'", "one of none, dynamic, static"),
    (["optimizer.lr=0"], "optimizer.lr=0", "a number in (0.0, inf)"),
    (["trainer.max_epochs=-2"], "trainer.max_epochs=-2", "null or an integer >= -1"),
    # -1 or null without max_steps: Lightning trains for ever (-1) or for 1000 epochs (null)
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1", "an integer >= 0 (-1 or null: no epoch"),
    (["trainer.max_epochs=null"], "trainer.max_epochs=None", "with max_steps or max_time set"),
    (["trainer.max_steps=-2"], "trainer.max_steps=-2", "an integer >= -1"),
    (["++trainer.min_steps=-1"], "trainer.min_steps=-1", "null or an integer >= 0"),
    (["++trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0", ">= 1"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0", ">= 1"),
    (["trainer.accelerator=tpu"], "trainer.accelerator='tpu'", "one of auto, cpu"),
    # Lightning's own refusals, named by the field its message names
    (
        ["trainer.precision=bogus"],
        "trainer.precision='bogus'",
        "allowed what pytorch_lightning.Trainer accepts (Precision 'bogus' is invalid.",
    ),
    (["trainer.devices=0"], "trainer.devices=0", "(`Trainer(devices=0)` value is not a valid"),
    (
        ["trainer.limit_train_batches=1.5"],
        "trainer.limit_train_batches=1.5",
        "(You have passed invalid value 1.5 for limit_train_batches",
    ),
    (["++trainer.max_time=bogus"], "trainer.max_time='bogus'", "is not a valid duration"),
    (["++trainer.strategy=bogus"], "trainer.strategy='bogus'", "invalid strategy name"),
    # every group names itself, also where its values are checked inside another group's build
    (
        ["net=conv", "net.channels=[8,8,8]"],
        "net.channels=[8, 8, 8]",
        "at most as many stages as halve 28x28 evenly",
    ),
    (
        ["optimizer=adamw", "optimizer.weight_decay=-1"],
        "optimizer.weight_decay=-1",
        "what torch.optim.AdamW accepts (Invalid weight_decay value: -1)",
    ),
    (["optimizer=sgd", "optimizer.momentum=-1"], "optimizer.momentum=-1", "Invalid momentum"),
    (["eval.iw_samples=0"], "eval.iw_samples=0", "an integer >= 1"),
    (["callbacks.images.n_images=0"], "callbacks.images.n_images=0", "an integer >= 1"),
    (
        ["logger=csv", "++logger.csv.bogus=1"],
        "logger.csv.bogus=1",
        # named before Lightning sees it, with the keys it takes (issue 22: unknown keys)
        "a key that pytorch_lightning.loggers.CSVLogger takes (it takes flush_logs_every_n_steps",
    ),
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
    # the best checkpoint's monitor, checked against what the model's validation logs
    (
        ["optimized_metric=val/nosuch"],
        "optimized_metric='val/nosuch'",
        "a figure validation logs: one of val/loss, val/psnr, val/recon, val/recon_bce, "
        "val/recon_mse",
    ),
    (
        ["model=vae", "optimized_metric=val/tc"],
        "optimized_metric='val/tc'",
        "one of val/kl, val/loss, val/neg_elbo, val/psnr, val/recon, val/recon_bce, val/recon_mse",
    ),
]


@pytest.mark.parametrize(("overrides", "field_value", "allowed"), CASES)
def test_bad_value_is_named_before_training(overrides, field_value, allowed, make_cfg):
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError) as info:
        train(cfg)
    message = str(info.value)
    assert message.startswith(field_value), message
    assert allowed in message and "\n" not in message


def test_an_optimized_metric_the_model_logs_passes_and_leaves_the_model_as_it_was(make_cfg):
    from aelab.contract import check_optimized_metric
    from aelab.train import build_model

    model = build_model(make_cfg("model=vae"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    check_optimized_metric("val/kl", model)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


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
    # the sweep goes on past a refused job, reports, and exits 1 naming it (as for any failed job)
    assert done.returncode == 1
    [job] = list((tmp_path / "multiruns").glob("*/*/0"))
    summary = job.parent / "summary.md"
    assert done.stderr.strip().splitlines()[-1] == (
        f"aelab-train: error: 1 of 1 jobs did not complete, see {summary}: {job.name} (failed)"
    )
    assert json.loads((job / "metrics.json").read_text()) == {
        "status": "failed",
        "error": "model.latent_dim=0 is invalid: allowed an integer >= 1",
    }


VAL_CHECK = (
    "trainer.val_check_interval=29 is invalid: allowed what Lightning accepts "
    "(`val_check_interval` (29) must be less than or equal to the number of the training "
    "batches (20). If you want to disable validation set `limit_val_batches` to 0.0 instead. "
    "If you want to validate based on the total training batches, set "
    "`check_val_every_n_epoch=None`.)"
)


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        # refused by Lightning only when fit meets the data: 20 batches an epoch
        (["++trainer.val_check_interval=29"], VAL_CHECK),
        (
            ["trainer.precision=64-bogus"],
            "trainer.precision='64-bogus' is invalid: allowed what pytorch_lightning.Trainer "
            "accepts (Precision '64-bogus' is invalid. Allowed precision values: ",
        ),
        (
            ["trainer.max_epochs=-1"],
            "trainer.max_epochs=-1 is invalid: allowed an integer >= 0 (-1 or null: no epoch "
            "limit, with max_steps or max_time set)",
        ),
    ],
)
def test_lightning_refusals_are_one_line_and_exit_2(overrides, line, tmp_path, mnist_dir):
    done = cli(
        f"paths.log_dir={tmp_path}",
        f"paths.data_dir={mnist_dir}",
        "trainer.accelerator=cpu",
        "trainer.limit_train_batches=20",
        *overrides,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"aelab-train: error: {line}")


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
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    config = RunConfigInCheckpoints(OmegaConf.to_container(cfg, resolve=True))
    config.on_save_checkpoint(None, model, ckpt)  # Lightning's order: callbacks, then the model
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


def _first_shape_difference(make_cfg, stored: list[str], asked: list[str]) -> str:
    """The first parameter whose shape differs, and both shapes, as the refusal names them."""
    theirs = build_model(make_cfg(*stored)).state_dict()
    for name, tensor in build_model(make_cfg(*asked)).state_dict().items():
        if name in theirs and theirs[name].shape != tensor.shape:
            return f"{name} is {list(theirs[name].shape)} in it, {list(tensor.shape)} here"
    raise AssertionError("no shape differs")


def test_checkpoint_of_a_net_of_another_shape_is_refused(make_cfg, tmp_path):
    path = save_checkpoint(make_cfg, tmp_path / "other.ckpt", "net.hidden=[64,32]")
    with pytest.raises(ConfigError) as info:
        train(make_cfg(f"ckpt_path={path}", "net.hidden=[256,64]"))
    differs = _first_shape_difference(make_cfg, ["net.hidden=[64,32]"], ["net.hidden=[256,64]"])
    assert differs.startswith("encoder.")
    assert str(info.value) == (
        f"ckpt_path='{path}' is invalid: allowed a checkpoint of a net of this run's shape "
        f"({differs})"
    )


def test_eval_refuses_weights_of_another_shape_than_their_hyper_parameters(make_cfg, tmp_path):
    from aelab.eval import model_from_checkpoint

    path = save_checkpoint(make_cfg, tmp_path / "edited.ckpt", "net.hidden=[64,32]")
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["net"]["hidden"] = [256, 64]  # hyper-parameters edited since
    differs = _first_shape_difference(make_cfg, ["net.hidden=[64,32]"], ["net.hidden=[256,64]"])
    with pytest.raises(ConfigError) as info:
        model_from_checkpoint(ckpt, "edited.ckpt")
    assert str(info.value) == (
        "ckpt_path='edited.ckpt' is invalid: allowed a checkpoint of a net of this run's shape "
        f"({differs})"
    )


@pytest.mark.slow
def test_cli_refuses_a_checkpoint_of_another_net_shape_and_leaves_no_folder(make_cfg, tmp_path):
    path = save_checkpoint(make_cfg, tmp_path / "other.ckpt", "net.hidden=[64,32]")
    logs = tmp_path / "logs"
    done = cli(f"ckpt_path={path}", "net.hidden=[256,64]", f"paths.log_dir={logs}", "threads=1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    differs = _first_shape_difference(make_cfg, ["net.hidden=[64,32]"], ["net.hidden=[256,64]"])
    assert done.stderr.strip().splitlines()[-1] == (
        f"aelab-train: error: ckpt_path='{path}' is invalid: allowed a checkpoint of a net of "
        f"this run's shape ({differs})"
    )
    assert not list((logs / "runs").glob("*/*"))  # no run folder left behind


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
    atomic.write_json_atomic(target, {"status": "completed"})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError):
        atomic.write_json_atomic(target, {"status": "failed", "error": "x" * 100_000})
    assert json.loads(target.read_text()) == {"status": "completed"}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


FULL_DISK = """
import errno, os, sys

real_fdopen, opened = os.fdopen, []


class FillsTheDisk:
    \"\"\"A file on a disk that fills up half-way through the next write.\"\"\"

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(bytes(data)[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)


def fdopen(fd, mode="r", *args, **kwargs):
    f = real_fdopen(fd, mode, *args, **kwargs)
    if "b" not in mode:  # metrics.json, run.json
        return f
    opened.append(fd)
    return FillsTheDisk(f) if len(opened) == int(os.environ["FULL_AT_WRITE"]) else f
"""


def fill_the_disk_at(monkeypatch, write: int) -> None:
    """The `write`-th binary file written (a checkpoint) fills the disk half-way through."""
    space: dict = {}
    # the same simulation as the subprocess below, patched in through monkeypatch only: the
    # real os.fdopen must come back for the tests that follow
    exec(FULL_DISK, space)  # noqa: S102
    monkeypatch.setenv("FULL_AT_WRITE", str(write))
    monkeypatch.setattr(atomic.os, "fdopen", space["fdopen"])


def test_a_full_disk_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    last = tmp_path / "checkpoints" / "last.ckpt"
    good = {"global_step": 5, "state_dict": {"w": torch.arange(1000.0)}}
    io.save_checkpoint(good, last)
    before = last.read_bytes()

    fill_the_disk_at(monkeypatch, 1)
    bigger = {"global_step": 10, "state_dict": {"w": torch.arange(100_000.0)}}
    with pytest.raises(OSError) as info:
        io.save_checkpoint(bigger, last)
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(last))
    assert last.read_bytes() == before  # the last good one, whole
    loaded = torch.load(last, weights_only=True)
    assert loaded["global_step"] == 5 and torch.equal(
        loaded["state_dict"]["w"], good["state_dict"]["w"]
    )
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]  # no temp file left


@pytest.mark.parametrize("trainer", ["default", "ddp"])
def test_every_checkpoint_goes_through_the_atomic_writer(trainer, make_cfg):
    from aelab.train import build_trainer

    built = build_trainer(make_cfg(f"trainer={trainer}"), accelerator="cpu")
    assert isinstance(built.strategy.checkpoint_io, AtomicCheckpointIO)


@pytest.mark.slow
@pytest.mark.mnist
def test_a_run_on_a_full_disk_names_the_checkpoint_and_keeps_the_last_good_one(tmp_path, mnist_dir):
    script = FULL_DISK + (
        "os.fdopen = fdopen\n"
        "from aelab.train import main\nsys.argv = ['aelab-train', *sys.argv[1:]]\nmain()\n"
    )
    overrides = [
        f"paths.log_dir={tmp_path}",
        f"paths.data_dir={mnist_dir}",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=20",
        "trainer.limit_val_batches=2",
        "~callbacks.evaluation",
        "callbacks.step_checkpoint.every_n_train_steps=5",
    ]
    done = subprocess.run(
        [sys.executable, "-c", script, *overrides],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FULL_AT_WRITE": "2"},  # last.ckpt at step 10; step 5's is good
    )
    (run,) = (tmp_path / "runs").glob("*/*_train")
    last = run / "checkpoints" / "last.ckpt"
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"aelab-train: error: cannot write {last}: No space left on device"
    )
    assert torch.load(last, weights_only=True)["global_step"] == 5
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]


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


def test_atomic_writes_get_the_mode_of_a_plain_new_file(tmp_path):
    """metrics.json, checkpoints and the data folder's PCA cache are readable as a plain open()
    would make them (0o666 less the umask), not mkstemp's owner-only 0o600."""
    mask = os.umask(0o027)
    try:
        plain = tmp_path / "plain"
        plain.write_text("x")
        atomic.write_json_atomic(tmp_path / "metrics.json", {"status": "completed"})
        AtomicCheckpointIO().save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")
    finally:
        os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"plain": 0o640, "metrics.json": 0o640, "last.ckpt": 0o640}
