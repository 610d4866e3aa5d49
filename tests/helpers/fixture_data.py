"""Small files in each dataset's official format, written independently of the readers under test
(struct, gzip, pickle, tarfile, PIL): IDX gz, CIFAR-10's pickled batches in a tar.gz,
Larochelle's .amat, a folder of PNG and JPEG images. Each writer returns what the reader must
give back and the md5s of the files it wrote (the table a test patches in for the official one).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def idx_gz(arr: np.ndarray) -> bytes:
    raw = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(raw + arr.astype(np.uint8).tobytes())


def write_fashion(data_dir: Path, n_train: int = 12, n_test: int = 4, seed: int = 0) -> dict:
    """`<data_dir>/FashionMNIST/raw/*.gz`; returns the images ("x": split -> N x 28 x 28), the
    labels ("y") and the files' md5s ("md5")."""
    rng = np.random.default_rng(seed)
    folder = data_dir / "FashionMNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict = {"x": {}, "y": {}, "md5": {}}
    for split, stem, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        y[:2] = (3, 7)  # two known classes in every split
        for name, arr in ((f"{stem}-images-idx3-ubyte.gz", x), (f"{stem}-labels-idx1-ubyte.gz", y)):
            (folder / name).write_bytes(idx_gz(arr))
            out["md5"][name] = md5(folder / name)
        out["x"][split], out["y"][split] = x, y
    return out


def write_cifar(data_dir: Path, per_batch: int = 2, n_test: int = 3, seed: int = 0) -> dict:
    """`<data_dir>/cifar10/cifar-10-python.tar.gz` with data_batch_1..5 and test_batch, each a
    pickled dict as Krizhevsky's (`data` N x 3072 uint8, `labels` a list)."""
    rng = np.random.default_rng(seed)
    folder = data_dir / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-python.tar.gz"
    out: dict = {"data": {"train": [], "test": []}, "labels": {"train": [], "test": []}}
    with tarfile.open(path, "w:gz") as tar:
        names = [(f"data_batch_{i}", "train", per_batch) for i in range(1, 6)]
        for name, split, n in [*names, ("test_batch", "test", n_test)]:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, n).tolist()
            blob = pickle.dumps({"batch_label": name, "data": data, "labels": labels}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
            out["data"][split].append(data)
            out["labels"][split] += labels
    out["data"] = {k: np.concatenate(v) for k, v in out["data"].items()}
    out["md5"] = {path.name: md5(path)}
    return out


def write_amat(data_dir: Path, rows=(6, 3, 3), seed: int = 0) -> dict:
    """`<data_dir>/binarized_mnist/binarized_mnist_{train,valid,test}.amat`: one image a line,
    784 values 0 or 1 separated by spaces."""
    rng = np.random.default_rng(seed)
    folder = data_dir / "binarized_mnist"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    for split, n in zip(("train", "valid", "test"), rows, strict=True):
        x = rng.integers(0, 2, (n, 784), dtype=np.uint8)
        lines = "".join(" ".join(str(v) for v in row) + "\n" for row in x)
        (folder / f"binarized_mnist_{split}.amat").write_text(lines)
        out[split] = x
    return out


def write_image_folder(root: Path, per_class: int = 4, side: int = 8) -> dict:
    """`root/cat/*.png` and `root/dog/*.jpg`, `per_class` each, side x side RGB; each PNG a
    single colour (its index), so a reader at `size=side` must give it back exactly."""
    from PIL import Image

    colours = {}
    for sub, ext in (("cat", "png"), ("dog", "jpg")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = (10 * i + 5, 200 - 10 * i, 100 + (ext == "jpg") * 50)
            img = Image.new("RGB", (side, side), colour)
            path = root / sub / f"{i:02d}.{ext}"
            img.save(path)
            colours[path.relative_to(root).as_posix()] = colour
    return colours


CELEBA_ATTRIBUTES = ("5_o_Clock_Shadow", "Male", "Smiling")  # the real file lists 40


def write_celeba(data_dir: Path, parts=(0, 0, 0, 1, 2, 2)) -> dict:
    """`<data_dir>/celeba/`: img_align_celeba.zip of 178 x 218 JPEGs (member
    img_align_celeba/000001.jpg, ...), list_eval_partition.txt ("000001.jpg 0" a line) and
    list_attr_celeba.txt (a count line, the attribute names, then "000001.jpg -1 1 ..." rows).
    Each image is black but for a white centre square of 148 x 148, so the reader's crop is
    white."""
    import zipfile

    from PIL import Image

    folder = data_dir / "celeba"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(parts))]
    pixels = np.zeros((218, 178, 3), np.uint8)
    top, left = (218 - 148) // 2, (178 - 148) // 2
    pixels[top : top + 148, left : left + 148] = 255
    with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as zf:
        for name in names:
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
            zf.writestr(f"img_align_celeba/{name}", buffer.getvalue())
    lines = "".join(f"{n} {p}\n" for n, p in zip(names, parts, strict=True))
    (folder / "list_eval_partition.txt").write_text(lines)
    male = [i % 2 for i in range(len(names))]
    rows = "".join(f"{n}  1 {2 * m - 1:2d} -1\n" for n, m in zip(names, male, strict=True))
    header = f"{len(names)}\n{' '.join(CELEBA_ATTRIBUTES)} \n"
    (folder / "list_attr_celeba.txt").write_text(header + rows)
    files = ("img_align_celeba.zip", "list_eval_partition.txt", "list_attr_celeba.txt")
    return {"male": male, "md5": {name: md5(folder / name) for name in files}}


def write_shapes3d(data_dir: Path, seed: int = 0) -> dict:
    """`<data_dir>/shapes3d/3dshapes.h5` as DeepMind's: `images` N x 64 x 64 x 3 uint8, `labels`
    N x 6 float64 factor values, for a 2 x 2 x 2 x 2 x 3 x 2 grid of the real values' kinds
    (hues in [0, 1), scale 0.75-1.25, shape 0-3, orientation -30-30)."""
    import itertools

    import h5py

    rng = np.random.default_rng(seed)
    levels = [(0.0, 0.5), (0.1, 0.9), (0.3, 0.0), (0.75, 1.25), (0.0, 1.0, 3.0), (-30.0, 30.0)]
    values = np.array(list(itertools.product(*levels)), dtype=np.float64)
    images = rng.integers(0, 256, (len(values), 64, 64, 3), dtype=np.uint8)
    folder = data_dir / "shapes3d"
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "3dshapes.h5", "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("labels", data=values)
    classes = np.stack(
        [np.searchsorted(sorted(set(lv)), values[:, j]) for j, lv in enumerate(levels)], 1
    )
    return {"images": images, "classes": classes}
