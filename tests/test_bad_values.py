"""Seeds and precisions that cannot work are one line before anything is built or written."""

import pytest

from aelab.checks import ConfigError
from aelab.train import check_trainer, train


@pytest.mark.parametrize(
    "override, line",
    [
        ("seed=abc", "seed='abc' is invalid: allowed an integer in [0, 4294967295]"),
        ("seed=-1", "seed=-1 is invalid: allowed an integer in [0, 4294967295]"),
        ("seed=99999999999", "seed=99999999999 is invalid: allowed an integer in [0, 4294967295]"),
        ("seed=4294967296", "seed=4294967296 is invalid: allowed an integer in [0, 4294967295]"),
        ("data.seed=-2", "data.seed=-2 is invalid: allowed an integer in [0, 4294967295]"),
        (
            "data.split_seed=x",
            "data.split_seed='x' is invalid: allowed an integer in [0, 4294967295]",
        ),
        ("eval.seed=1.5", "eval.seed=1.5 is invalid: allowed an integer in [0, 4294967295]"),
    ],
)
def test_every_seed_like_key_is_checked_before_anything_is_written(
    make_cfg, tmp_path, override, line
):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert str(err.value) == line
    assert not (tmp_path / "run.json").exists()


def test_the_largest_seed_passes(make_cfg):
    from aelab.checks import check_seeds

    check_seeds(make_cfg("seed=4294967295", "eval.seed=0"))


@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true", 64])
def test_a_precision_other_than_float32_data_allows_is_refused(make_cfg, precision):
    with pytest.raises(ConfigError) as err:
        check_trainer(make_cfg(f"trainer.precision={precision}").trainer)
    assert str(err.value).startswith(f"trainer.precision={precision!r} is invalid: allowed 32-true")


@pytest.mark.parametrize("precision", ["32-true", "32", "bf16-mixed", "16-mixed"])
def test_float32_and_mixed_precisions_pass(make_cfg, precision):
    check_trainer(make_cfg(f"trainer.precision={precision}").trainer)


@pytest.mark.slow
@pytest.mark.mnist
def test_a_value_lightning_refuses_at_the_start_of_training_leaves_no_folder(tmp_path, mnist_dir):
    """`val_check_interval` beyond the epoch's batches: Lightning checks it only against the
    data, once training starts, after run.json and the TensorBoard folder were written."""
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "aelab.train", "debug=smoke", "++trainer.val_check_interval=25000"]
    cmd += [f"paths.data_dir={mnist_dir}", f"hydra.run.dir={run_dir}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        "aelab-train: error: trainer.val_check_interval=25000 is invalid: allowed what Lightning "
        "accepts (`val_check_interval` (25000) must be less than or equal to the number of the "
        "training batches (20)."
    )
    assert not run_dir.exists()


def _mlp_params(widths):
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=False))


@pytest.mark.parametrize("latent_dim, fits", [(12, True), (1000, False)])
def test_a_latent_size_whose_training_cannot_fit_in_memory_is_named(
    make_cfg, monkeypatch, latent_dim, fits
):
    """With 4 MiB free: the default AE (784-128-64-d and back) needs 16 bytes a parameter
    (weights, gradient, Adam's two moments); d = 12 fits, d = 1000 does not, d = 1 would."""
    import aelab.models.base as base
    from aelab.train import build_model

    free = 4 * 2**20
    monkeypatch.setattr(base, "available_memory_bytes", lambda: free)
    count = _mlp_params([784, 128, 64, latent_dim]) + _mlp_params([latent_dim, 64, 128, 784])
    assert (16 * count <= free) == fits
    cfg = make_cfg(f"model.latent_dim={latent_dim}")
    if fits:
        build_model(cfg)
        return
    with pytest.raises(ConfigError) as err:
        build_model(cfg)
    assert str(err.value) == (
        f"model.latent_dim={latent_dim} is invalid: allowed a size whose training fits in memory "
        f"({count:.3g} parameters, {16 * count / 2**30:.3g} GiB with Adam's state; "
        f"{free / 2**30:.3g} GiB free)"
    )


def test_widths_whose_training_cannot_fit_name_the_net(make_cfg, monkeypatch):
    import aelab.models.base as base
    from aelab.train import build_model

    monkeypatch.setattr(base, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(ConfigError) as err:
        build_model(make_cfg("net.hidden=[4096]"))
    assert str(err.value).startswith(
        "net={'hidden': [4096], 'activation': 'relu'} is invalid: allowed a size whose training "
        "fits in memory"
    )
