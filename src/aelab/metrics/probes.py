"""Representation quality: how much of the label a frozen code carries, beside PCA.

Both probes are fit on training codes and scored on test codes. The PCA baseline gets the same
number of dimensions as the code, so a user sees whether the autoencoder beats a linear map.

The PCA baseline does not depend on the model: every job of a sweep on the same split gets the
same two figures, so they are computed once and kept in a cache (`PCABaselineCache`, under the
data folder), keyed by the images and labels themselves, the dimensions and k.

scikit-learn is imported where it is used: a run with `test=false` builds the suite but never
probes (0.2 s of start-up).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

PCA_KEYS = ("linear_probe_acc_pca", "knn_acc_pca")
# the PCA baseline's inputs: (train_x, train_y, test_x, test_y), images flattened to N x pixels
PCAInputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def linear_probe_accuracy(
    train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray
) -> float:
    """Multinomial logistic regression on standardised codes; test accuracy in [0, 1]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(probe.fit(train_z, train_y).score(test_z, test_y))


def knn_accuracy(
    train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray, k: int = 5
) -> float:
    """k-nearest-neighbour vote in the code space as it is (Euclidean); test accuracy."""
    from sklearn.neighbors import KNeighborsClassifier

    probe = KNeighborsClassifier(n_neighbors=k)
    return float(probe.fit(train_z, train_y).score(test_z, test_y))


def pca_codes(
    train_x: np.ndarray, test_x: np.ndarray, n_components: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The linear baseline: PCA fit on the flattened training images, applied to both sets."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, random_state=seed)
    return pca.fit_transform(train_x), pca.transform(test_x)


def probe_scores(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int = 5,
    cache: PCABaselineCache | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """Linear-probe and k-NN accuracy of the codes and of PCA with as many dimensions.

    `train` and `test` are (codes, flattened images, labels). `cache`: where the PCA figures
    are looked up and kept (None: always computed). `timings`, when given, receives the seconds
    of `probes` (the code's figures) and `probes_pca` (the baseline's), or `probes_pca_cached`
    (its look-up, when the cache held it).
    A figure that cannot be computed
    is left out with one logged line: the k-NN ones when k exceeds the training images, the
    PCA ones when the code has more dimensions than PCA can give (min(images, pixels)).
    Raises ValueError for fewer than two classes among the training labels.
    """
    (train_z, train_x, train_y), (test_z, test_x, test_y) = train, test
    n_train, n_pixels = train_x.shape
    dims = train_z.shape[1]
    knn = k <= n_train
    if not knn:
        log.warning(
            "knn_acc and knn_acc_pca skipped: eval.knn_k=%d exceeds the %d training images the "
            "probes are fit on",
            k,
            n_train,
        )
    pca = dims <= min(n_train, n_pixels)
    if not pca:
        log.warning(
            "linear_probe_acc_pca and knn_acc_pca skipped: PCA gives at most min(%d images, %d "
            "pixels) components, the code has model.latent_dim=%d",
            n_train,
            n_pixels,
            dims,
        )
    # One thread: next to torch's OpenMP pool, sklearn's OpenMP/BLAS threads oversubscribe the
    # cores and these small fits run many times slower (docs, Performance).
    with threadpool_limits(limits=1):
        start = time.perf_counter()
        out = {"linear_probe_acc": linear_probe_accuracy(train_z, train_y, test_z, test_y)}
        if knn:
            out["knn_acc"] = knn_accuracy(train_z, train_y, test_z, test_y, k)
        middle = time.perf_counter()
        hits = cache.hits if cache is not None else 0
        if pca:
            data = (train_x, train_y, test_x, test_y)
            if cache is None:
                out.update(pca_baseline_scores(*data, dims, k if knn else None))
            else:
                out.update(cache.scores(data, dims, k if knn else None))
        if timings is not None:
            timings["probes"] = middle - start
            reused = cache is not None and cache.hits > hits
            timings["probes_pca_cached" if reused else "probes_pca"] = time.perf_counter() - middle
        return out


def pca_baseline_scores(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    dims: int,
    k: int | None,
) -> dict[str, float]:
    """`linear_probe_acc_pca` and (k not None) `knn_acc_pca`: the probes on PCA-`dims` codes of
    the flattened images (N x pixels)."""
    pca_train, pca_test = pca_codes(train_x, test_x, dims)
    out = {"linear_probe_acc_pca": linear_probe_accuracy(pca_train, train_y, pca_test, test_y)}
    if k is not None:
        out["knn_acc_pca"] = knn_accuracy(pca_train, train_y, pca_test, test_y, k)
    return out


class PCABaselineCache:
    """The PCA baseline's figures, one small JSON file per data split, sizes, dimensions and k.

    The file name says the sizes (`pca<dims>_k<k>_<train>x<test>_<digest>.json`); the digest is
    of the images and labels themselves (and the scikit-learn version), so another split seed,
    binarization, class selection or probe subset never reads a stale file. Parallel jobs may
    race on one file: each writes a temp file and renames it over the name, so a reader sees a
    whole file from one of them (the figures are equal). A file that does not parse or lacks a
    figure is recomputed and rewritten, with one line in the log. `computed` counts the
    computations, `hits` the reuses.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.computed = self.hits = 0

    def path(self, data: PCAInputs, dims: int, k: int | None) -> Path:
        import sklearn

        digest = hashlib.blake2b(digest_size=10)
        digest.update(f"sklearn {sklearn.__version__}; pca seed 0;".encode())
        for array in data:
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(memoryview(array).cast("B"))
        knn = "none" if k is None else str(k)
        train_x, _, test_x, _ = data
        name = f"pca{dims}_k{knn}_{len(train_x)}x{len(test_x)}_{digest.hexdigest()}.json"
        return self.folder / name

    def scores(self, data: PCAInputs, dims: int, k: int | None) -> dict[str, float]:
        """The figures of `pca_baseline_scores`, from the cache file when it holds them."""
        path = self.path(data, dims, k)
        wanted = PCA_KEYS if k is not None else PCA_KEYS[:1]
        stored = self._read(path, wanted)
        if stored is not None:
            self.hits += 1
            return stored
        from aelab.run.atomic import write_json_atomic

        out = pca_baseline_scores(*data, dims, k)
        self.computed += 1
        try:
            write_json_atomic(path, out)
        except OSError as err:  # a read-only data folder: the figures stand, uncached
            log.warning("PCA baseline not cached: %s", err)
        return out

    @staticmethod
    def _read(path: Path, wanted: tuple[str, ...]) -> dict[str, float] | None:
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("PCA baseline cache %s unreadable (%s): recomputed", path, err)
            return None
        valid = isinstance(stored, dict) and all(
            isinstance(stored.get(key), float) and 0.0 <= stored[key] <= 1.0 for key in wanted
        )
        if not valid:
            log.warning("PCA baseline cache %s holds no valid figures: recomputed", path)
            return None
        return {key: stored[key] for key in wanted}
