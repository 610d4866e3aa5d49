"""Every option of every config group composes, and everything it names can be built."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
from helpers.options import with_companions

from aelab import CONFIG_DIR
from aelab.checks import build
from aelab.data.mnist import InMemorySplits
from aelab.models import VAE, AutoencoderModule
from aelab.noise import GaussianNoise, Noise
from aelab.train import build_model, build_trainer


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


GROUPS = ["model", "net", "noise", "optimizer", "data", "trainer", "logger", "callbacks"]


@pytest.mark.parametrize("override", [f"{g}={o}" for g in GROUPS for o in options(g)])
def test_every_option_composes_and_builds(override, make_cfg):
    cfg = make_cfg(*with_companions(override))
    assert isinstance(build(cfg.data, "data"), InMemorySplits)  # the datamodules' one seam
    model = build_model(cfg)
    assert isinstance(model, AutoencoderModule)  # the one model interface, every model
    trainer = build_trainer(cfg, accelerator="cpu")
    assert isinstance(trainer, pl.Trainer)


def test_no_logger_trains_with_the_default_callbacks(make_cfg, tiny_batches):
    cfg = make_cfg("logger=none", "trainer.max_epochs=1", "~callbacks.evaluation")
    trainer = build_trainer(cfg, accelerator="cpu")
    assert trainer.loggers == []
    # Lightning's LR monitor raises at the start of fit without a logger; it is left out
    trainer.fit(build_model(cfg), train_dataloaders=tiny_batches, val_dataloaders=tiny_batches)
    assert trainer.global_step == len(tiny_batches)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def test_model_presets_pick_their_nets_and_noise(make_cfg):
    assert make_cfg("model=vae").net.hidden == [400, 200, 100]
    assert make_cfg("model=vae").net.relu_before_code is False  # as the reference VAE
    assert make_cfg("model=ae").net.hidden == [128, 64]
    dae = build_model(make_cfg("model=dae"))
    assert isinstance(dae.noise, GaussianNoise) and dae.noise.std == 0.3
    # the command line wins over a preset's choice
    assert make_cfg("model=vae", "net=conv").net._target_.endswith("ConvNet")
    assert type(build_model(make_cfg("model=dae", "noise=none")).noise) is Noise


def test_issue_example_composes(make_cfg):
    cfg = make_cfg(
        "model=vae", "model.latent_dim=8", "model.beta=4", "noise=gaussian", "noise.std=0.3"
    )
    model = build_model(cfg)
    assert isinstance(model, VAE) and model.latent_dim == 8 and model.beta == 4.0
    assert model.noise.std == 0.3


def test_stored_hyperparameters_are_plain(make_cfg):
    model = build_model(make_cfg("model=vae", "net=conv", "noise=masking"))
    allowed = (dict, list, str, int, float, bool, type(None))

    def walk(value):
        assert isinstance(value, allowed), type(value)
        for v in (
            value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        ):
            walk(v)

    walk(dict(model.hparams))


def test_net_and_noise_are_built_once_and_lr_checked_once(make_cfg, monkeypatch):
    """The model builds its net and noise and checks `optimizer.lr`; aelab-train does not too."""
    import aelab.models.base
    from aelab.nets import ConvNet

    built: list[str] = []
    for cls in (ConvNet, GaussianNoise):
        init = cls.__init__

        def counted(self, *args, _init=init, _name=cls.__name__, **kwargs):
            built.append(_name)
            _init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counted)
    check_float = aelab.models.base.check_float

    def counted_check(field, *args, **kwargs):
        built.append(field)
        return check_float(field, *args, **kwargs)

    monkeypatch.setattr(aelab.models.base, "check_float", counted_check)
    model = build_model(make_cfg("net=conv", "noise=gaussian", "optimizer.lr=0.01"))
    assert isinstance(model.noise, GaussianNoise)
    assert sorted(built) == ["ConvNet", "GaussianNoise", "lr"]


def test_a_bad_target_in_a_group_the_model_builds_is_named_as_for_the_optimizer(make_cfg):
    from aelab.checks import ConfigError

    for group in ("net", "noise", "optimizer"):
        with pytest.raises(ConfigError) as info:
            build_model(make_cfg(f"{group}._target_=no.such.Thing"))
        assert str(info.value) == (
            f"{group}._target_='no.such.Thing' is invalid: allowed an importable class or "
            "function (ModuleNotFoundError: No module named 'no')"
        )
