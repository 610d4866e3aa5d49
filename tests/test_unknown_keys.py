"""A key that the built object does not take is one line naming it and the nearest key it
takes, for every group that builds an object (hydra#1457: `+model.latnt_dim=8` used to train
with the default latent size, `++model.beta=2` on an AE was recorded as if it had an effect)."""

import pytest
from helpers.options import with_companions
from omegaconf import OmegaConf

from aelab.checks import ConfigError, accepted_keys, build
from aelab.train import build_model, build_trainer


@pytest.mark.parametrize(
    "override, line",
    [
        (
            "+model.latnt_dim=8",
            "model.latnt_dim=8 is invalid: allowed a key that aelab.models.Autoencoder takes "
            "(did you mean latent_dim?)",
        ),
        (
            "++model.beta=2",
            "model.beta=2 is invalid: allowed a key that aelab.models.Autoencoder takes (it "
            "takes image_shape, kl_schedule, latent_dim, lr_scheduler, net, noise, optimizer, "
            "recon_loss)",
        ),
        (
            "++net.hiden=[3]",
            "net.hiden=[3] is invalid: allowed a key that aelab.nets.MLPNet takes (did you mean "
            "hidden?)",
        ),
        (
            "++noise.std=0.1",  # noise=none takes no value at all
            "noise.std=0.1 is invalid: allowed a key that aelab.noise.Noise takes (it takes none)",
        ),
        (
            "++optimizer.lrr=0.1",
            "optimizer.lrr=0.1 is invalid: allowed a key that torch.optim.Adam takes (did you "
            "mean lr?)",
        ),
    ],
)
def test_a_key_the_model_or_its_groups_do_not_take_is_one_line(make_cfg, override, line):
    with pytest.raises(ConfigError) as err:
        build_model(make_cfg(override))
    assert str(err.value) == line


def test_a_base_class_key_the_model_does_not_use_is_refused(make_cfg):
    """The IWAE is built on the VAE but its bound has no KL weight: `+model.beta=4` trained the
    very same model and was recorded as β = 4."""
    with pytest.raises(ConfigError) as err:
        build_model(make_cfg("model=iwae", "+model.beta=4"))
    assert str(err.value) == (
        "model.beta=4 is invalid: allowed a key that aelab.models.IWAE takes (it takes "
        "image_shape, k, kl_schedule, latent_dim, lr_scheduler, net, noise, optimizer, "
        "recon_loss)"
    )


def test_every_model_preset_refuses_a_key_its_model_does_not_take(make_cfg):
    """For each conf/model preset, a bogus key is refused naming the model and the keys it takes,
    as read from the constructors' signatures (the model's own up to the base model's)."""
    import inspect
    from pathlib import Path

    from aelab import CONFIG_DIR
    from aelab.checks import locate

    presets = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
    assert len(presets) >= 10
    for option in presets:
        cfg = make_cfg(*with_companions(f"model={option}"), "+model.bogus_key=1")
        target = cfg.model._target_
        keys: set[str] = set()
        for klass in locate(target).__mro__:  # up to the base model, whose **extra is closed
            if "__init__" in vars(klass):
                params = list(inspect.signature(klass.__init__).parameters.values())[1:]
                keys |= {p.name for p in params if p.kind is not p.VAR_KEYWORD}
            if klass.__name__ == "AutoencoderModule":
                break
        keys -= set(getattr(locate(target), "keys_not_taken", ()))
        with pytest.raises(ConfigError) as err:
            build_model(cfg)
        assert str(err.value) == (
            f"model.bogus_key=1 is invalid: allowed a key that {target} takes (it takes "
            f"{', '.join(sorted(keys))})"
        ), option


@pytest.mark.parametrize(
    "override, group, line",
    [
        (
            "++data.batchsize=3",
            "data",
            "data.batchsize=3 is invalid: allowed a key that aelab.data.mnist.MNISTDataModule "
            "takes (did you mean batch_size?)",
        ),
        (
            "++callbacks.images.n_imgs=3",
            "callbacks.images",
            "callbacks.images.n_imgs=3 is invalid: allowed a key that "
            "aelab.callbacks.ImageGrids takes (did you mean n_images?)",
        ),
    ],
)
def test_a_key_the_data_or_a_callback_do_not_take_is_one_line(make_cfg, override, group, line):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError) as err:
        build(OmegaConf.select(cfg, group), group)
    assert str(err.value) == line


def test_a_misspelt_trainer_key_is_one_line(make_cfg):
    with pytest.raises(ConfigError) as err:
        build_trainer(make_cfg("++trainer.max_epoch=3"), accelerator="cpu")
    assert str(err.value) == (
        "trainer.max_epoch=3 is invalid: allowed a key that pytorch_lightning.Trainer takes "
        "(did you mean max_epochs?)"
    )


def test_the_keys_a_model_takes_follow_its_kwargs_up_to_the_base_model():
    from aelab.models import VAE
    from aelab.models.base import AutoencoderModule

    class Weighted(VAE):
        def __init__(self, weight: float = 1.0, **kwargs):
            super().__init__(weight=weight, **kwargs)

    base = {"latent_dim", "recon_loss", "net", "noise", "optimizer", "image_shape"}
    base |= {"kl_schedule", "lr_scheduler"}
    assert accepted_keys(AutoencoderModule) == base  # its **extra is for subclasses' own values
    assert accepted_keys(Weighted) == base | {"weight", "beta"}

    def anything(**kwargs):
        return kwargs

    assert accepted_keys(anything) is None  # a function taking **kwargs takes any key


def test_every_preset_of_every_group_passes_the_check(make_cfg):
    """No shipped config holds a key its target does not take (so the check refuses typos only)."""
    from pathlib import Path

    from aelab import CONFIG_DIR

    for group in ("model", "net", "noise", "optimizer", "data", "callbacks", "trainer"):
        for option in sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml")):
            cfg = make_cfg(*with_companions(f"{group}={option}"))
            build_model(cfg)
            build_trainer(cfg, accelerator="cpu")
