"""Bad values fail before training, with one line naming the field, the value and the range."""

import subprocess
import sys

import pytest

from aelab.checks import ConfigError
from aelab.train import train

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
