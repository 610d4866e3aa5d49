"""What the generation figures (`eval.generation`) cost, and what a smaller sample count costs in
spread. Prints figures; asserts nothing.

1. Wall time of `aelab-train` (the default 10-epoch AE) with and without
   `eval.generation.enabled=true`, `--repeats` times each, alternating (the feature network is
   trained and cached by a first, untimed run): median seconds and the added share.
2. The spread of FID over draws at each `--n-samples`: the last run's checkpoint, its GMM sampler
   refit and redrawn with `--seeds` seeds, and the real-data floor on test subsets drawn with
   the same seeds (mean ± std).

    python scripts/generation_cost.py [--repeats 3] [--n-samples 250 500 1000] [--seeds 5]
    python scripts/generation_cost.py --run <a run folder>   # part 2 alone, on that run
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def train(folder: Path, *overrides: str) -> float:
    """Seconds of wall time of one `aelab-train` run into `folder`."""
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "aelab-train"), f"hydra.run.dir={folder}", *overrides],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def cost(root: Path, repeats: int) -> Path:
    train(root / "warm", "eval.generation.enabled=true", "trainer.max_epochs=1")
    off, on = [], []
    for r in range(repeats):
        off.append(train(root / f"off{r}"))
        on.append(train(root / f"on{r}", "eval.generation.enabled=true"))
    a, b = statistics.median(off), statistics.median(on)
    print(f"aelab-train (default AE, 10 epochs), median of {repeats}:")
    print(f"  without generation figures {a:.1f} s  {[round(t, 1) for t in off]}")
    print(f"  with generation figures    {b:.1f} s  {[round(t, 1) for t in on]}")
    print(f"  added: {b - a:.1f} s = {100 * (b - a) / a:.1f} % of the run", flush=True)
    return root / f"on{repeats - 1}"


def spread(run_dir: Path, counts: list[int], seeds: int) -> None:
    import torch
    from hydra.utils import instantiate

    from aelab import load_run
    from aelab.callbacks.eval_suite import DatamoduleSplit
    from aelab.callbacks.generation_figures import GenerationFigures
    from aelab.metrics.fid import model_generation_scores

    run = load_run(run_dir)
    data = instantiate(run.config.data)
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    # the splits in order with the suite's one fixed draw, as the run's test-time suite reads
    # them: the digit classifier then has the cache's digest and is loaded, not trained again
    suite_seed = int(run.config.eval.get("seed", 0) or 0) * 1000 + 6
    train_x, train_y = DatamoduleSplit(data, "train").tensors(seed=suite_seed)
    test, test_y = DatamoduleSplit(data, "test").tensors(seed=suite_seed)
    gen = GenerationFigures(samplers=["gmm"])
    cache = Path(run.config.paths.data_dir) / "cache" / "featurenet"
    features, _ = gen.extractor((train_x, train_y), (test, test_y), cache, 0)
    print(f"FID over {seeds} seeds (mean ± std), {run_dir}:")
    print("| n_samples | floor FID | GMM-sample FID |")
    print("| --- | --- | --- |")
    for n in counts:
        floor, gmm = [], []
        for seed in range(seeds):
            order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
            half = len(order) // 2
            samplers = gen.usable(run.model)
            fit = train_x[
                torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:2000]
            ]
            for sampler in samplers.values():
                sampler.fit(run.model, fit)
            figures = model_generation_scores(
                run.model, samplers, features, test[order[:half]], test[order[half:]],
                n_samples=n, kid_subset_size=min(100, n), seed=seed,
            )  # fmt: skip
            floor.append(figures["gen/floor/fid"])
            gmm.append(figures["gen/gmm/fid"])
        show = [f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" for v in (floor, gmm)]
        print(f"| {n} | {show[0]} | {show[1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-samples", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--run", type=Path, help="part 2 alone, on this run folder")
    args = parser.parse_args()
    if args.run is not None:
        spread(args.run, args.n_samples, args.seeds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = cost(Path(tmp), args.repeats)
        spread(run_dir, args.n_samples, args.seeds)


if __name__ == "__main__":
    main()
