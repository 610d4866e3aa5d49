"""The nets are built from the data's C x H x W: each family builds and runs forward on MNIST's
1 x 28 x 28, CIFAR-10's 3 x 32 x 32 and CelebA's 3 x 64 x 64, and a size that a conv net's
stages cannot halve evenly is refused in one line naming it and the sides the stages take."""

from __future__ import annotations

import pytest
import torch

from aelab.checks import ConfigError
from aelab.models import VAE
from aelab.nets import ConvNet, MLPNet

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]
NETS = {
    "mlp": lambda: MLPNet(hidden=[32, 16]),
    "conv": lambda: ConvNet(channels=[8, 16]),
    "conv64": lambda: ConvNet(channels=[8, 8, 16, 16], kernel_size=4, dense=32),
    "conv_celeba": lambda: ConvNet(
        channels=[4, 8, 8, 16, 16], kernel_size=3, batch_norm=True, activation="leaky_relu"
    ),
}
STAGES = {"mlp": 0, "conv": 2, "conv64": 4, "conv_celeba": 5}


def fits(name: str, shape: tuple[int, int, int]) -> bool:
    return shape[1] % 2 ** STAGES[name] == 0


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", NETS)
def test_each_net_builds_for_the_shapes_it_fits_and_refuses_the_others(name, shape):
    net = NETS[name]()
    if not fits(name, shape):
        factor = 2 ** STAGES[name]
        with pytest.raises(ConfigError) as err:
            net.encoder(shape, 6)
        text = str(err.value)
        assert "\n" not in text
        assert f"halve {shape[1]}x{shape[2]} evenly" in text
        assert f"divisible by {factor}, e.g. {factor}x{factor}" in text
        with pytest.raises(ConfigError):
            net.decoder(3, shape)
        return
    encoder, decoder = net.encoder(shape, 6), net.decoder(3, shape)
    x = torch.rand(2, *shape)
    assert encoder(x).shape == (2, 6)
    assert decoder(torch.randn(2, 3)).shape == (2, *shape)


def test_the_halvings_named_are_those_the_side_takes():
    with pytest.raises(ConfigError) as err:
        ConvNet(channels=[4] * 6).encoder((3, 32, 96), 2)
    # 32 halves 5 times, 96 = 3 x 32 also 5: five stages fit, six do not
    assert "(5 for 32x96; 6 stride-2 stages take sides divisible by 64" in str(err.value)


def test_a_vae_takes_colour_images_through_the_celeba_net():
    model = VAE(
        latent_dim=4,
        image_shape=(3, 64, 64),
        net={
            "_target_": "aelab.nets.ConvNet",
            "channels": [4, 8, 8, 16, 16],
            "kernel_size": 3,
            "batch_norm": True,
            "activation": "leaky_relu",
        },
    )
    x = torch.rand(3, 3, 64, 64)
    assert model(x).shape == (3, 3, 64, 64)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 5 + 4  # every hidden convolution, encoder and decoder
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in model.modules())


def test_the_default_conv_net_is_unchanged():
    """No BatchNorm and ReLU by default: the layers (and so checkpoints) are as before."""
    kinds = [type(m).__name__ for m in ConvNet().encoder((1, 28, 28), 4)]
    assert kinds == ["Conv2d", "ReLU", "Conv2d", "ReLU", "Flatten", "Linear"]
    kinds = [type(m).__name__ for m in ConvNet().decoder(4, (1, 28, 28))]
    assert kinds == ["Linear", "ReLU", "Unflatten", "ConvTranspose2d", "ReLU", "ConvTranspose2d"]


@pytest.mark.parametrize(
    ("preset", "data", "shape", "beta"),
    [
        ("celeba_vae", "CelebADataModule", (3, 64, 64), 3.072),
        ("cifar10_vae", "CIFAR10DataModule", (3, 32, 32), 0.768),
        ("fashion_vae", "FashionMNISTDataModule", (1, 28, 28), 1.0),
    ],
)
def test_the_dataset_presets_build_their_model(preset, data, shape, beta, make_cfg):
    from aelab.checks import build
    from aelab.train import build_model

    cfg = make_cfg(f"experiment={preset}")
    assert type(build(cfg.data, "data")).__name__ == data
    model = build_model(cfg)
    assert isinstance(model, VAE) and model.image_shape == shape and model.beta == beta
    assert model(torch.rand(2, *shape)).shape == (2, *shape)
    if preset != "fashion_vae":  # PyTorch-VAE's recipe
        assert (model.latent_dim, cfg.data.batch_size, cfg.optimizer.lr) == (128, 64, 5e-3)
        assert cfg.lr_scheduler.scheduler._target_.endswith("ExponentialLR")
        assert cfg.lr_scheduler.scheduler.gamma == 0.95
