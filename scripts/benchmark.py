"""The benchmark (`aelab.bench`; installed, `aelab-benchmark`): seconds per epoch of the reference
models' plain loops, an in-memory loop and aelab's training; `--overhead`, one job phase by
phase; `--stacked 1,4,8,16`, M jobs as one stack against one by one. `--help` lists the options;
`aelab.bench.cli` says what each loop measures.

    python scripts/benchmark.py --threads 1
    python scripts/benchmark.py --overhead --threads 1
    python scripts/benchmark.py --stacked 1,4,8,16 --threads 1
"""

from aelab.bench.cli import main

if __name__ == "__main__":
    main()
