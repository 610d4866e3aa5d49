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
