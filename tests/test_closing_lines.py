"""The lines aelab-train prints at the end name only files and logs the run wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from aelab.train import _say_where


def closing_lines(capsys, run: Path, best: str, loggers: list) -> dict[str, str]:
    ckpt = ModelCheckpoint(dirpath=run / "checkpoints", monitor="val/loss")
    ckpt.best_model_path = best
    trainer = SimpleNamespace(checkpoint_callbacks=[ckpt], loggers=loggers)
    _say_where(run, trainer, {"test/loss": 1.234567891, "val/loss": 2.0})
    out = capsys.readouterr().out.splitlines()
    return dict(line.split(":", 1) for line in out)


def test_both_checkpoints_and_tensorboard_when_all_were_written(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    (tmp_path / "checkpoints" / "epoch003.ckpt").write_bytes(b"")
    tb = TensorBoardLogger(save_dir=tmp_path, name="tb", version="")
    lines = closing_lines(capsys, tmp_path, str(tmp_path / "checkpoints/epoch003.ckpt"), [tb])
    folder = tmp_path / "checkpoints"
    assert lines["checkpoints"].strip() == f"{folder} (last.ckpt, best epoch003.ckpt)"
    assert lines["tensorboard"].strip() == f"tensorboard --logdir {tmp_path}"
    assert lines["test metrics"].strip() == "{'test/loss': 1.23457}"


def test_the_tensorboard_hint_is_one_shell_argument_for_a_folder_with_spaces(tmp_path, capsys):
    import shlex

    run = tmp_path / "my runs" / "it's here"
    run.mkdir(parents=True)
    tb = TensorBoardLogger(save_dir=run, name="tb", version="")
    hint = closing_lines(capsys, run, "", [tb])["tensorboard"].strip()
    assert shlex.split(hint) == ["tensorboard", "--logdir", str(run)]


def test_no_best_checkpoint_without_validation(tmp_path, capsys):
    # limit_val_batches=0: val/loss is never logged, so there is no best checkpoint
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    lines = closing_lines(capsys, tmp_path, "", [])
    assert lines["checkpoints"].strip() == f"{tmp_path / 'checkpoints'} (last.ckpt)"


def test_no_checkpoint_line_when_none_was_written(tmp_path, capsys):
    lines = closing_lines(capsys, tmp_path, "", [])
    assert list(lines) == ["run directory", "test metrics"]


@pytest.mark.parametrize("loggers", [[], ["csv"]], ids=["logger=none", "logger=csv"])
def test_no_tensorboard_hint_without_a_tensorboard_logger(tmp_path, capsys, loggers):
    loggers = [CSVLogger(save_dir=tmp_path, name="csv", version="") for _ in loggers]
    assert "tensorboard" not in closing_lines(capsys, tmp_path, "", loggers)


@pytest.mark.slow
@pytest.mark.mnist
def test_a_run_without_validation_or_logger_names_what_it_wrote(tmp_path, mnist_dir):
    cmd = [sys.executable, "-m", "aelab.train", f"paths.log_dir={tmp_path}"]
    cmd += [f"paths.data_dir={mnist_dir}", "logger=none", "trainer.max_epochs=1", "threads=1"]
    cmd += ["++trainer.limit_train_batches=5", "++trainer.limit_val_batches=0"]
    cmd += ["++trainer.limit_test_batches=1", "~callbacks.evaluation"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "runs").glob("*/*_train")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert f"checkpoints:    {run / 'checkpoints'} (last.ckpt)\n" in done.stdout
    assert "tensorboard" not in done.stdout
    assert not (run / "tb").exists()
