"""Execute notebooks/compare_sweep.ipynb on a sweep folder and save its plot (docs/images/).

python scripts/notebook_figure.py <sweep dir> [docs/images/notebook-sweep.png]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    out = Path(sys.argv[2] if len(sys.argv) == 3 else ROOT / "docs/images/notebook-sweep.png")
    os.environ["AELAB_SWEEP"] = str(Path(sys.argv[1]).resolve())
    os.environ["AELAB_NOTEBOOK_FIGURE"] = str(out.resolve())
    nb = nbformat.read(ROOT / "notebooks" / "compare_sweep.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, resources={"metadata": {"path": ROOT}}).execute()
    print(out)


if __name__ == "__main__":
    main()
