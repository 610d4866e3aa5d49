"""examples/aelab_examples: aelab extended from outside (WAE-MMD, an IDX-folder datamodule),
unit-tested from its source, and end to end as a user installs it beside aelab's wheel."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.venvs import EXAMPLES, REPO, blobs, idx_folder, installed, user_env, write_idx

from aelab.checks import ConfigError

__all__ = ["installed"]  # a session fixture, shared with test_wheel.py

SRC = EXAMPLES / "src"
CONF = SRC / "aelab_examples" / "conf"


@pytest.fixture
def examples(monkeypatch):
    monkeypatch.syspath_prepend(str(SRC))
    import aelab_examples.idx_folder
    import aelab_examples.wae

    return aelab_examples


def test_imq_mmd_equals_the_sum_written_out(examples):
    g = torch.Generator().manual_seed(0)
    z, p = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g) + 1.0
    scales = (0.5, 2.0)

    def k(a, b, c):
        return c / (c + sum((float(u) - float(v)) ** 2 for u, v in zip(a, b, strict=True)))

    expected = 0.0
    for s in scales:
        c = 2.0 * 3 * s
        n = 4
        within = sum(
            k(z[i], z[j], c) + k(p[i], p[j], c) for i in range(n) for j in range(n) if i != j
        )
        across = sum(k(z[i], p[j], c) for i in range(n) for j in range(n))
        expected += within / (n * (n - 1)) - 2 * across / n**2
    assert examples.wae.imq_mmd(z, p, scales).item() == pytest.approx(expected, rel=1e-5)
    assert examples.wae.imq_mmd(z[:1], p[:1], scales).item() == 0.0


def test_wae_loss_is_reconstruction_plus_weighted_mmd(examples):
    torch.manual_seed(0)
    net = {"_target_": "aelab.nets.MLPNet", "hidden": [16]}
    model = examples.wae.WAE(latent_dim=3, mmd_weight=4.0, net=net)
    x = torch.rand(16, 1, 28, 28)
    parts, logits = model.loss(x, x, torch.Generator().manual_seed(1))
    assert logits.shape == x.shape
    assert parts["loss"].item() == pytest.approx(parts["recon"].item() + 4 * parts["mmd"].item())
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 16
    assert parts["recon"].item() == pytest.approx(bce.item(), rel=1e-5)  # nats per image
    assert model.sample(5, torch.Generator().manual_seed(0)).shape == (5, 1, 28, 28)
    assert not hasattr(model, "posterior")
    with pytest.raises(ConfigError, match=r"mmd_weight=-1 is invalid"):
        examples.wae.WAE(latent_dim=3, mmd_weight=-1, net=net)


def test_idx_folder_serves_the_files_images(examples, tmp_path):
    folder = idx_folder(tmp_path / "idx", n_train=50, n_test=20)
    data = examples.idx_folder.IDXFolderDataModule(str(folder), batch_size=8, val_size=10)
    assert data.image_shape == (1, 28, 28) and data.classes is None
    assert [data.split_size(s) for s in ("train", "val", "test", "other")] == [40, 10, 20, 0]
    x, y = data.split_tensors("test")
    tx, ty = blobs(20, 1)
    assert torch.equal(y, ty)
    assert torch.equal(x, tx.unsqueeze(1).float() / 255)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    fx, fy = data.fixed_batch("test", n=4)
    assert torch.equal(fx, x[:4]) and torch.equal(fy, y[:4])
    # train + val: the training file's images, split without overlap
    (trx, _), (vx, _) = data.split_tensors("train"), data.split_tensors("val")
    every = blobs(50, 0)[0].unsqueeze(1).float() / 255
    assert sorted(map(tuple, torch.cat([trx, vx]).flatten(1).tolist())) == sorted(
        map(tuple, every.flatten(1).tolist())
    )
    batch = next(iter(data.train_dataloader()))
    assert batch[0].shape == (8, 1, 28, 28) and batch[1].shape == (8,)
    with pytest.raises(ValueError, match="split='dev': allowed one of train, val, test"):
        data.split_tensors("dev")


def _bad_folders(tmp_path: Path) -> list[tuple[Path, str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    sizes = idx_folder(tmp_path / "sizes", gz=False)
    write_idx(sizes / "t10k-images-idx3-ubyte", blobs(60, 1, size=32)[0])
    count = idx_folder(tmp_path / "count", gz=False)
    write_idx(count / "t10k-labels-idx1-ubyte", torch.zeros(59, dtype=torch.uint8))
    swapped = idx_folder(tmp_path / "swapped", gz=False)
    write_idx(swapped / "train-labels-idx1-ubyte", blobs(120, 0)[0])
    return [
        (tmp_path / "missing", "no such folder"),
        (empty, "train-images-idx3-ubyte or train-images-idx3-ubyte.gz missing"),
        (sizes, "images of different sizes: train 28x28, test 32x32"),
        (count, "t10k-images-idx3-ubyte holds 60 images, t10k-labels-idx1-ubyte 59 labels"),
        (swapped, "train-images-idx3-ubyte must hold images, train-labels-idx1-ubyte labels"),
    ]


def test_idx_folder_refuses_a_folder_it_cannot_use(examples, tmp_path):
    for folder, why in _bad_folders(tmp_path):
        with pytest.raises(ConfigError) as err:
            examples.idx_folder.IDXFolderDataModule(str(folder))
        assert (
            str(err.value)
            == f"data_dir='{folder}' is invalid: allowed a folder of IDX files ({why})"
        )
    with pytest.raises(
        ConfigError, match=r"val_size=120 is invalid: allowed an integer in \[1, 119\]"
    ):
        examples.idx_folder.IDXFolderDataModule(str(idx_folder(tmp_path / "ok")), val_size=120)


def test_bad_idx_folder_from_the_command_line_is_one_line(tmp_path):
    """The user's configs through --config-dir, the example's code on PYTHONPATH: a folder
    without IDX files is refused before training, and nothing is written."""
    folder = tmp_path / "my_images"
    folder.mkdir()
    (folder / "notes.txt").write_text("not IDX\n")
    out = tmp_path / "out"
    path = f"{SRC}:{REPO / 'src'}"
    cmd = [sys.executable, "-m", "aelab.train", "--config-dir", str(CONF), "model=wae_mmd",
           "data=idx_folder", f"data.data_dir={folder}", f"paths.log_dir={out}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env=user_env(PYTHONPATH=path))  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    # (Lightning's "Seed set to 42" may come before it)
    assert [line for line in done.stderr.splitlines() if "error" in line] == [
        f"aelab-train: error: data.data_dir='{folder}' is invalid: allowed a folder of IDX files "
        "(train-images-idx3-ubyte or train-images-idx3-ubyte.gz missing)"
    ]
    assert "Traceback" not in done.stderr
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert not [p for p in out.rglob("*") if p.is_file()]


TINY = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=3",
    "++trainer.limit_val_batches=1",
    "++trainer.limit_test_batches=1",
    "data.batch_size=16",
    "data.val_size=20",
    "data.eval_batch_size=100",
    "threads=1",
]


@pytest.mark.slow
def test_installed_example_sweeps_reports_and_rescores(installed, tmp_path):
    """pip-installed aelab and aelab_examples (its configs found through its search-path
    plugin): a 2-job sweep of the WAE on synthetic IDX files, aelab-report, aelab-eval."""
    data = idx_folder(tmp_path / "fashion")
    work = tmp_path / "work"
    work.mkdir()
    env = user_env()
    sweep_cmd = [installed.bin("aelab-train"), "-m", "model=wae_mmd", "data=idx_folder",
                 f"data.data_dir={data}", "model.mmd_weight=1,10", *TINY]  # fmt: skip
    done = subprocess.run(sweep_cmd, capture_output=True, text=True, cwd=work, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (work / "outputs" / "multiruns").glob("*/*")
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert [j.name for j in jobs] == ["0_mmd_weight=1", "1_mmd_weight=10"]
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        # a WAE: its MMD part scored, no likelihood figures (no posterior), probes from the labels
        assert math.isfinite(metrics["test/mmd"]) and "test/iw_nll" not in metrics
        assert "test/knn_acc" in metrics
        assert list((job / "tb").glob("events.out.tfevents.*"))
        assert (job / "images" / "gen_prior_samples.png").is_file()
    weight = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    for m, w in zip(weight, (1, 10), strict=True):
        assert m["test/loss"] == pytest.approx(m["test/recon"] + w * m["test/mmd"], rel=1e-4)
    assert (sweep / "summary.md").is_file() and (sweep / "summary.csv").is_file()
    (sweep / "summary.md").unlink()
    report_cmd = [installed.bin("aelab-report"), str(sweep)]
    report = subprocess.run(report_cmd, capture_output=True, text=True, env=env, timeout=300)
    assert report.returncode == 0, report.stderr
    assert "mmd_weight" in (sweep / "summary.md").read_text()

    # aelab-eval re-scores job 1's checkpoint: the same figures as its own test (same weights:
    # one epoch, so last.ckpt is the best; the same images and seeded noise)
    ckpt = jobs[1] / "checkpoints" / "last.ckpt"
    # quoted: the job folder's name holds "=", which Hydra's override grammar would split on
    eval_cmd = [installed.bin("aelab-eval"), f"ckpt_path='{ckpt}'", "threads=1"]
    rescore = subprocess.run(
        eval_cmd, capture_output=True, text=True, cwd=work, env=env, timeout=600
    )
    assert rescore.returncode == 0, rescore.stderr[-3000:]
    (eval_dir,) = (work / "outputs" / "runs").glob("*/*_eval")
    again = json.loads((eval_dir / "metrics.json").read_text())
    for key in ("test/loss", "test/recon", "test/mmd", "test/psnr"):
        assert again[key] == pytest.approx(weight[1][key], rel=1e-5), key
