"""The benchmark's verdicts: a target is settled only when medians and fastest epochs agree."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
spec = importlib.util.spec_from_file_location("aelab_benchmark", SCRIPT)
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


def run(epochs, images=60_000):
    return {"times": epochs, "times_with_val": [t + 0.1 for t in epochs], "images": images}


def verdict(seed_epochs, aelab_epochs):
    rows = {
        "seed VAE": benchmark.summarize("seed VAE", [run(seed_epochs)], warmup=1),
        "aelab VAE": benchmark.summarize("aelab VAE", [run(aelab_epochs, 55_000)], warmup=1),
    }
    lines = benchmark.verdicts(rows, ["vae"])
    return next(ln for ln in lines if "aelab VAE / seed VAE, training part" in ln)


@pytest.mark.parametrize(
    ("seed", "aelab", "expected"),
    [
        ([99, 10, 10, 10], [99, 4.4, 4.4, 4.4], "0.48, fastest epochs 0.48 (meets <= 0.5)"),
        ([99, 10, 10, 10], [99, 6.0, 6.0, 6.0], "0.65, fastest epochs 0.65 (MISSES <= 0.5)"),
        # a slow spell in the seed's epochs flatters the medians; the fastest epochs do not
        ([99, 8, 11, 11], [99, 4.4, 4.4, 4.6], "0.44, fastest epochs 0.60 (UNSETTLED"),
    ],
)
def test_ratio_verdicts(seed, aelab, expected):
    assert expected in verdict(seed, aelab)


def test_fastest_epoch_skips_the_warmup_and_scales_to_60k():
    row = benchmark.summarize("aelab VAE", [run([1.0, 5.5, 6.6]), run([9.0, 7.7])], warmup=1)
    assert row["s_60k_fastest"] == pytest.approx(5.5)
    row = benchmark.summarize("aelab VAE", [run([1.0, 5.5], images=55_000)], warmup=1)
    assert row["s_60k_fastest"] == pytest.approx(6.0)
