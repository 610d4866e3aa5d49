"""Shared fixtures: composed configs, tiny synthetic data, the real MNIST folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader

from aelab import CONFIG_DIR
from aelab.data.mnist import InMemoryImages, whole_batch

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("AELAB_DATA_DIR", REPO / "data"))


def compose_cfg(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """The config `aelab-train <overrides>` would run with, its output folder set to output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.data_dir = str(DATA_DIR)
        del cfg.hydra
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    return lambda *overrides, name="train": compose_cfg(list(overrides), tmp_path, name)


def synthetic_images(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blurry blobs: learnable structure (a few bright squares), uint8 like MNIST."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.zeros(n, 1, 28, 28)
    for i, label in enumerate(labels.tolist()):
        r, c = divmod(label, 4)
        images[i, 0, 4 + 6 * r : 10 + 6 * r, 2 + 6 * c : 8 + 6 * c] = 1.0
    images += 0.1 * torch.rand(images.shape, generator=g)
    return (images.clamp(0, 1) * 255).to(torch.uint8), labels


@pytest.fixture
def tiny_batches():
    images, labels = synthetic_images()
    return DataLoader(InMemoryImages(images, labels), batch_size=32, collate_fn=whole_batch)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST folder (`make test` prepares it first; prepared here if missing)."""
    from aelab.data.source import ensure_mnist

    ensure_mnist(DATA_DIR)
    return DATA_DIR
