"""The extension seams: the user's config folders, `_target_`s that cannot be imported, user
classes that are not aelab models; the suite's skips for what a model or datamodule cannot give."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from aelab.checks import ConfigError, check_search_path
from aelab.contract import check_model
from aelab.train import build_model

REPO_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (REPO_SRC, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.mark.parametrize(
    "args, shown",
    [
        (["--config-dir", "{nope}"], "--config-dir='{nope}' is invalid: allowed a folder"),
        (["--config-dir={nope}"], "--config-dir='{nope}' is invalid"),
        (["-cd", "{nope}"], "--config-dir='{nope}' is invalid"),
        (["hydra.searchpath=[file://{nope}]"], "hydra.searchpath='file://{nope}' is invalid"),
        (["hydra.searchpath=[pkg://no_such_pkg.conf]"], "(no no_such_pkg.conf)"),
    ],
)
def test_missing_config_folder_is_one_error(tmp_path, args, shown):
    nope = str(tmp_path / "no_conf")
    args = [a.format(nope=nope) for a in args]
    with pytest.raises(ConfigError) as err:
        check_search_path(["model=ae", *args, "trainer.max_epochs=1"])
    assert shown.format(nope=nope) in str(err.value)


def test_existing_config_folders_pass(tmp_path):
    check_search_path(["--config-dir", str(tmp_path), f"hydra.searchpath=[file://{tmp_path}]"])
    check_search_path(["hydra.searchpath=[pkg://aelab]"])
    (tmp_path / "file.yaml").write_text("a: 1\n")
    with pytest.raises(ConfigError, match="not a folder"):
        check_search_path(["--config-dir", str(tmp_path / "file.yaml")])


@pytest.mark.parametrize("program", ["aelab.train", "aelab.eval"])
def test_missing_config_dir_exits_2_writing_nothing(tmp_path, program):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", program, "--config-dir", str(tmp_path / "no_conf"),
         f"paths.log_dir={out}", "trainer.max_epochs=1"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    name = program.replace(".", "-")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{name}: error: --config-dir='{tmp_path / 'no_conf'}' is invalid: allowed a folder of "
        f"configs ({tmp_path / 'no_conf'}: it does not exist)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's module on sys.path: a model lacking loss, a broken import, a factory."""
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from aelab.models.base import AutoencoderModule

            class NoLoss(AutoencoderModule):
                pass

            class Plain(torch.nn.Module):
                def encode(self, x):
                    return x

            def linear(**kwargs):
                return torch.nn.Linear(2, 2)
            """
        )
    )
    (tmp_path / "my_broken.py").write_text("import not_installed_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("my_models", "my_broken"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "target, allowed",
    [
        (
            "nope.Model",
            "an importable class or function (ModuleNotFoundError: No module named 'nope')",
        ),
        (
            "my_broken.Model",
            "an importable class or function (ModuleNotFoundError: "
            "No module named 'not_installed_dependency')",
        ),
        (
            "my_models.NoLoss",
            "a subclass of aelab.models.base.AutoencoderModule (it lacks loss())",
        ),
        (
            "my_models.Plain",
            "a subclass of aelab.models.base.AutoencoderModule (it lacks decode(), loss(), the "
            "training steps and checkpoints of aelab.models.base.AutoencoderModule)",
        ),
        (
            "aelab.nets.MLPNet",
            "a subclass of aelab.models.base.AutoencoderModule (it lacks encode(), decode(), "
            "loss(), the training steps and checkpoints of aelab.models.base.AutoencoderModule)",
        ),
    ],
)
def test_model_target_refused_naming_what_it_lacks(make_cfg, user_module, target, allowed):
    cfg = make_cfg(f"model._target_={target}")
    with pytest.raises(ConfigError) as err:
        build_model(cfg)
    assert str(err.value) == f"model._target_='{target}' is invalid: allowed {allowed}"


def test_data_target_that_cannot_be_imported_names_it(make_cfg):
    from aelab.checks import build

    cfg = make_cfg("data._target_=my_data.Folder")
    with pytest.raises(ConfigError) as err:
        build(cfg.data, "data")
    assert str(err.value) == (
        "data._target_='my_data.Folder' is invalid: allowed an importable class or function "
        "(ModuleNotFoundError: No module named 'my_data')"
    )


def test_factory_returning_something_else_is_refused(user_module):
    with pytest.raises(ConfigError, match=r"it returned Linear, lacking encode\(\), decode\(\)"):
        check_model(torch.nn.Linear(2, 2), "my_models.linear")
