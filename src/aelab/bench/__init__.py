"""aelab's benchmarks: what a training step, an epoch, a job and a stacked sweep cost, measured
against plain PyTorch loops on the same data. `aelab-benchmark --help` (or
`python scripts/benchmark.py` in a checkout) runs them; docs/explanation/performance.md holds the
figures, each with its command and machine.

- `aelab.bench.cli`: the command line, the parent that runs each loop in its own process;
- `aelab.bench.loops`: the loops themselves (the reference models' loop, an in-memory plain loop,
  aelab's training), one per child process;
- `aelab.bench.tables`: the per-loop summary, the table and the targets' verdicts;
- `aelab.bench.overhead`: `--overhead`, one aelab-train job's wall time phase by phase;
- `aelab.bench.stacked`: `--stacked`, M jobs trained as one stack against one after another;
- `aelab.bench.steps`: `scripts/step_overhead.py`, what runs around one training step;
- `aelab.bench.reference_models`: the reference AE and VAE, verbatim.
"""

BATCH_SIZE = 64  # every loop's, as the reference models' loader
RESULT = "BENCHMARK-RESULT "  # a child's one line of JSON on stdout
