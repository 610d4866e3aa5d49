"""Seconds per epoch: the reference models' plain PyTorch loops, an in-memory plain loop, and
aelab's training, each with denormal floats flushed to zero and without.

    python scripts/benchmark.py                   # AE and VAE, 5 epochs per loop, both settings
    python scripts/benchmark.py --denormals flushed --threads 1   # aelab's default setting only
    python scripts/benchmark.py --epochs 3 --repeats 3 --threads 1   # a busy machine: see below
    python scripts/benchmark.py --epochs 10 --models ae
    python scripts/benchmark.py --quick           # 2 short epochs on a slice: checks that it runs
    python scripts/benchmark.py --device cuda     # everything on the GPU (data on the device)
    python scripts/benchmark.py --models vae --loops aelab --override callbacks.images=null
                                                  # what one part of aelab's run costs
    python scripts/benchmark.py --overhead --threads 1   # where one job's wall time goes
    python scripts/benchmark.py --stacked 1,4,8,16 --threads 1   # M jobs stacked vs one by one

Loops, each in its own subprocess (so each peak RSS is that loop's own), on the same MNIST files:

- `reference`: the reference models' loop (README: the reference AE and VAE aelab started
  from) as written: torchvision MNIST with `ToTensor`, `DataLoader(batch_size=64,
  shuffle=True)`, all 60k training images, default Adam.
- `in-memory`: the same model, loss and optimizer over uint8 tensors in memory, one
  `index_select` per batch (the plain loop's limit); `+ fused Adam` is the same with
  `Adam(fused=True)`, aelab's default, to show what the optimizer alone buys.
- `aelab`: `aelab.train.train` on the composed default config (`model=ae` / `model=vae`) as
  `aelab-train` runs it: Lightning Trainer, TensorBoard, checkpoints, image grids, validation.

Every loop runs once with denormal floats flushed to zero (`, flushed`: aelab's default,
`flush_denormal=true`, `aelab.numerics`) and once computing with them (`, denormals`: plain
PyTorch's default), unless `--denormals flushed|kept` picks one. Adam's state decays into the
denormal range after a few hundred steps, and on some x86 CPUs each step then costs up to twice
as much: `ms/step early` (the first epoch) and `ms/step late` (the last) show such a slowdown.

aelab trains on the 55k images of its training split (5k are kept for validation); the in-memory
loops use the same 55k. Times are compared per training image: `s/60k` is the epoch scaled to
the reference loop's 60k images. `train` is the training part of the epoch; aelab's `+val` adds its
validation pass, checkpoints and image grids. Test figures are on the official 10k test set after
the same number of epochs: `MSE` is the per-pixel squared error of the reconstruction (for a VAE,
of the decoded posterior mean), `-ELBO` the VAE's negative ELBO in nats per image (one z draw).

On a shared machine, `--repeats N` runs all loops N times round-robin (repeat r with seed
`--seed + r`) and pools their epochs, so a burst of load hits every loop alike; test figures are
then means over the seeds with half their range, and a test figure worse than the reference
loop's is called within or beyond that spread (a 3-epoch VAE's -ELBO moves by ±3 nats from seed
to seed).
`--threads 1` keeps torch's second thread from waiting on a core that another process holds:
with 2 threads on 2 busy cores a step of these small MLPs took 30x longer. On an idle machine the
default (2 threads here) is faster: a reference-VAE step took 3.8 ms instead of 5.7.

Each training-time ratio is given twice: from the pooled medians and from each loop's fastest
timed epoch. With 2 threads on this project's VM a whole process sometimes runs at one-thread
speed for tens of seconds (its two threads stay on separate CPUs: the host takes the second one);
the medians then move by up to 50% while the fastest epochs hold. A target is `meets` or `MISSES`
when both figures agree and `UNSETTLED` when they do not: one run cannot tell.

`--overhead` instead runs one real `aelab-train` job per model (the default config, `--epochs`
epochs, default 2, Hydra's own entry point in-process, under `python -X importtime`) and
prints where its wall time went, phase by phase: start-up and imports, Hydra, building, the
sanity check, each epoch's training, validation and checkpoints, the test loop, each part of the
test-time suite, the closing writes. The clock readings come from `aelab.callbacks.PhaseTimer`
(added to the job with `+callbacks.phase_timer`), the suite's own `timings` and this script. Each
phase is set against the training time of a default 10-epoch run, extrapolated as 10 x the
training part of a steady epoch (the median of the epochs after the first); a job's fixed cost
(everything but the training epochs: once-per-job phases, the first epoch's warm-up, and 10
validations with their checkpoints) is judged against 25 % of it. A job that finds the PCA
baseline's cache empty computes it, and is run again: the table is a sweep's later job.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
RESULT = "BENCHMARK-RESULT "
BATCH_SIZE = 64
SETTINGS = {"flushed": True, "denormals": False}  # row suffix -> flush_denormal
LOOPS = {  # name -> (model, kind); the table keeps this order
    "reference AE": ("ae", "reference"),
    "in-memory AE": ("ae", "memory"),
    "in-memory AE + fused Adam": ("ae", "memory-fused"),
    "aelab AE": ("ae", "aelab"),
    "reference VAE": ("vae", "reference"),
    "in-memory VAE": ("vae", "memory"),
    "in-memory VAE + fused Adam": ("vae", "memory-fused"),
    "aelab VAE": ("vae", "aelab"),
}


# --- the reference models, verbatim (README) ------------------------------------------------------
class Autoencoder(nn.Module):
    def __init__(self):
        super(Autoencoder, self).__init__()  # noqa: UP008 - as the reference wrote it
        self.encoder = nn.Sequential(
            nn.Linear(28 * 28, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 12),
        )
        self.decoder = nn.Sequential(
            nn.Linear(12, 64),
            nn.ReLU(),
            nn.Linear(64, 128),
            nn.ReLU(),
            nn.Linear(128, 28 * 28),
            nn.Sigmoid(),
        )

    def forward(self, x):
        encoded = self.encoder(x)
        decoded = self.decoder(encoded)
        return decoded


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()  # noqa: UP008 - as the reference wrote it
        self.encoder = nn.Sequential(
            nn.Linear(28 * 28, 400),
            nn.ReLU(),
            nn.Linear(400, 200),
            nn.ReLU(),
            nn.Linear(200, 100),
        )
        self.mu = nn.Linear(100, 20)
        self.logvar = nn.Linear(100, 20)
        self.decoder = nn.Sequential(
            nn.Linear(20, 100),
            nn.ReLU(),
            nn.Linear(100, 200),
            nn.ReLU(),
            nn.Linear(200, 400),
            nn.ReLU(),
            nn.Linear(400, 28 * 28),
            nn.Sigmoid(),
        )

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def forward(self, x):
        encoded = self.encoder(x)
        mu = self.mu(encoded)
        logvar = self.logvar(encoded)
        z = self.reparameterize(mu, logvar)
        decoded = self.decoder(z)
        return decoded, mu, logvar


def vae_loss_function(recon_x, x, mu, logvar):
    """The reference VAE's `loss_function` with its `criterion = nn.BCELoss(reduction='sum')`."""
    BCE = nn.functional.binary_cross_entropy(recon_x, x, reduction="sum")  # noqa: N806
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())  # noqa: N806
    return BCE + KLD


# --- children: one loop each, printing one RESULT line -------------------------------------------
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


def test_images(data_dir: Path, limit: int | None) -> Tensor:
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


def run_aelab(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from aelab import CONFIG_DIR
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
    (out / "run").mkdir()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(out / "run")  # Hydra would have made it
            del cfg.hydra
        metrics = train(cfg, extra_callbacks=[timer])
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


# --- --overhead: one aelab-train job, phase by phase ---------------------------------------------
ENTRY = "BENCHMARK-ENTRY"  # on stderr: the imports -X importtime lists before it came before
_STAMPS: list[tuple[str, float]] = []


def _stamped(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _STAMPS.append((f"{name}_start", time.perf_counter()))
        try:
            return fn(*args, **kwargs)
        finally:
            _STAMPS.append((f"{name}_end", time.perf_counter()))

    return wrapper


def run_overhead(args: argparse.Namespace) -> dict[str, Any]:
    """One job through aelab-train's own entry point (Hydra's `main`), in this process."""
    entry = time.time()
    print(ENTRY, file=sys.stderr, flush=True)
    start = time.perf_counter()
    import pytorch_lightning  # noqa: F401

    lightning = time.perf_counter()
    import aelab.train as aelab_train

    imported = time.perf_counter()
    # `main` looks these up in the module when it runs: their edges are the phases' edges
    for name in ("train", "build_model", "build_trainer"):
        setattr(aelab_train, name, _stamped(getattr(aelab_train, name), name))
    out = Path(tempfile.mkdtemp(prefix="aelab-overhead-"))
    timer = out / "phases.json"
    sys.argv = ["aelab-train", f"model={args.model}", f"trainer.max_epochs={args.epochs}"]
    sys.argv += [f"seed={args.seed}", f"paths.data_dir={args.data_dir}", f"paths.log_dir={out}"]
    sys.argv += [f"trainer.accelerator={'gpu' if args.device.startswith('cuda') else 'cpu'}"]
    sys.argv += ["+callbacks.phase_timer._target_=aelab.callbacks.PhaseTimer"]
    sys.argv += [f"+callbacks.phase_timer.path={timer}"]
    if args.threads:
        sys.argv.append(f"threads={args.threads}")
    if args.limit_batches:
        sys.argv += [f"++trainer.limit_train_batches={args.limit_batches}"]
        sys.argv += ["++trainer.limit_val_batches=1", "++trainer.limit_test_batches=1"]
        sys.argv += ["eval.probe_train_size=500", "eval.iw_images=50", "eval.mi_images=200"]
    sys.argv += args.override
    try:
        main_start = time.perf_counter()
        aelab_train.main()
        main_end = time.perf_counter()
        phases = json.loads(timer.read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    stamps = dict(_STAMPS)
    clock = {
        "start": start,
        "lightning": lightning,
        "imported": imported,
        "main_start": main_start,
        "main_end": main_end,
    }
    return {
        "entry_wall": entry,
        "end_wall": time.time(),
        "clock": {**clock, **stamps},
        "marks": phases["marks"],
        "parts": phases["parts"],
    }


def child(args: argparse.Namespace) -> None:
    if args.kind == "overhead":
        result = run_overhead(args)
        result["peak_rss_mb"] = peak_rss_mb()
        print(RESULT + json.dumps(result), flush=True)
        return
    from aelab.numerics import set_flush_denormal

    # first, as aelab-train does: the mode is inherited by the threads torch starts after it
    if not set_flush_denormal(bool(args.flush)) and args.flush:
        print("benchmark: this CPU cannot flush denormal floats", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.test_x = test_images(args.data_dir, 1000 if args.limit_batches else None)
    torch.manual_seed(args.seed)
    run = {"reference": run_reference, "aelab": run_aelab}.get(args.kind, run_memory)
    result = run(args, device)
    result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT + json.dumps(result), flush=True)


# --- the parent: run every loop, print the table -------------------------------------------------
def row_name(loop: str, setting: str) -> str:
    """The table's name of a loop run with a denormal setting (`SETTINGS`)."""
    return f"{loop}, {setting}"


def run_child(name: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    loop, setting = name.rsplit(", ", 1)
    model, kind = LOOPS[loop]
    cmd = [sys.executable, __file__, "--child", kind, "--model", model]
    cmd += ["--flush", "1" if SETTINGS[setting] else "0"]
    cmd += ["--epochs", str(args.epochs), "--warmup", str(args.warmup), "--seed", str(seed)]
    cmd += ["--data-dir", str(args.data_dir), "--device", args.device]
    cmd += ["--limit-batches", str(args.limit_batches), "--threads", str(args.threads)]
    cmd += [f"--override={o}" for o in args.override if kind == "aelab"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        sys.exit(f"benchmark: the {name} loop failed:\n{done.stderr[-4000:]}")
    result = json.loads(lines[-1][len(RESULT) :])
    print(f"  {name}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return result


def run_overhead_child(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """One --overhead job in its own `python -X importtime` process; its result, with the
    seconds `import torch` took before the job began and the process's own start and end."""
    cmd = [sys.executable, "-X", "importtime", __file__, "--child", "overhead", "--model", model]
    cmd += [
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--data-dir",
        str(args.data_dir),
    ]
    cmd += ["--device", args.device, "--threads", str(args.threads)]
    cmd += ["--limit-batches", str(args.limit_batches)]
    cmd += [f"--override={o}" for o in args.override]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    load = os.getloadavg()[0]
    spawned = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    ended = time.time()
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        errors = [ln for ln in done.stderr.splitlines() if not ln.startswith("import time:")]
        sys.exit(f"benchmark: the {model} job failed:\n" + "\n".join(errors[-60:]))
    result = json.loads(lines[-1][len(RESULT) :])
    before = done.stderr.split(ENTRY, 1)[0]
    # `import time: self | cumulative | name`: a top-level module is named after one space
    torch_us = sum(
        int(ln.split("|")[1]) for ln in before.splitlines()
        if ln.startswith("import time:") and ln.split("|")[2] == " torch"
    )  # fmt: skip
    result.update(spawned=spawned, ended=ended, torch_import=torch_us / 1e6)
    result["load"] = (load, os.getloadavg()[0])
    return result


def overhead_phases(r: dict[str, Any], n_epochs: int) -> dict[str, Any]:
    """The job's wall time cut into phases: once per job, per epoch (steady), and training."""
    clock = r["clock"]
    marks: dict[str, list[float]] = {}
    for event, at in r["marks"]:
        marks.setdefault(event, []).append(at)

    def first(event: str) -> float:
        return marks[event][0]

    epoch_starts = marks["epoch_start"]
    val_starts, val_ends = marks.get("val_start", []), marks.get("val_end", [])
    ends = [*epoch_starts[1:], first("train_end")]
    epochs = []
    for i, begun in enumerate(epoch_starts):
        if i < len(val_starts):
            epochs.append(
                (val_starts[i] - begun, val_ends[i] - val_starts[i], ends[i] - val_ends[i])
            )
        else:  # an epoch without validation
            epochs.append((ends[i] - begun, 0.0, 0.0))
    steady = epochs[1:] or epochs  # the first epoch carries the first steps' allocations
    train_s, val_s, after_s = (statistics.median(e[j] for e in steady) for j in range(3))
    warmup = sum(map(sum, epochs)) - len(epochs) * (train_s + val_s + after_s)
    fit_setup = first("setup_fit")
    sanity = (first("sanity_start"), first("sanity_end")) if "sanity_start" in marks else None
    lightning_setup = (
        (sanity[0] - fit_setup + epoch_starts[0] - sanity[1])
        if sanity
        else (epoch_starts[0] - fit_setup)
    )
    parts = dict(r["parts"])
    once: list[tuple[str, float]] = [
        ("Python start-up (interpreter, this script's modules)",
         r["entry_wall"] - r["spawned"] - r["torch_import"]),
        ("import torch", r["torch_import"]),
        ("import pytorch_lightning (torch already loaded)", clock["lightning"] - clock["start"]),
        ("import aelab.train (Hydra, TensorBoard, aelab)", clock["imported"] - clock["lightning"]),
        ("Hydra: compose the config, run folder, logging",
         clock["train_start"] - clock["main_start"]),
        ("config checks, data module and model built",
         clock["build_trainer_start"] - clock["train_start"]),
        ("Trainer built (callbacks, loggers)",
         clock["build_trainer_end"] - clock["build_trainer_start"]),
        ("fit start: run.json, MNIST read and split", fit_setup - clock["build_trainer_end"]),
        ("Lightning's fit set-up (optimizer, model summary)", lightning_setup),
        ("sanity check (trainer.num_sanity_val_steps)", sanity[1] - sanity[0] if sanity else 0.0),
        ("first epoch's warm-up (beyond a steady epoch)", warmup),
        ("fit end (teardown)", first("teardown_fit") - first("train_end")),
        ("test start: best checkpoint loaded", first("test_epoch_start") - first("teardown_fit")),
        ("test loop (test/* figures) and test image grids",
         first("test_epoch_end") - first("test_epoch_start") - sum(parts.values())),
    ]  # fmt: skip
    once += [(f"suite: {SUITE_PARTS.get(k, k)}", v) for k, v in parts.items()]
    once += [
        ("test end (teardown)", first("teardown_test") - first("test_epoch_end")),
        ("metrics.json, HParams row, loggers closed", clock["train_end"] - first("teardown_test")),
        ("Hydra's job end", clock["main_end"] - clock["train_end"]),
        ("interpreter exit", r["ended"] - r["end_wall"]),
    ]
    per_epoch = [
        ("validation (5k images)", val_s),
        ("checkpoints, image grids, epoch end", after_s),
    ]
    wall = r["ended"] - r["spawned"]
    accounted = sum(v for _, v in once) + len(epochs) * (train_s + val_s + after_s)
    return {
        "once": once,
        "per_epoch": per_epoch,
        "train_s": train_s,
        "epochs": len(epochs),
        "wall": wall,
        "unaccounted": wall - accounted,
        "load": r["load"],
        "pca_computed": "probes_pca" in parts,
    }


SUITE_PARTS = {  # EvaluationSuite.timings keys, as the table names them
    "encode": "encode the 10k test images",
    "iw_bound": "IW bound on -log p(x) (eval.iw_samples x eval.iw_images)",
    "active_units": "active units",
    "mutual_info": "I(x; z) (eval.mi_images)",
    "probes_encode": "encode the probes' training images (eval.probe_train_size)",
    "probes": "linear probe and k-NN on the codes",
    "probes_pca": "PCA baseline probes, computed (first job on this split)",
    "probes_pca_cached": "PCA baseline probes, from the cache",
    "anomaly": "one-class AUROC (eval.elbo_samples)",
    "figures": "generation figures (eval.images)",
    "save_figures": "generation figures written (PNG, TensorBoard)",
}
TARGET = 0.25  # the issue's: a job's fixed cost at most 25% of a 10-epoch run's training


def median_phases(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each phase's median over repeated jobs of one model; the load averages' range."""
    out = dict(runs[0])
    for key in ("once", "per_epoch"):
        names = list(dict.fromkeys(name for r in runs for name, _ in r[key]))
        out[key] = [
            (name, statistics.median(dict(r[key]).get(name, 0.0) for r in runs)) for name in names
        ]
    for key in ("train_s", "wall", "unaccounted"):
        out[key] = statistics.median(r[key] for r in runs)
    out["load"] = (min(r["load"][0] for r in runs), max(r["load"][1] for r in runs))
    out["pca_computed"] = any(r["pca_computed"] for r in runs)
    out["repeats"] = len(runs)
    return out


def overhead_report(model: str, ph: dict[str, Any]) -> list[str]:
    """The table of one model's job and its verdict against TARGET."""
    training = 10 * ph["train_s"]

    def row(name: str, seconds: float, note: str = "") -> str:
        return f"| {name}{note} | {seconds:.2f} | {100 * seconds / training:.1f} % |"

    jobs = "one job" if ph.get("repeats", 1) == 1 else f"median of {ph['repeats']} jobs"
    lines = [
        f"### {model.upper()}: {jobs}, {ph['epochs']} epochs, {ph['wall']:.1f} s wall "
        f"(load average {ph['load'][0]:.1f} before, {ph['load'][1]:.1f} after)",
        "",
        "| phase | seconds | share of a 10-epoch run's training |",
        "| --- | ---: | ---: |",
    ]
    lines += [row(name, s) for name, s in ph["once"]]
    lines += [row(name, 10 * s, f" (10 x {s:.3f} s)") for name, s in ph["per_epoch"]]
    fixed = sum(s for _, s in ph["once"]) + 10 * sum(s for _, s in ph["per_epoch"])
    lines.append(f"| **fixed cost of a 10-epoch job** | **{fixed:.2f}** | "
                 f"**{100 * fixed / training:.1f} %** |")  # fmt: skip
    lines.append(
        f"| training, 10 epochs (10 x {ph['train_s']:.2f} s, a steady epoch's training part) "
        f"| {training:.2f} | 100 % |"
    )
    lines.append(f"| (not accounted for by the phases) | {ph['unaccounted']:.2f} | |")
    lines.append("")
    ratio = fixed / training
    verdict = "meets" if ratio <= TARGET else "MISSES"
    lines.append(
        f"- {model.upper()}: fixed cost {fixed:.1f} s = {100 * ratio:.0f} % of a 10-epoch run's "
        f"training ({training:.1f} s, extrapolated from {ph['epochs']} epochs): {verdict} the "
        f"{100 * TARGET:.0f} % target"
    )
    if ratio > TARGET:
        names = dict(ph["once"])
        imports = names["import torch"] + names["import pytorch_lightning (torch already loaded)"]
        floor = sum(
            v for k, v in names.items()
            if k.startswith(("Python start-up", "import ", "Hydra"))
        )  # fmt: skip
        lines.append(
            f"  - start-up alone (Python, imports, Hydra) is {floor:.1f} s = "
            f"{100 * floor / training:.0f} %, of which import torch + pytorch_lightning "
            f"{imports:.1f} s; the target leaves {TARGET * training:.1f} s for everything"
        )
        top = sorted(ph["once"] + [(n, 10 * s) for n, s in ph["per_epoch"]], key=lambda x: -x[1])
        lines.append("  - largest: " + "; ".join(f"{n} {s:.1f} s" for n, s in top[:4]))
    if ph["pca_computed"]:
        lines.append("  - this job computed the PCA baseline: a sweep's later jobs read it")
    return lines


def main_overhead(args: argparse.Namespace, models: list[str]) -> None:
    print(f"machine: {machine(args.device, args.threads)}, device {args.device}")
    print(f"aelab-train, default config, trainer.max_epochs={args.epochs}"
          + (f", {' '.join(args.override)}" if args.override else ""))  # fmt: skip
    print()
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for _ in range(args.repeats):  # round-robin, so a burst of load hits every model alike
        for model in models:
            result = run_overhead_child(model, args)
            if "probes_pca" in result["parts"]:  # the first job on this split; a sweep's others
                print(f"  {model}: PCA baseline computed and cached; run again", file=sys.stderr)
                result = run_overhead_child(model, args)
            runs[model].append(overhead_phases(result, args.epochs))
    rows = {m: median_phases(runs[m]) for m in models}
    for model in models:
        print("\n".join(overhead_report(model, rows[model])))
        print()
    print(
        "Seconds are wall-clock; 'share' is each phase against 10 x the training part of a "
        "steady epoch (the epochs after the first) of this job, the training a default 10-epoch "
        "run would do. Per-epoch phases are counted 10 times; the first epoch's warm-up is its "
        "excess over a steady epoch (negative: load slowed a later epoch more). On a shared "
        "machine compare shares within one run, and repeat (--repeats N: each phase's median)."
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def summarize(name: str, runs: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Pool the timed epochs of every repeat; average the test figures and RSS over repeats."""

    def timed(key: str) -> list[float]:
        return [t for r in runs for t in (r[key][warmup:] if len(r[key]) > warmup else r[key])]

    def pooled(key: str) -> float | None:
        return statistics.median(timed(key)) if key in runs[0] else None

    def spread(key: str) -> float | None:
        return max(r[key] for r in runs) - min(r[key] for r in runs) if key in runs[0] else None

    def mean(key: str) -> float | None:
        return statistics.fmean(r[key] for r in runs) if key in runs[0] else None

    row = {"loop": name, "images": runs[0]["images"], "s_epoch": pooled("times")}
    steps = math.ceil(runs[0]["images"] / BATCH_SIZE)
    # early and late in a run: its first and its last epoch (median over repeats), per step
    row["ms_step_early"] = 1e3 * statistics.median(r["times"][0] for r in runs) / steps
    row["ms_step_late"] = 1e3 * statistics.median(r["times"][-1] for r in runs) / steps
    row["repeats"] = len(runs)
    row["s_epoch_with_val"] = pooled("times_with_val")
    row["ms_step"] = 1e3 * row["s_epoch"] / steps
    row["ms_step_with_val"] = (
        1e3 * row["s_epoch_with_val"] / steps if row["s_epoch_with_val"] else None
    )
    row["s_60k"] = row["s_epoch"] * 60_000 / row["images"]
    row["s_60k_with_val"] = (
        row["s_epoch_with_val"] * 60_000 / row["images"] if row["s_epoch_with_val"] else None
    )
    # the fastest timed epoch: noise on a shared machine only ever slows an epoch down
    row["s_60k_fastest"] = min(timed("times")) * 60_000 / row["images"]
    for key in ("test_mse", "test_neg_elbo", "peak_rss_mb", "rss_growth_mb"):
        row[key] = mean(key)
    for key in ("test_mse", "test_neg_elbo"):  # over repeats, which use seeds seed, seed+1, ...
        row[f"{key}_spread"] = spread(key)
    return row


def fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


COLUMNS = {  # header -> (row key, format)
    "loop": ("loop", "s"),
    "train images": ("images", "d"),
    "s/epoch (train)": ("s_epoch", ".2f"),
    "s/epoch (+val)": ("s_epoch_with_val", ".2f"),
    "s/60k img (train)": ("s_60k", ".2f"),
    "ms/step early": ("ms_step_early", ".2f"),
    "ms/step late": ("ms_step_late", ".2f"),
    "ms/step (+val)": ("ms_step_with_val", ".2f"),
    "test MSE": ("test_mse", ".4f"),
    "test -ELBO": ("test_neg_elbo", ".1f"),
    "peak RSS MB": ("peak_rss_mb", ".0f"),
    "RSS growth MB": ("rss_growth_mb", "+.1f"),
}


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table, one row per loop ("—": does not apply)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "| --- |" + " ---: |" * (len(COLUMNS) - 1)]
    for r in rows:
        cells = []
        for key, spec in COLUMNS.values():
            cell = fmt(r[key], spec)
            if r.get(f"{key}_spread"):  # several repeats (seeds): half their range
                cell += f" ±{r[f'{key}_spread'] / 2:{spec}}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(
    rows: dict[str, dict[str, Any]], models: list[str], settings: list[str] | None = None
) -> list[str]:
    """The targets, as ratios of times measured in this run, for the first of `settings` (aelab's
    default, `flushed`, when it ran); then what the other setting changes (`denormal_lines`)."""
    out = []
    setting = (settings or ["flushed"])[0]

    def ratio(line: str, a: str, b: str, key: str, target: float, base: str = "s_60k") -> None:
        if not (a in rows and b in rows and rows[a][key] and rows[b][base]):
            return
        value = rows[a][key] / rows[b][base]
        if key != "s_60k":
            out.append(
                f"- {line}: {value:.2f} ({'meets' if value <= target else 'MISSES'} <= {target})"
            )
            return
        # medians and fastest epochs agree on a quiet machine; when a slow spell hit one loop
        # more than the other they disagree, and one run cannot settle the target
        fastest = rows[a]["s_60k_fastest"] / rows[b]["s_60k_fastest"]
        both = (value <= target, fastest <= target)
        ok = "meets" if all(both) else "MISSES" if not any(both) else "UNSETTLED: they disagree on"
        out.append(f"- {line}: {value:.2f}, fastest epochs {fastest:.2f} ({ok} <= {target})")

    for model in models:
        up = model.upper()
        aelab, ref = row_name(f"aelab {up}", setting), row_name(f"reference {up}", setting)
        fused = row_name(f"in-memory {up} + fused Adam", setting)
        ratio(f"{aelab} / {ref}, training part", aelab, ref, "s_60k", 0.5)
        ratio(f"{aelab} / {ref}, whole epoch with validation", aelab, ref, "s_60k_with_val", 0.5)
        ratio(
            f"{aelab} / {fused}, per step, whole epoch with validation",
            aelab,
            fused,
            "ms_step_with_val",
            1.2,
            base="ms_step",
        )
        for key, label, spec in (("test_mse", "MSE", ".5f"), ("test_neg_elbo", "-ELBO", ".2f")):
            if aelab in rows and ref in rows and None not in (rows[aelab][key], rows[ref][key]):
                a, s = rows[aelab][key], rows[ref][key]
                # half the seed-to-seed range of each (0 with one repeat): the noise of a mean
                noise = sum((rows[n][f"{key}_spread"] or 0.0) / 2 for n in (aelab, ref))
                if a <= s:
                    ok = "meets: equal or better"
                elif min(rows[aelab]["repeats"], rows[ref]["repeats"]) < 2:
                    ok = f"worse by {a - s:{spec}}; one seed each: --repeats 3 tells noise apart"
                elif a - s <= noise:
                    ok = f"worse by {a - s:{spec}}, within the seed spread ±{noise:{spec}}"
                else:
                    ok = f"MISSES: worse by {a - s:{spec}}, beyond the seed spread ±{noise:{spec}}"
                out.append(f"- {aelab} test {label} {a:{spec}} vs {ref} {s:{spec}} ({ok})")
    return out + denormal_lines(rows)


def denormal_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Per loop run both ways: the late steps' cost with denormals over flushed, and the test
    figures of the two (one seed: flushing changes the arithmetic of values below 1.2e-38 only)."""
    out = []
    for loop in LOOPS:
        kept, flushed = row_name(loop, "denormals"), row_name(loop, "flushed")
        if kept not in rows or flushed not in rows:
            continue
        a, b = rows[kept], rows[flushed]
        line = (
            f"- {loop}: late steps with denormals {a['ms_step_late']:.2f} ms vs flushed "
            f"{b['ms_step_late']:.2f} ms ({a['ms_step_late'] / b['ms_step_late']:.2f}x)"
        )
        for key, label in (("test_mse", "MSE"), ("test_neg_elbo", "-ELBO")):
            if a.get(key) is not None and b.get(key) is not None:
                line += f"; test {label} {a[key]:.5g} vs {b[key]:.5g}"
        out.append(line)
    return out


def main_stacked(args: argparse.Namespace, models: list[str]) -> None:
    import stacked_benchmark  # scripts/, beside this file

    try:
        sizes = [int(m) for m in args.stacked.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        sys.exit(f"benchmark: --stacked takes integers >= 1 (1,4,8,16), not {args.stacked!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()
    started = time.perf_counter()
    rows = stacked_benchmark.main_stacked(args, models, sizes)
    print(f"machine: {machine(args.device, args.threads)}, device cpu")
    print(
        f"run: {args.stacked_batches} training batches of {BATCH_SIZE} per job, one run; load "
        f"average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print()
    print(stacked_benchmark.table(rows))
    if args.json:
        args.json.write_text(json.dumps({"stacked": rows}, indent=2))


def machine(device: str, threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    text = f"{os.cpu_count()}-core {platform.machine()} CPU ({cpu}), torch {torch.__version__}"
    text += f", {threads or torch.get_num_threads()} torch threads per loop"
    if device.startswith("cuda"):
        text += f", GPU: {torch.cuda.get_device_name(torch.device(device))}"
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per loop (default 5; --overhead: 2)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="first epochs left out of the median")
    parser.add_argument("--models", default="ae,vae", help="comma-separated: ae, vae")
    parser.add_argument("--repeats", type=int, default=1, help="run all loops this many times")
    parser.add_argument(
        "--loops", default="reference,memory,memory-fused,aelab", help="comma-separated loop kinds"
    )
    parser.add_argument(
        "--denormals",
        choices=("both", "flushed", "kept"),
        default="both",
        help="run each loop with denormal floats flushed to zero, computing with them, or both",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override for aelab's run (repeatable): measures what one part costs",
    )
    parser.add_argument("--quick", action="store_true", help="2 epochs of 30 batches: a smoke test")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("AELAB_DATA_DIR", REPO / "data"))
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="where one aelab-train job's wall time goes, phase by phase (2 epochs unless "
        "--epochs is given)",
    )
    parser.add_argument(
        "--stacked",
        metavar="M,M,...",
        help="images/s of M jobs trained as one stack against M sequential jobs "
        "(scripts/stacked_benchmark.py), e.g. 1,4,8,16",
    )
    parser.add_argument(
        "--stacked-batches", type=int, default=100, help="--stacked: training batches per job"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--limit-batches", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--flush", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.warmup, args.limit_batches = 2, 1, 30
    elif args.epochs is None:
        args.epochs = 2 if args.overhead else 5
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    if args.child:
        args.kind = args.child
        child(args)
        return
    from aelab.data.source import ensure_mnist

    ensure_mnist(args.data_dir)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or set(models) - {"ae", "vae"}:
        sys.exit(f"benchmark: --models takes ae and/or vae, not {args.models!r}")
    kinds = [k.strip() for k in args.loops.split(",") if k.strip()]
    known = {kind for _, kind in LOOPS.values()}
    if not kinds or set(kinds) - known:
        sys.exit(f"benchmark: --loops takes {', '.join(sorted(known))}, not {args.loops!r}")
    if args.overhead:
        main_overhead(args, models)
        return
    if args.stacked:
        main_stacked(args, models)
        return
    settings = {"both": ["flushed", "denormals"], "flushed": ["flushed"], "kept": ["denormals"]}
    chosen = settings[args.denormals]
    names = [
        row_name(n, setting)
        for n, (m, k) in LOOPS.items()
        if m in models and k in kinds
        for setting in chosen
    ]
    load = os.getloadavg()
    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for repeat in range(args.repeats):  # round-robin, so a burst of load hits every loop alike
        for name in names:
            runs[name].append(run_child(name, args, seed=args.seed + repeat))
    rows = {n: summarize(n, runs[n], args.warmup) for n in names}
    print(f"machine: {machine(args.device, args.threads)}, device {args.device}")
    if args.override:
        print(f"aelab overrides: {' '.join(args.override)}")
    print(
        f"run: {args.epochs} epochs per loop, median of epochs after the first {args.warmup}, "
        f"{args.repeats} repeat(s), batch {BATCH_SIZE}; load average "
        f"{load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print()
    print(table(list(rows.values())))
    print()
    print("\n".join(verdicts(rows, models, chosen)))
    if args.json:
        args.json.write_text(json.dumps({"rows": list(rows.values()), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
