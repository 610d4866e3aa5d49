"""Representation quality: how much of the label a frozen code carries, beside PCA.

Both probes are fit on training codes and scored on test codes. The PCA baseline gets the same
number of dimensions as the code, so a user sees whether the autoencoder beats a linear map.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)


def linear_probe_accuracy(
    train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray
) -> float:
    """Multinomial logistic regression on standardised codes; test accuracy in [0, 1]."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(probe.fit(train_z, train_y).score(test_z, test_y))


def knn_accuracy(
    train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray, k: int = 5
) -> float:
    """k-nearest-neighbour vote in the code space as it is (Euclidean); test accuracy."""
    probe = KNeighborsClassifier(n_neighbors=k)
    return float(probe.fit(train_z, train_y).score(test_z, test_y))


def pca_codes(
    train_x: np.ndarray, test_x: np.ndarray, n_components: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The linear baseline: PCA fit on the flattened training images, applied to both sets."""
    pca = PCA(n_components=n_components, random_state=seed)
    return pca.fit_transform(train_x), pca.transform(test_x)


def probe_scores(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int = 5,
) -> dict[str, float]:
    """Linear-probe and k-NN accuracy of the codes and of PCA with as many dimensions.

    `train` and `test` are (codes, flattened images, labels). A figure that cannot be computed
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
    # cores and these small fits run ~10x slower (measured on 2 cores).
    with threadpool_limits(limits=1):
        out = {"linear_probe_acc": linear_probe_accuracy(train_z, train_y, test_z, test_y)}
        if knn:
            out["knn_acc"] = knn_accuracy(train_z, train_y, test_z, test_y, k)
        if pca:
            pca_train, pca_test = pca_codes(train_x, test_x, dims)
            out["linear_probe_acc_pca"] = linear_probe_accuracy(
                pca_train, train_y, pca_test, test_y
            )
            if knn:
                out["knn_acc_pca"] = knn_accuracy(pca_train, train_y, pca_test, test_y, k)
        return out
