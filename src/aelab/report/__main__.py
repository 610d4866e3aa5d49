"""`python -m aelab.report <sweep dir>`: the same as `aelab-report`."""

from aelab.report.cli import main

main()
