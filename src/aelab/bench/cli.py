"""The benchmark's command line: `aelab-benchmark` (`python -m aelab.bench`, or
`python scripts/benchmark.py` in a checkout). Seconds per epoch: the reference models' plain
PyTorch loops, an in-memory plain loop, and aelab's training, each with denormal floats flushed
to zero and without; each loop in its own process (so each peak RSS is its own), on the same
MNIST files.

    aelab-benchmark                         # AE and VAE, 5 epochs per loop, both settings
    aelab-benchmark --denormals flushed --threads 1   # aelab's default setting only
    aelab-benchmark --epochs 3 --repeats 3 --threads 1   # a busy machine (aelab.bench.tables)
    aelab-benchmark --epochs 10 --models ae
    aelab-benchmark --quick           # 2 short epochs on a slice: checks that it runs
    aelab-benchmark --device cuda     # everything on the GPU (data on the device)
    aelab-benchmark --models vae --loops aelab --override callbacks.images=null
                                                  # what one part of aelab's run costs
    aelab-benchmark --overhead --threads 1   # where one job's wall time goes
    aelab-benchmark --stacked 1,4,8,16 --threads 1   # M jobs stacked vs one by one

On a shared machine, `--repeats N` runs all loops N times round-robin (repeat r with seed
`--seed + r`) and pools their epochs, so a burst of load hits every loop alike; test figures are
then means over the seeds with half their range.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from aelab.bench import BATCH_SIZE, RESULT, loops, overhead, stacked
from aelab.bench.tables import LOOPS, SETTINGS, machine, row_name, summarize, table, verdicts


def model_presets() -> list[str]:
    """The names of conf/model's presets (`model=<name>`), from the checkout or the package."""
    from aelab import CONFIG_DIR, CONFIG_PATH

    folder: Any = (
        resources.files("aelab.conf") / "model"
        if CONFIG_PATH.startswith("pkg://")
        else Path(CONFIG_DIR) / "model"
    )
    names = (p.name for p in folder.iterdir())
    return sorted(n.removesuffix(".yaml") for n in names if n.endswith(".yaml"))


def run_child(name: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    loop, setting = name.rsplit(", ", 1)
    model, kind = LOOPS[loop]
    cmd = [sys.executable, "-m", "aelab.bench", "--child", kind, "--model", model]
    cmd += ["--flush", "1" if SETTINGS[setting] else "0"]
    cmd += ["--epochs", str(args.epochs), "--warmup", str(args.warmup), "--seed", str(seed)]
    cmd += ["--data-dir", str(args.data_dir), "--device", args.device]
    cmd += ["--limit-batches", str(args.limit_batches), "--threads", str(args.threads)]
    cmd += [f"--override={o}" for o in args.override if kind == "aelab"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        sys.exit(f"benchmark: the {name} loop failed:\n{done.stderr[-4000:]}")
    result = json.loads(lines[-1][len(RESULT) :])
    print(f"  {name}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="aelab-benchmark",
        description="Seconds per epoch: the reference models' plain PyTorch loops, an in-memory "
        "plain loop and aelab's training; --overhead: one job phase by phase; --stacked: M jobs "
        "as one stack against one by one.",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per loop (default 5; --overhead: 2)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="first epochs left out of the median")
    parser.add_argument(
        "--models",
        default="ae,vae",
        help="comma-separated: ae, vae (--stacked: any model preset that stacks)",
    )
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
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("AELAB_DATA_DIR", "data")),
        help="the MNIST folder (default: $AELAB_DATA_DIR, else ./data)",
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
        "(aelab.bench.stacked), e.g. 1,4,8,16",
    )
    parser.add_argument(
        "--stacked-batches", type=int, default=100, help="--stacked: training batches per job"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--limit-batches", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--flush", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir.resolve()  # the children's working folder may differ
    if args.quick:
        args.epochs, args.warmup, args.limit_batches = 2, 1, 30
    elif args.epochs is None:
        args.epochs = 2 if args.overhead else 5
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        args.kind = args.child
        (overhead.child if args.kind == "overhead" else loops.child)(args)
        return
    from aelab.data.source import ensure_mnist

    ensure_mnist(args.data_dir)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.stacked:
        presets = model_presets()
        if not models or set(models) - set(presets):
            sys.exit(
                f"benchmark: --stacked --models takes presets of conf/model "
                f"({', '.join(presets)}), not {args.models!r}"
            )
        stacked.main(args, models)
        return
    if not models or set(models) - {"ae", "vae"}:
        sys.exit(f"benchmark: --models takes ae and/or vae, not {args.models!r}")
    kinds = [k.strip() for k in args.loops.split(",") if k.strip()]
    known = {kind for _, kind in LOOPS.values()}
    if not kinds or set(kinds) - known:
        sys.exit(f"benchmark: --loops takes {', '.join(sorted(known))}, not {args.loops!r}")
    if args.overhead:
        overhead.main_overhead(args, models)
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
