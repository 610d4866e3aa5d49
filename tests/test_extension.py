"""The extension seams: the user's config folders, `_target_`s that cannot be imported, user
classes that are not aelab models; the suite's skips for what a model or datamodule cannot give."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest
import pytorch_lightning as pl
import torch
from conftest import synthetic_images
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from aelab.callbacks import ImageGrids
from aelab.callbacks.eval_suite import EvaluationSuite
from aelab.checks import ConfigError, check_search_path
from aelab.contract import check_model
from aelab.models import VAE, Autoencoder
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
        (  # a misspelt class in a module that imports: the class is named, not the module
            "my_models.NoLos",
            "an importable class or function (AttributeError: module 'my_models' has no "
            "attribute 'NoLos')",
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
def test_model_target_refused_naming_what_it_lacks(
    make_cfg, user_module, target, allowed, caplog
):
    cfg = make_cfg(f"model._target_={target}")
    with caplog.at_level(logging.ERROR), pytest.raises(ConfigError) as err:
        build_model(cfg)
    assert str(err.value) == f"model._target_='{target}' is invalid: allowed {allowed}"
    assert not caplog.records  # the one line is all: no error logged before it


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


# --- the suite on a user's model and datamodule --------------------------------------------------
class ContractData(pl.LightningDataModule):
    """A user's datamodule as README's "Bring your own data" asks: splits through split_size /
    split_tensors / fixed_batch, no `splits` attribute, classes null."""

    image_shape = (1, 28, 28)
    classes = None
    data_dir = None

    def __init__(self) -> None:
        super().__init__()
        (x, y), (tx, ty) = synthetic_images(300, seed=0), synthetic_images(200, seed=1)
        self._data = {"train": (x, y), "test": (tx, ty)}

    def split_size(self, split: str) -> int:
        return len(self._data[split][1]) if split in self._data else 0

    def split_tensors(self, split, indices=None, *, seed=None):
        if split not in self._data:
            raise ValueError(f"no split {split!r}")
        x, y = self._data[split]
        if indices is not None:
            x, y = x[indices], y[indices]
        return x.float() / 255, y

    def fixed_batch(self, split, n=16):
        return self.split_tensors(split, torch.arange(min(n, self.split_size(split))))

    def test_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(*self.split_tensors("test")), batch_size=64)


class LoadersOnly(pl.LightningDataModule):
    """Only what Lightning needs: a test loader of (x, y)."""

    def test_dataloader(self) -> DataLoader:
        x, y = synthetic_images(100, seed=1)
        return DataLoader(TensorDataset(x.float() / 255, y), batch_size=50)


FAST = dict(iw_samples=5, iw_images=None, mi_images=None, probe_train_size=None, batch_size=64)
SMALL = {"_target_": "aelab.nets.MLPNet", "hidden": [32]}


def _test(model, data, root, caplog):
    trainer = pl.Trainer(
        accelerator="cpu",
        default_root_dir=str(root),
        logger=False,
        callbacks=[ImageGrids(), EvaluationSuite(**FAST)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with caplog.at_level(logging.INFO, logger="aelab.callbacks.eval_suite"):
        metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    lines = [r.getMessage() for r in caplog.records if r.name == "aelab.callbacks.eval_suite"]
    return metrics, [line for line in lines if "skipped" in line]


def test_model_without_posterior_on_a_contract_datamodule(tmp_path, caplog):
    torch.manual_seed(0)
    model = Autoencoder(latent_dim=2, net=SMALL)
    assert not hasattr(model, "posterior") and not hasattr(model, "sample")
    metrics, lines = _test(model, ContractData(), tmp_path, caplog)
    # probes from the datamodule's train split and labels, likelihood figures and AUROC left out
    assert {f"test/{k}" for k in ("linear_probe_acc", "knn_acc")} <= set(metrics)
    assert 0.0 <= metrics["test/knn_acc"] <= 1.0
    assert not {"test/iw_nll", "test/active_units", "test/mutual_info", "test/auroc"} & set(metrics)
    assert lines == [
        "likelihood figures (iw_nll, active_units, mutual_info) skipped: Autoencoder has no "
        "posterior(x)",
        "auroc skipped: the datamodule's classes is null (no normal class)",
        "prior_samples figure skipped: Autoencoder has no sample(n, generator)",
    ]
    images = {p.name for p in (tmp_path / "images").iterdir()}
    # the grids from fixed_batch("test"); latent_dim=2 gives the manifold and the scatter
    assert images == {
        "test_reconstructions.png",
        "gen_interpolations.png",
        "gen_traversals.png",
        "gen_manifold.png",
        "gen_latent_scatter.png",
    }


def test_datamodule_with_only_loaders_skips_the_suite_in_one_line(tmp_path, caplog):
    torch.manual_seed(0)
    metrics, lines = _test(VAE(latent_dim=2, net=SMALL), LoadersOnly(), tmp_path, caplog)
    # the model's own test figures stand; the suite's are left out, said once
    assert {"test/loss", "test/recon", "test/kl", "test/psnr"} <= set(metrics)
    assert not {"test/iw_nll", "test/knn_acc", "test/linear_probe_acc"} & set(metrics)
    assert lines == [
        "evaluation suite skipped: the datamodule offers no test split to score "
        "(split_size('test') > 0 and split_tensors(); docs/how-to/own-data.md)"
    ]
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_user_config_folder_composes_beside_aelabs(tmp_path, how):
    conf = tmp_path / "my_conf"
    (conf / "model").mkdir(parents=True)
    (conf / "data").mkdir()
    (conf / "model" / "my_ae.yaml").write_text(
        "# @package _global_\nmodel:\n  _target_: my_models.MyAE\n  latent_dim: 5\n"
    )
    (conf / "data" / "my_images.yaml").write_text("_target_: my_data.Images\nfolder: /x\n")
    where = (
        ["--config-dir", str(conf)]
        if how == "--config-dir"
        else [f"hydra.searchpath=[file://{conf}]"]
    )
    cmd = [
        sys.executable,
        "-m",
        "aelab.train",
        *where,
        "model=my_ae",
        "data=my_images",
        "--cfg",
        "job",
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    import yaml

    cfg = yaml.safe_load(done.stdout)
    assert cfg["model"] == {"_target_": "my_models.MyAE", "latent_dim": 5}
    assert cfg["data"] == {"_target_": "my_data.Images", "folder": "/x"}
    # aelab's own groups are still there, as composed by default
    assert cfg["trainer"]["max_epochs"] == 10 and cfg["net"]["_target_"] == "aelab.nets.MLPNet"


def test_a_checkpoints_model_class_that_cannot_be_imported_is_one_error():
    from aelab.run.checkpoint import model_from_checkpoint

    ckpt = {"aelab": {"model_class": "my_gone_models.TiedAE"}, "hyper_parameters": {}}
    with pytest.raises(ConfigError) as err:
        model_from_checkpoint(ckpt)
    assert str(err.value) == (
        "model._target_='my_gone_models.TiedAE' is invalid: allowed an importable class or "
        "function (ModuleNotFoundError: No module named 'my_gone_models')"
    )


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "data"),
        ({"AELAB_ROOT": "/r"}, "/r/data"),
        ({"AELAB_ROOT": "/r", "AELAB_DATA_DIR": "/d"}, "/d"),
    ],
)
def test_prepare_data_looks_where_aelab_train_does(monkeypatch, env, expected):
    from aelab.data.prepare import default_data_dir

    for name in ("AELAB_ROOT", "AELAB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert os.path.normpath(default_data_dir()) == expected


WEIGHTED_MODULE = """
import torch
from aelab.models.base import AutoencoderModule


class WeightedAE(AutoencoderModule):
    # `weight` stays here: it is never handed to AutoencoderModule.__init__
    def __init__(self, weight: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def loss(self, x_in, target, generator=None):
        logits = self.decoder(self.encoder(x_in))
        recon = ((torch.sigmoid(logits) - target) ** 2).flatten(1).sum(1).mean()
        return {"loss": self.weight * recon, "recon": recon}, logits
"""


def test_a_user_hyperparameter_kept_on_self_reloads_with_its_trained_value(tmp_path, monkeypatch):
    """A user's model with `weight=3.0` by default, built as aelab-train builds it with
    `model.weight=5` (config nodes as DictConfig), one step trained and its checkpoint saved by
    Lightning with aelab's config entry: the weights-only checkpoint rebuilds it with 5.0."""
    from aelab.callbacks.run_config import RunConfigInCheckpoints
    from aelab.checks import build
    from aelab.run.checkpoint import load_checkpoint, model_from_checkpoint

    (tmp_path / "my_weighted.py").write_text(WEIGHTED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_weighted", raising=False)
    model_cfg = {"_target_": "my_weighted.WeightedAE", "weight": 5, "latent_dim": 2}
    cfg = OmegaConf.create({"model": model_cfg, "net": SMALL})
    model = build(cfg.model, "model", _recursive_=False, net=cfg.net)
    assert model.weight == 5.0
    images = torch.rand(4, 1, 28, 28)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RunConfigInCheckpoints(OmegaConf.to_container(cfg, resolve=True))],
    )
    loader = DataLoader(TensorDataset(images, torch.zeros(4)), batch_size=4)
    trainer.fit(model, train_dataloaders=loader)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)

    reloaded = model_from_checkpoint(load_checkpoint(path))
    assert type(reloaded).__name__ == "WeightedAE" and reloaded.weight == 5.0
    assert reloaded.latent_dim == 2 and reloaded.hparams["net"] == SMALL
    for name, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], value), name
