"""What a job costs beyond its training: the PCA baseline computed once per data split and reused
(a cache under the data folder that parallel jobs may race on), SSIM off oneDNN's slow path, and
no garbage collection of the whole heap at exit."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval_suite import SMALL, TinyData, run_test
from torchmetrics.functional.image import structural_similarity_index_measure

from aelab.metrics import probes
from aelab.metrics.probes import PCABaselineCache, pca_baseline_scores, probe_scores
from aelab.models import Autoencoder
from aelab.models.base import ssim

REPO = Path(__file__).resolve().parents[1]


def labelled_images(seed: int = 0, n: int = 1500) -> tuple[tuple, tuple]:
    """Images whose label lies in their high-variance pixels, codes that are noise: (codes,
    images, labels) for training (first two thirds) and testing."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    pixels = np.eye(10)[y] * 5.0 + 0.3 * rng.standard_normal((n, 10))
    images = np.hstack([pixels, 0.01 * rng.standard_normal((n, 40))]).astype(np.float32)
    codes = rng.standard_normal((n, 4)).astype(np.float32)
    cut = 2 * n // 3
    return (codes[:cut], images[:cut], y[:cut]), (codes[cut:], images[cut:], y[cut:])


@pytest.fixture
def pca_fits(monkeypatch) -> list[int]:
    """Counts PCA fits (every computation of the baseline makes one)."""
    calls: list[int] = []
    fit = probes.pca_codes

    def counted(*args, **kwargs):
        calls.append(1)
        return fit(*args, **kwargs)

    monkeypatch.setattr(probes, "pca_codes", counted)
    return calls


def test_a_second_job_reads_the_pca_baseline_instead_of_computing_it(tmp_path, pca_fits):
    train, test = labelled_images()
    uncached = probe_scores(train, test, k=5)
    assert len(pca_fits) == 1

    first = PCABaselineCache(tmp_path)
    assert probe_scores(train, test, k=5, cache=first) == uncached
    assert (first.computed, first.hits, len(pca_fits)) == (1, 0, 2)
    [path] = tmp_path.iterdir()
    assert path.name.startswith("pca4_k5_1000x500_")
    before = path.stat()

    second = PCABaselineCache(tmp_path)  # another job of the sweep: a cache of its own
    timings: dict[str, float] = {}
    assert probe_scores(train, test, k=5, cache=second, timings=timings) == uncached
    assert (second.computed, second.hits, len(pca_fits)) == (0, 1, 2)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert set(timings) == {"probes", "probes_pca_cached"}
    # the stored figures are the baseline's own, computed independently here
    stored = json.loads(path.read_text())
    x_tr, y_tr, x_te, y_te = train[1], train[2], test[1], test[2]
    assert stored == pca_baseline_scores(x_tr, y_tr, x_te, y_te, dims=4, k=5)


def test_another_split_size_or_k_gets_its_own_entry(tmp_path, pca_fits):
    train, test = labelled_images()
    cache = PCABaselineCache(tmp_path)
    probe_scores(train, test, k=5, cache=cache)
    # one label changed: the same sizes, another split
    other = (train[0], train[1], np.r_[(train[2][0] + 1) % 10, train[2][1:]])
    probe_scores(other, test, k=5, cache=cache)
    probe_scores(train, test, k=3, cache=cache)
    probe_scores((train[0][:, :3], *train[1:]), (test[0][:, :3], *test[1:]), k=5, cache=cache)
    # k-NN impossible (k over the training images): the linear figure alone, in its own entry
    few = tuple(a[:4] for a in train)
    assert set(probe_scores(few, test, k=5, cache=cache)) == {
        "linear_probe_acc",
        "linear_probe_acc_pca",
    }
    assert (cache.computed, cache.hits, len(pca_fits)) == (5, 0, 5)
    assert len(list(tmp_path.iterdir())) == 5
    assert probe_scores(few, test, k=5, cache=cache)["linear_probe_acc_pca"] is not None
    assert (cache.computed, cache.hits) == (5, 1)


@pytest.mark.parametrize(
    "content",
    [
        "",
        '{"linear_probe_acc_pca": 0.9',  # a write cut short (not ours: they are atomic)
        "[0.9, 0.9]",
        '{"linear_probe_acc_pca": "0.9", "knn_acc_pca": 0.9}',
        '{"linear_probe_acc_pca": 1.5, "knn_acc_pca": 0.9}',
        '{"linear_probe_acc_pca": 0.9}',
    ],
)
def test_a_corrupt_cache_file_is_rebuilt(tmp_path, pca_fits, caplog, content):
    train, test = labelled_images()
    truth = probe_scores(train, test, k=5)
    cache = PCABaselineCache(tmp_path)
    path = cache.path((train[1], train[2], test[1], test[2]), dims=4, k=5)
    path.write_text(content)
    assert probe_scores(train, test, k=5, cache=cache) == truth
    assert (cache.computed, cache.hits, len(pca_fits)) == (1, 0, 2)
    assert [r.message for r in caplog.records if "recomputed" in r.message] != []
    assert json.loads(path.read_text()) == {k: truth[k] for k in probes.PCA_KEYS}
    assert probe_scores(train, test, k=5, cache=PCABaselineCache(tmp_path)) == truth
    assert len(pca_fits) == 2


def test_jobs_racing_on_an_empty_cache_leave_one_whole_file(tmp_path, monkeypatch):
    """Six jobs miss the cache together and write at once while another job reads: every read
    finds no file or a whole one, and one whole file is left, with no temp files."""
    train, test = labelled_images()
    x_tr, y_tr, x_te, y_te = train[1], train[2], test[1], test[2]
    truth = pca_baseline_scores(x_tr, y_tr, x_te, y_te, dims=4, k=5)
    writers = 6
    barrier = threading.Barrier(writers)

    def computed_together(*args, **kwargs):
        barrier.wait(timeout=30)  # all have missed the cache: now all write
        return dict(truth)

    monkeypatch.setattr(probes, "pca_baseline_scores", computed_together)
    path = PCABaselineCache(tmp_path).path((x_tr, y_tr, x_te, y_te), dims=4, k=5)
    results: list[dict[str, float]] = []
    seen: list[str] = []
    done = threading.Event()

    def job() -> None:
        results.append(PCABaselineCache(tmp_path).scores((x_tr, y_tr, x_te, y_te), dims=4, k=5))

    def reader() -> None:
        # until the writers are done, and then at least until one read found the file (on a
        # loaded machine the writers may finish before this thread is scheduled again)
        deadline = time.monotonic() + 60
        while (not done.is_set() or not seen) and time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                seen.append(path.read_text())

    threads = [threading.Thread(target=job) for _ in range(writers)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    watcher.join(timeout=10)
    assert results == [truth] * writers
    assert seen, "the reader never saw the file"
    assert all(json.loads(text) == truth for text in seen)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert json.loads(path.read_text()) == truth


class DataWithFolder(TinyData):
    """TinyData with the data folder the MNIST datamodule has (where the cache goes)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.data_dir = data_dir


def test_the_suite_gives_the_same_probe_figures_with_and_without_the_cache(tmp_path, pca_fits):
    torch.manual_seed(0)
    model = Autoencoder(latent_dim=3, net=SMALL)
    data = DataWithFolder(tmp_path / "data")
    keys = {f"test/{k}" for k in ("linear_probe_acc", "knn_acc", *probes.PCA_KEYS)}

    def probe_figures(run: str, **suite) -> dict[str, float]:
        out = run_test(model, data, tmp_path / run, **suite)
        return {k: v for k, v in out.items() if k in keys}

    uncached = probe_figures("off", pca_cache=False)
    assert set(uncached) == keys and len(pca_fits) == 1
    assert not (tmp_path / "data").exists()
    assert probe_figures("cold", pca_cache=True) == uncached
    [path] = (tmp_path / "data" / "cache" / "pca_baselines").iterdir()
    assert len(pca_fits) == 2
    assert probe_figures("warm", pca_cache=True) == uncached
    assert len(pca_fits) == 2  # the second run read the baseline
    # a model-free figure: another model of the same latent size reads the same entry
    other = Autoencoder(latent_dim=3, net={**SMALL, "hidden": [16]})
    out = run_test(other, data, tmp_path / "other", pca_cache=True)
    assert out["test/linear_probe_acc_pca"] == uncached["test/linear_probe_acc_pca"]
    assert len(pca_fits) == 2 and len(list(path.parent.iterdir())) == 1


def test_ssim_matches_torchmetrics_default_path_and_restores_onednn():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert torch.backends.mkldnn.enabled
    expected = structural_similarity_index_measure(x, y, data_range=1.0, reduction="none").mean()
    assert float(ssim(x, y)) == pytest.approx(float(expected), abs=1e-6)
    assert torch.backends.mkldnn.enabled
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_a_job_process_freezes_the_heap_at_exit():
    """Python's last collection skips frozen objects; aelab.train freezes them when it exits."""
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "import aelab.train\n"  # its handler, registered later, runs first
        "print('frozen before exit:', gc.get_freeze_count() > 0)\n"
    )
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["frozen before exit: False", "frozen at exit: True"]


def test_a_callback_or_logger_set_to_null_is_left_out(make_cfg):
    """`--override callbacks.images=null` (benchmark.py: what one part costs) switches it off;
    Lightning would fail on the None at its first hook."""
    from pytorch_lightning.callbacks import LearningRateMonitor

    from aelab.board import TensorBoardLogger
    from aelab.callbacks import ImageGrids
    from aelab.train import build_trainer

    cfg = make_cfg("callbacks.images=null", "callbacks.lr_monitor=null", "++logger.csv=null")
    trainer = build_trainer(cfg)
    kinds = {type(cb) for cb in trainer.callbacks}
    assert None not in trainer.callbacks and not {ImageGrids, LearningRateMonitor} & kinds
    assert [type(lg) for lg in trainer.loggers] == [TensorBoardLogger]
    full = build_trainer(make_cfg())
    assert {ImageGrids, LearningRateMonitor} <= {type(cb) for cb in full.callbacks}
