"""The benchmark's verdicts: a target is settled only when medians and fastest epochs agree."""

import pytest

from aelab.bench import tables as benchmark


def run(epochs, images=60_000):
    return {"times": epochs, "times_with_val": [t + 0.1 for t in epochs], "images": images}


def verdict(seed_epochs, aelab_epochs):
    ref, aelab = "reference VAE, flushed", "aelab VAE, flushed"
    rows = {
        ref: benchmark.summarize(ref, [run(seed_epochs)], warmup=1),
        aelab: benchmark.summarize(aelab, [run(aelab_epochs, 55_000)], warmup=1),
    }
    lines = benchmark.verdicts(rows, ["vae"])
    return next(ln for ln in lines if f"{aelab} / {ref}, training part" in ln)


@pytest.mark.parametrize(
    ("seed", "aelab", "expected"),
    [
        ([99, 10, 10, 10], [99, 4.4, 4.4, 4.4], "0.48, fastest epochs 0.48 (meets <= 0.5)"),
        ([99, 10, 10, 10], [99, 6.0, 6.0, 6.0], "0.65, fastest epochs 0.65 (MISSES <= 0.5)"),
        # a slow spell in the reference loop's epochs flatters the medians; fastest epochs do not
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


@pytest.mark.parametrize(
    ("aelab_with_val", "expected"), [(2.3, "1.15 (meets"), (2.5, "1.25 (MISSES")]
)
def test_per_step_target_sets_aelabs_whole_epoch_against_the_fused_plain_loop(
    aelab_with_val, expected
):
    """Both train 55k images (860 steps): the ratio of seconds per step is that of the epochs,
    aelab's with its validation (run() adds 0.1 s), the plain loop's training alone."""
    aelab, fused = "aelab AE, flushed", "in-memory AE + fused Adam, flushed"
    rows = {
        aelab: benchmark.summarize(aelab, [run([9.0, aelab_with_val - 0.1] * 2, 55_000)], 1),
        fused: benchmark.summarize(fused, [run([9.0, 2.0, 2.0], 55_000)], 1),
    }
    line = next(ln for ln in benchmark.verdicts(rows, ["ae"]) if "per step" in ln)
    assert f"whole epoch with validation: {expected} <= 1.2)" in line


def test_denormal_lines_compare_the_last_epochs_of_the_two_settings():
    kept, flushed = "aelab VAE, denormals", "aelab VAE, flushed"
    rows = {
        kept: benchmark.summarize(kept, [run([5.0, 8.6], 55_000)], 1),
        flushed: benchmark.summarize(flushed, [run([5.0, 4.3], 55_000)], 1),
    }
    (line,) = benchmark.denormal_lines(rows)
    steps = 860  # ceil(55_000 / 64)
    late = (8.6 / steps * 1e3, 4.3 / steps * 1e3)
    assert line.startswith(f"- aelab VAE: late steps with denormals {late[0]:.2f} ms vs flushed")
    assert "(2.00x)" in line
