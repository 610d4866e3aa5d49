"""`python -m aelab.bench`: the benchmark's command line (`aelab.bench.cli`)."""

from aelab.bench.cli import main

main()
