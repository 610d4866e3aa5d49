"""`aelab-benchmark --overhead` runs one real `aelab-train` job per model (the default config,
`--epochs` epochs, default 2, Hydra's own entry point in-process, under `python -X importtime`)
and prints where its wall time went, phase by phase: start-up and imports, Hydra, building, the
sanity check, each epoch's training, validation and checkpoints, the test loop, each part of the
test-time suite, the closing writes. The clock readings come from `aelab.callbacks.PhaseTimer`
(added to the job with `+callbacks.phase_timer`), the suite's own `timings` and the benchmark. Each
phase is set against the training time of a default 10-epoch run, extrapolated as 10 x the
training part of a steady epoch (the median of the epochs after the first); a job's fixed cost
(everything but the training epochs: once-per-job phases, the first epoch's warm-up, and 10
validations with their checkpoints) is judged against 25 % of it. A job that finds the PCA
baseline's cache empty computes it, and is run again: the table is a sweep's later job.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aelab.bench import RESULT
from aelab.bench.loops import peak_rss_mb
from aelab.bench.tables import machine

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
    """The --overhead child: one job, then its RESULT line (phases, clock, peak RSS)."""
    result = run_overhead(args)
    result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT + json.dumps(result), flush=True)


def run_overhead_child(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """One --overhead job in its own `python -X importtime` process; its result, with the
    seconds `import torch` took before the job began and the process's own start and end."""
    cmd = [sys.executable, "-X", "importtime", "-m", "aelab.bench", "--child", "overhead"]
    cmd += ["--model", model]
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
    load = os.getloadavg()[0]
    spawned = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
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
        ("Python start-up (interpreter, the benchmark's modules)",
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
TARGET = 0.25  # aelab's target: a job's fixed cost at most 25% of a 10-epoch run's training


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
