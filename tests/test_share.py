"""aelab-export and aelab.from_pretrained: a real, tiny trained run exported, loaded back and
tested again; the folder's refusals (a missing or altered file, --push without a token)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

import aelab
from aelab.share import FILES, MANIFEST, PretrainedFolderError


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=env or dict(os.environ)
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mnist_dir) -> Path:
    """`aelab-train model=vae debug=smoke` with 1 test batch: its test figures in metrics.json."""
    root = tmp_path_factory.mktemp("share")
    done = _run(
        "-m", "aelab.train", f"paths.root_dir={root}", f"paths.data_dir={mnist_dir}",
        "model=vae", "model.latent_dim=4", "debug=smoke", "trainer.limit_train_batches=5",
        "trainer.limit_test_batches=1", "eval.images=false", "threads=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = (root / "outputs" / "runs").glob("*/*_train")
    return found


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "model"
    done = _run("-m", "aelab.share", str(run_dir), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.mnist
def test_round_trip_gives_the_runs_test_figures(run_dir, exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted([*FILES, MANIFEST])
    model = aelab.from_pretrained(exported)
    assert not model.training
    # the same weights as the run's best checkpoint
    by_run = aelab.load_run(run_dir).model
    for name, value in by_run.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name

    # the test-time suite again, on a fresh Trainer: the figures the run itself recorded
    cfg = OmegaConf.load(exported / "config.yaml")
    from aelab.train import build

    pl.seed_everything(cfg.seed, workers=True)
    trainer = pl.Trainer(
        logger=False, accelerator="cpu", enable_progress_bar=False, enable_checkpointing=False,
        limit_test_batches=cfg.trainer.limit_test_batches,
    )  # fmt: skip
    figures = trainer.test(model, datamodule=build(cfg.data, "data"), verbose=False)[0]
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert "test/neg_elbo" in figures
    for name, value in figures.items():
        assert float(value) == pytest.approx(recorded[name], abs=1e-6), name

    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model.encode(x).shape == (5, 4)
        assert model.decode(torch.zeros(5, 4)).shape == (5, 1, 28, 28)
        assert model.sample(3).shape == (3, 1, 28, 28)

    card = (exported / "README.md").read_text()
    argv = json.loads((run_dir / "run.json").read_text())["argv"]
    assert "model=vae" in argv and "aelab-train " + " ".join(argv[1:]) in card
    assert f"| test/neg_elbo | {recorded['test/neg_elbo']:.6g} |" in card
    assert (exported / "metrics.json").read_text() == (run_dir / "metrics.json").read_text()


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("name", ["model.safetensors", "config.yaml", "samples.png"])
def test_a_missing_or_altered_file_is_refused_in_one_line(exported, tmp_path, name):
    missing = tmp_path / "missing"
    shutil.copytree(exported, missing)
    (missing / name).unlink()
    with pytest.raises(PretrainedFolderError, match=f"{name} missing$") as err:
        aelab.from_pretrained(missing)
    assert "\n" not in str(err.value)

    altered = tmp_path / "altered"
    shutil.copytree(exported, altered)
    data = bytearray((altered / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    (altered / name).write_bytes(bytes(data))
    with pytest.raises(PretrainedFolderError, match=f"{name} altered") as err:
        aelab.from_pretrained(altered)
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.mnist
def test_export_refuses_a_folder_that_holds_files(run_dir, exported):
    done = _run("-m", "aelab.share", str(run_dir), str(exported))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"aelab-export: error: {exported}: allowed an empty or new folder (this one holds files)"
    ]


def test_push_without_a_token_says_what_is_missing_and_writes_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env["HF_HOME"] = str(tmp_path / "hf_home")  # empty: no stored token either
    (tmp_path / "hf_home").mkdir()
    out = tmp_path / "out"
    done = _run("-m", "aelab.share", str(tmp_path / "any_run"), str(out), "--push", "u/m", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "aelab-export: error: --push u/m needs a Hugging Face token: none found "
        "(set HF_TOKEN, or log in with `hf auth login`)"
    ]
    assert not out.exists()


def test_not_an_export_is_refused(tmp_path):
    with pytest.raises(PretrainedFolderError, match=f"not an aelab export \\({MANIFEST} missing"):
        aelab.from_pretrained(tmp_path)
