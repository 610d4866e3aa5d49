"""Linear probe, k-NN and the PCA baseline on synthetic codes whose answer is known."""

import numpy as np
import pytest

from aelab.metrics.probes import knn_accuracy, linear_probe_accuracy, pca_codes, probe_scores


def clusters(n: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten Gaussian clusters with unit noise around fixed random centres about `spread` apart;
    `seed` draws the points."""
    centres = spread * np.random.default_rng(123).standard_normal((10, dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    return centres[labels] + rng.standard_normal((n, dim)), labels


def test_separable_codes_are_probed_near_perfectly():
    train_z, train_y = clusters(2000, 8, spread=10.0, seed=0)
    test_z, test_y = clusters(1000, 8, spread=10.0, seed=1)
    assert linear_probe_accuracy(train_z, train_y, test_z, test_y) > 0.99
    assert knn_accuracy(train_z, train_y, test_z, test_y, k=5) > 0.99


def test_codes_without_label_information_score_chance():
    rng = np.random.default_rng(0)
    train_z, test_z = rng.standard_normal((2000, 8)), rng.standard_normal((1000, 8))
    train_y, test_y = rng.integers(0, 10, 2000), rng.integers(0, 10, 1000)
    assert linear_probe_accuracy(train_z, train_y, test_z, test_y) < 0.2
    assert knn_accuracy(train_z, train_y, test_z, test_y, k=5) < 0.2


def test_pca_keeps_the_high_variance_directions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 30)) * np.r_[10.0, 5.0, np.full(28, 0.1)]
    train, test = pca_codes(x[:400], x[400:], n_components=2)
    assert train.shape == (400, 2) and test.shape == (100, 2)
    assert np.corrcoef(np.abs(test[:, 0]), np.abs(x[400:, 0]))[0, 1] > 0.99


def test_probe_scores_put_the_code_beside_pca():
    """Images whose label lies in the high-variance pixels, and codes that are pure noise: the
    PCA baseline must win, and by a wide margin."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 3000)
    pixels = np.eye(10)[y] * 5.0 + 0.3 * rng.standard_normal((3000, 10))
    images = np.hstack([pixels, 0.01 * rng.standard_normal((3000, 40))])
    codes = rng.standard_normal((3000, 10))
    train = (codes[:2000], images[:2000], y[:2000])
    test = (codes[2000:], images[2000:], y[2000:])
    scores = probe_scores(train, test, k=5)
    assert set(scores) == {"linear_probe_acc", "linear_probe_acc_pca", "knn_acc", "knn_acc_pca"}
    assert scores["linear_probe_acc_pca"] > 0.95 and scores["knn_acc_pca"] > 0.95
    assert scores["linear_probe_acc"] < 0.2 and scores["knn_acc"] < 0.2
    assert all(0.0 <= v <= 1.0 for v in scores.values())


@pytest.mark.parametrize("k", [1, 5])
def test_knn_k_is_used(k):
    """One training point per class, far apart, plus a decoy cluster of class 0 next to the
    test point: 1-NN follows the nearest point, 5-NN the majority."""
    train_z = np.array([[0.0], [0.1], [0.2], [0.3], [10.0], [10.1]])
    train_y = np.array([0, 0, 0, 0, 1, 1])
    test_z, test_y = np.array([[9.0]]), np.array([1])
    assert knn_accuracy(train_z, train_y, test_z, test_y, k=k) == (1.0 if k == 1 else 0.0)
