"""The feature network for generation scores: a LeNet-like digit classifier trained on the
training split, its penultimate layer the feature space (Inception weights cannot be downloaded
here; for 28 x 28 digits papers use a classifier trained on the digits instead).

`FeatureNetCache` keeps one trained network per (images, labels, architecture, seed) under the
data folder, written atomically like the PCA baseline cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from aelab.checks import ConfigError, check_int

log = logging.getLogger(__name__)

FEATURE_DIM = 128
ARCH = "lenet5-bn c32-c64-fc128 v1"  # in the cache digest: a changed architecture is a new file


class DigitFeatures(nn.Module):
    """LeNet-like classifier (LeCun et al. 1998, widened, with batch norm): two 5x5 conv blocks
    and a 128-unit layer. `features(x)`: B x 1 x 28 x 28 in [0, 1] -> B x 128; `forward(x)`:
    B x n_classes logits."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ConfigError("images", tuple(x.shape), "B x 1 x 28 x 28")
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class FeatureExtractor(nn.Module):
    """The penultimate features as a module whose forward is `features`, for torchmetrics'
    FID/KID `feature` argument (`num_features` spares it a probe with a 3 x 299 x 299 image)."""

    num_features = FEATURE_DIM

    def __init__(self, net: DigitFeatures) -> None:
        super().__init__()
        self.net = net.eval()

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.net.features(x.float())


def train_feature_net(
    images: Tensor, labels: Tensor, *, seed: int = 0, epochs: int = 3, batch_size: int = 128
) -> DigitFeatures:
    """Train `DigitFeatures` on images (N x 1 x 28 x 28 in [0, 1]) and labels (N,) with Adam,
    deterministically from `seed` (CPU). Raises ConfigError on mismatched sizes."""
    check_int("epochs", epochs, 1)
    if len(images) != len(labels) or len(images) == 0:
        raise ConfigError("labels", len(labels), f"one per image ({len(images)} images)")
    # its own RNG state and gradients on: called from Lightning's test loop (inference mode,
    # whose tensors autograd refuses: hence the clones) it must neither fail there nor move the
    # caller's random stream
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)
        return _train(images.clone(), labels.clone().long(), seed, epochs, batch_size)


def _train(
    images: Tensor, labels: Tensor, seed: int, epochs: int, batch_size: int
) -> DigitFeatures:
    g = torch.Generator().manual_seed(seed)
    net = DigitFeatures(int(labels.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, 3e-3, total_steps=epochs * ((len(images) + batch_size - 1) // batch_size)
    )
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(batch_size):
            loss = nn.functional.cross_entropy(net(images[idx].float()), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: DigitFeatures, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Share of images (N x 1 x 28 x 28) whose arg-max class equals the label, in [0, 1]."""
    net.eval()
    hits = sum(
        int((net(x.float()).argmax(1) == y).sum())
        for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True)
    )
    return hits / len(images)


class FeatureNetCache:
    """One trained feature network per digest of (images, labels, architecture, seed, epochs),
    stored as `featurenet_<digest>.pt` under `folder` with its test accuracy. A second job loads
    it (`hits`), never retrains; a file that does not load is retrained and rewritten with one
    logged line; parallel jobs each write a temp file and rename it over the name, so a reader
    sees one whole file (they are equal: training is deterministic from the seed)."""

    def __init__(self, folder: str | Path, seed: int = 0, epochs: int = 3) -> None:
        self.folder, self.seed, self.epochs = Path(folder), seed, epochs
        self.trained = self.hits = 0

    def path(self, images: Tensor, labels: Tensor) -> Path:
        digest = hashlib.blake2b(digest_size=10)
        digest.update(
            f"{ARCH}; seed {self.seed}; epochs {self.epochs}; torch {torch.__version__}".encode()
        )
        for t in (images, labels):
            array = t.detach().cpu().contiguous().numpy()
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(memoryview(array).cast("B"))
        return self.folder / f"featurenet_{digest.hexdigest()}.pt"

    def get(
        self, images: Tensor, labels: Tensor, test: tuple[Tensor, Tensor] | None = None
    ) -> tuple[DigitFeatures, float | None]:
        """The network and its test accuracy (None without `test`), from the cache when there."""
        path = self.path(images, labels)
        loaded = self._read(path)
        if loaded is not None:
            self.hits += 1
            return loaded
        started = time.perf_counter()
        net = train_feature_net(images, labels, seed=self.seed, epochs=self.epochs)
        self.trained += 1
        acc = accuracy(net, *test) if test is not None else None
        # once per data folder: the one cost of the generation figures a later run does not pay
        scored = "" if acc is None else f", test accuracy {acc:.4f}"
        log.info(
            "digit-feature network trained once for this data: %d images, %d epochs, %.1f s%s; "
            "cached as %s",
            len(images), self.epochs, time.perf_counter() - started, scored, path,
        )  # fmt: skip
        buffer = io.BytesIO()
        torch.save(
            {"state": net.state_dict(), "n_classes": net.head.out_features, "test_acc": acc}, buffer
        )
        from aelab.run.atomic import write_atomic

        try:
            write_atomic(path, buffer.getvalue())
        except OSError as err:  # a read-only data folder: the network stands, uncached
            log.warning("feature network not cached: %s", err)
        return net, acc

    @staticmethod
    def _read(path: Path) -> tuple[DigitFeatures, float | None] | None:
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            net = DigitFeatures(stored["n_classes"])
            net.load_state_dict(stored["state"])
        except FileNotFoundError:
            return None
        except Exception as err:  # noqa: BLE001 - any unreadable file is rebuilt, never fatal
            log.warning("feature network cache %s unreadable (%s): retrained", path, err)
            return None
        return net.eval(), stored.get("test_acc")
