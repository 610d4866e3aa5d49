"""scripts/benchmark.py --quick runs every loop and prints the table (no timing is asserted)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.mnist]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "benchmark.py"
LOOPS = [
    f"{loop}, {setting}"
    for loop in ("reference AE", "in-memory AE", "in-memory AE + fused Adam", "aelab AE")
    for setting in ("flushed", "denormals")  # denormal floats flushed to zero, and kept
]
NUMBER = r"[-+]?\d+(\.\d+)?"


def test_quick_benchmark_prints_a_row_per_loop(tmp_path, mnist_dir):
    rows_file = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--models", "ae", "--threads", "1"]
    cmd += ["--data-dir", str(mnist_dir), "--json", str(rows_file)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    header = next(ln for ln in done.stdout.splitlines() if ln.startswith("| loop |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in LOOPS:
            rows[cells[0]] = dict(zip(columns, cells, strict=True))
    assert list(rows) == LOOPS
    for name, row in rows.items():
        columns = ("train images", "s/epoch (train)", "s/60k img (train)", "test MSE")
        for column in (*columns, "ms/step early", "ms/step late"):
            assert re.fullmatch(NUMBER, row[column]), (name, column, row[column])
        assert float(row["peak RSS MB"]) > 0, name
    assert re.fullmatch(NUMBER, rows["aelab AE, flushed"]["s/epoch (+val)"])
    assert re.fullmatch(NUMBER, rows["aelab AE, flushed"]["ms/step (+val)"])
    # plain loops have no validation pass
    assert rows["reference AE, flushed"]["s/epoch (+val)"] == "—"
    assert re.search(
        r"aelab AE, flushed / reference AE, flushed, training part: [\d.]+, fastest epochs "
        r"[\d.]+ \(",
        done.stdout,
    )
    assert re.search(
        r"aelab AE, flushed / in-memory AE \+ fused Adam, flushed, per step, whole epoch with "
        r"validation: [\d.]+ \((meets|MISSES) <= 1.2\)",
        done.stdout,
    )
    # flushing changes no figure on this scale: the same test MSE either way, for every loop
    assert re.search(r"- aelab AE: late steps with denormals [\d.]+ ms vs flushed", done.stdout)
    for loop in ("reference AE", "in-memory AE", "aelab AE"):
        mse = {s: float(rows[f"{loop}, {s}"]["test MSE"]) for s in ("flushed", "denormals")}
        assert mse["flushed"] == pytest.approx(mse["denormals"], rel=1e-3), loop

    saved = json.loads(rows_file.read_text())
    assert [r["loop"] for r in saved["rows"]] == LOOPS
    assert all(len(run["times"]) == 2 for runs in saved["runs"].values() for run in runs)


def test_bad_models_argument_is_one_line_error(mnist_dir):
    cmd = [sys.executable, str(SCRIPT), "--models", "gan", "--data-dir", str(mnist_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "--models takes ae and/or vae" in done.stderr


def test_step_overhead_prints_a_row_per_loop(mnist_dir):
    script = SCRIPT.with_name("step_overhead.py")
    cmd = [sys.executable, str(script), "--rounds", "1", "--steps", "60", "--threads", "1"]
    done = subprocess.run(
        [*cmd, "--data-dir", str(mnist_dir)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [ln for ln in done.stdout.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["plain", "bare Trainer", "aelab Trainer"]
    for row in rows[1:]:
        best, median, _ = (float(c) for c in row.strip("|").split("|")[1:])
        assert 0 < best <= median
    assert "+0.00" in rows[1]  # plain is the baseline


def test_overhead_breakdown_prints_each_phase_and_a_verdict(tmp_path, mnist_dir):
    """--overhead on a slice: a row per phase, a verdict per model, and a sweep's later job (the
    second run reads the PCA baseline the first one cached under the data folder)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "MNIST").symlink_to(Path(mnist_dir).resolve() / "MNIST")
    cmd = [sys.executable, str(SCRIPT), "--overhead", "--quick", "--models", "ae"]
    cmd += ["--threads", "1", "--data-dir", str(data), "--json", str(tmp_path / "phases.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "PCA baseline computed and cached; run again" in done.stderr
    [cached] = (data / "cache" / "pca_baselines").iterdir()
    assert cached.name.startswith("pca12_k5_500x10000_")

    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3 and re.fullmatch(NUMBER, cells[1]):
            rows[cells[0]] = float(cells[1])
    for phase in (
        "import torch",
        "import pytorch_lightning (torch already loaded)",
        "Hydra: compose the config, run folder, logging",
        "sanity check (trainer.num_sanity_val_steps)",
        "suite: linear probe and k-NN on the codes",
        "suite: PCA baseline probes, from the cache",
        "interpreter exit",
    ):
        assert rows.get(phase, -1) >= 0, phase
    assert "suite: PCA baseline probes, computed (first job on this split)" not in rows
    assert any(name.startswith("validation (5k images) (10 x ") for name in rows)
    assert re.search(r"\| \*\*fixed cost of a 10-epoch job\*\* \| \*\*[\d.]+\*\* \|", done.stdout)
    assert re.search(
        r"- AE: fixed cost [\d.]+ s = \d+ % of a 10-epoch run's training \([\d.]+ s, "
        r"extrapolated from 2 epochs\): (meets|MISSES) the 25 % target",
        done.stdout,
    )
    assert "load average" in done.stdout
    saved = json.loads((tmp_path / "phases.json").read_text())
    assert saved["ae"]["epochs"] == 2 and saved["ae"]["train_s"] > 0


def test_stacked_comparison_prints_a_row_per_model_and_size(tmp_path, mnist_dir):
    """--stacked takes any preset that stacks (here the IWAE, trained through its own loss)."""
    cmd = [sys.executable, str(SCRIPT), "--stacked", "2", "--models", "iwae"]
    cmd += ["--stacked-batches", "3", "--threads", "1", "--data-dir", str(mnist_dir)]
    cmd += ["--json", str(tmp_path / "stacked.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^\| IWAE \| 2 \| \d+ \| \d+ \| [\d.]+ x \|$", done.stdout, re.M)
    [row] = json.loads((tmp_path / "stacked.json").read_text())["stacked"]
    assert row["model"] == "iwae" and row["M"] == 2
    # the ratio is the two throughputs' quotient, as printed
    assert row["ratio"] == pytest.approx(row["stacked_img_s"] / row["sequential_img_s"])


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("vqvae", "benchmark: model=vqvae does not stack: model._target_=aelab.models.VQVAE: its "
         "codebook lies outside the encoder and decoder"),
        ("gan", "benchmark: --stacked --models takes presets of conf/model ("
         + ", ".join(sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml")))
         + "), not 'gan'"),
    ],
)  # fmt: skip
def test_stacked_comparison_refuses_a_model_in_one_line(mnist_dir, models, message):
    cmd = [sys.executable, str(SCRIPT), "--stacked", "2", "--models", models]
    done = subprocess.run(
        [*cmd, "--data-dir", str(mnist_dir)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(message), done.stderr[-2000:]
