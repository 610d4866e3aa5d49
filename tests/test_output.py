"""What a run prints: no Lightning tip or warning a user cannot act on, warnings on lines of
their own, and everything with `verbose=true` (aelab.run.output)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings

import pytest

from aelab.run import output

TIP = "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"


@pytest.fixture
def restored():
    yield
    output.quiet_lightning(verbose=True)
    warnings.showwarning = output._ORIGINAL_SHOWWARNING


def lightning_says(caplog, message: str) -> bool:
    """Whether a line Lightning logs as its connector does (`rank_zero_info`) gets through."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        logging.getLogger("pytorch_lightning.utilities.rank_zero").info(message)
    return message in caplog.text


def test_tips_and_notices_go_and_come_back_with_verbose(caplog, restored):
    output.quiet_lightning(verbose=False)
    output.quiet_lightning(verbose=False)  # a sweep's second job: still one filter
    assert len(logging.getLogger("lightning_fabric.utilities.seed").filters) == 1
    for line in (TIP, "GPU available: False, used: False", "TPU available: False, using: 0"):
        assert not lightning_says(caplog, line), line
    # what a user can act on stays
    assert lightning_says(caplog, "GPU available but not used. You can set it by doing ...")
    assert lightning_says(caplog, "`Trainer.fit` stopped: `max_epochs=1` reached.")
    output.quiet_lightning(verbose=True)
    assert lightning_says(caplog, TIP)


@pytest.mark.slow
@pytest.mark.mnist
def test_a_smoke_run_prints_no_tip_and_no_warning_it_cannot_act_on(tmp_path, mnist_dir):
    cmd = [sys.executable, "-m", "aelab.train", "debug=smoke", f"paths.log_dir={tmp_path}"]
    cmd += [f"paths.data_dir={mnist_dir}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = re.split(r"[\r\n]", done.stdout + done.stderr)
    for unwanted in ("litlogger", "litmodels", "💡", "Seed set to", "LeafSpec", "deprecated"):
        assert not [line for line in lines if unwanted in line], unwanted
    assert not [line for line in lines if line.startswith(("GPU available: F", "TPU available"))]
    # a warning is a line of its own, never the tail of a progress bar's line
    assert not [line for line in lines if re.search(r"it/s\].*\.py:\d+: ", line)]
    assert any(line.startswith("test metrics:") for line in lines)
