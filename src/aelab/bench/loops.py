"""The benchmark's loops, one per child process (`aelab.bench.cli` starts them), each printing
one RESULT line of JSON: per-epoch seconds, the training images, test figures and peak RSS.

- `reference`: the reference models' loop as written: torchvision MNIST with `ToTensor`,
  `DataLoader(batch_size=64, shuffle=True)`, all 60k training images, default Adam.
- `memory` (`memory-fused`): the same model, loss and optimizer over uint8 tensors in memory,
  one `index_select` per batch, the plain loop's limit (with `Adam(fused=True)`, aelab's default).
- `aelab`: `aelab.train.train` on the composed default config, as `aelab-train` runs it.

Test figures are on the official 10k test set: `test_mse` per pixel (a VAE decodes its posterior
mean), `test_neg_elbo` the VAE's negative ELBO in nats per image (one z draw).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from aelab.bench import BATCH_SIZE, RESULT
from aelab.bench.reference_models import VAE, Autoencoder, vae_loss_function


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest child (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # KiB on Linux


def rss_mb() -> float:
    """Resident memory now (to check that nothing grows from epoch to epoch)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def official_test_images(data_dir: Path, limit: int | None) -> Tensor:
    """The official 10k test images as ToTensor() gives them (uint8 / 255), flattened."""
    from aelab.data.source import read_idx

    x = read_idx(data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte")[:limit]
    return x.reshape(len(x), -1).float().div_(255.0)


@torch.no_grad()
def score(model: nn.Module, model_name: str, x: Tensor, device: torch.device) -> dict[str, float]:
    """Test MSE per pixel (VAE: decoding the posterior mean) and the VAE's -ELBO per image."""
    model.eval()
    torch.manual_seed(0)
    sse = nelbo = 0.0
    for xb in x.split(1000):
        xb = xb.to(device)
        if model_name == "ae":
            recon = model(xb)
        else:
            recon_z, mu, logvar = model(xb)
            nelbo += float(vae_loss_function(recon_z, xb, mu, logvar))
            recon = model.decoder(mu)
        sse += float((recon - xb).square().sum())
    out = {"test_mse": sse / x.numel()}
    if model_name == "vae":
        out["test_neg_elbo"] = nelbo / len(x)
    return out


def train_epochs(
    epochs: int, batches: Callable[[], Iterable[Tensor]], step: Callable[[Tensor], Tensor], device
) -> list[float]:
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for img in batches():
            loss = step(img)
        sync(device)
        times.append(time.perf_counter() - start)
        print(f"Epoch [{epoch + 1}/{epochs}], Loss: {loss.item():.4f}", file=sys.stderr)
    return times


def plain_step(model: nn.Module, model_name: str, fused: bool) -> Callable[[Tensor], Tensor]:
    """The reference step: forward, loss, zero_grad, backward, Adam(lr=1e-3)."""
    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))

    def step(img: Tensor) -> Tensor:
        img = img.view(img.size(0), -1)
        if model_name == "ae":
            recon = model(img)
            loss = criterion(recon, img)
        else:
            recon, mu, logvar = model(img)
            loss = vae_loss_function(recon, img, mu, logvar)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def run_reference(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor()])
    train_dataset = datasets.MNIST(
        root=str(args.data_dir), train=True, download=False, transform=transform
    )
    train_loader = torch.utils.data.DataLoader(train_dataset, batch_size=64, shuffle=True)
    model = (Autoencoder() if args.model == "ae" else VAE()).to(device)
    step = plain_step(model, args.model, fused=False)
    n_batches = min(len(train_loader), args.limit_batches or len(train_loader))

    def batches() -> Iterable[Tensor]:
        for i, (img, _) in enumerate(train_loader):
            if i == n_batches:
                return
            yield img.to(device)

    times = train_epochs(args.epochs, batches, step, device)
    images = min(len(train_dataset), n_batches * BATCH_SIZE)
    return {"times": times, "images": images, **score(model, args.model, args.test_x, device)}


def training_split(data_dir: Path) -> Tensor:
    """aelab's 55k training images (uint8, N x 784): the same split as aelab.data.mnist."""
    from aelab.data.mnist import SPLIT_SEED, VAL_SIZE
    from aelab.data.source import read_idx

    images = read_idx(data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte")
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return images[perm[VAL_SIZE:]].reshape(-1, 28 * 28)


def run_memory(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    data = training_split(args.data_dir).to(device)
    n = min(len(data), (args.limit_batches or len(data)) * BATCH_SIZE)
    model = (Autoencoder() if args.model == "ae" else VAE()).to(device)
    step = plain_step(model, args.model, fused=args.kind == "memory-fused")

    def batches() -> Iterable[Tensor]:
        perm = torch.randperm(n, device=device)
        for i in range(0, n, BATCH_SIZE):
            yield data.index_select(0, perm[i : i + BATCH_SIZE]).float().div_(255.0)

    times = train_epochs(args.epochs, batches, step, device)
    return {"times": times, "images": n, **score(model, args.model, args.test_x, device)}


def compose_job(overrides: list[str], output_dir: Path) -> Any:
    """The run config `aelab-train <overrides>` composes (from the checkout's conf/ or the
    installed package's), with its run folder set to `output_dir` as Hydra would make it."""
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from aelab import CONFIG_DIR, CONFIG_PATH

    GlobalHydra.instance().clear()
    if CONFIG_PATH.startswith("pkg://"):
        init = initialize_config_module(config_module="aelab.conf", version_base="1.3")
    else:
        init = initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3")
    with init:
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


def run_aelab(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import pytorch_lightning as pl

    from aelab.data.mnist import N_TRAIN, VAL_SIZE
    from aelab.train import train

    class EpochTimer(pl.Callback):
        """Per epoch: seconds of training, seconds in all (+ validation, checkpoints), RSS."""

        def __init__(self) -> None:
            self.marks: list[dict[str, float]] = []

        def _now(self, pl_module: pl.LightningModule) -> float:
            sync(pl_module.device)
            return time.perf_counter()

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if self.marks:
                self.marks[-1]["end"] = self._now(pl_module)
            self.marks.append({"start": self._now(pl_module)})

        def on_validation_start(self, trainer, pl_module) -> None:
            if self.marks and not trainer.sanity_checking:
                self.marks[-1].setdefault("train_end", self._now(pl_module))

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.marks[-1]["rss"] = rss_mb()

        def on_train_end(self, trainer, pl_module) -> None:
            self.marks[-1]["end"] = self._now(pl_module)

    timer = EpochTimer()
    out = Path(tempfile.mkdtemp(prefix="aelab-benchmark-"))
    overrides = [
        f"model={args.model}",
        f"seed={args.seed}",
        f"flush_denormal={'true' if args.flush else 'false'}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
        f"paths.data_dir={args.data_dir}",
        f"paths.log_dir={out}",
    ]
    if args.limit_batches:
        test_batches = -(-len(args.test_x) // 1000)
        overrides += [
            f"trainer.limit_train_batches={args.limit_batches}",
            "trainer.limit_val_batches=1",
            f"trainer.limit_test_batches={test_batches}",
        ]
    overrides += args.override
    try:
        metrics = train(compose_job(overrides, out / "run"), extra_callbacks=[timer])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    marks = timer.marks
    rss = [m["rss"] for m in marks if "rss" in m]
    n_train = min(N_TRAIN - VAL_SIZE, (args.limit_batches or N_TRAIN) * BATCH_SIZE)
    result = {
        "times": [m.get("train_end", m["end"]) - m["start"] for m in marks],
        "times_with_val": [m["end"] - m["start"] for m in marks],
        "images": n_train,
        "rss_growth_mb": rss[-1] - rss[min(args.warmup, len(rss) - 1)],
        "rss_per_epoch_mb": rss,
        "rss_training_mb": max(rss),  # the peak may come later, from the test-time suite
    }
    if "test/recon_mse" in metrics:  # absent with --override test=false
        result["test_mse"] = metrics["test/recon_mse"]
        if args.model == "vae":
            result["test_neg_elbo"] = metrics["test/neg_elbo"]
    return result


def child(args: argparse.Namespace) -> None:
    """One loop (`args.kind`: reference, memory, memory-fused, aelab) in this process; prints
    its RESULT line: per-epoch seconds, images, test figures, peak RSS."""
    from aelab.numerics import set_flush_denormal

    # first, as aelab-train does: the mode is inherited by the threads torch starts after it
    if not set_flush_denormal(bool(args.flush)) and args.flush:
        print("benchmark: this CPU cannot flush denormal floats", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.test_x = official_test_images(args.data_dir, 1000 if args.limit_batches else None)
    torch.manual_seed(args.seed)
    run = {"reference": run_reference, "aelab": run_aelab}.get(args.kind, run_memory)
    result = run(args, device)
    result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT + json.dumps(result), flush=True)
