"""The disentanglement scores on constructed representations whose answer is known.

The factor grid is a small full grid (3 x 6 x 10 x 8 x 8, every factor at most 20 values, so
the 20-bin discretisation keeps each value apart). Four representations: the standardised
factors themselves, the same under a random rotation, pure noise, and the factors with the
first one copied into a second code. Expected values are computed here from the papers'
formulas with plain counting, independently of the module.
"""

import itertools
import math

import numpy as np
import pytest

from aelab.checks import ConfigError
from aelab.metrics.disentanglement_scores import (
    beta_vae_score,
    dci,
    dci_from_importance,
    factor_vae_score,
    mig,
    modularity_explicitness,
    sap,
)

SIZES = (3, 6, 10, 8, 8)
K = len(SIZES)
# sample counts small enough for a unit test, large enough for the tolerances below
COUNTS = {"num_train": 1500, "num_test": 1000}
VOTES = {"num_train": 1000, "num_eval": 500}


@pytest.fixture(scope="module")
def cases() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    grid = np.array(list(itertools.product(*(range(s) for s in SIZES))))
    rng = np.random.default_rng(0)
    factors = grid[rng.permutation(len(grid))]
    z = (factors - factors.mean(0)) / factors.std(0)
    rotation, _ = np.linalg.qr(rng.standard_normal((K, K)))
    return factors, {
        "factors": z,
        "rotated": z @ rotation,
        "noise": rng.standard_normal(z.shape),
        "copy": np.c_[z[:, :1], z],
    }


def plugin_mi(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats from the joint counts of two discrete columns."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    joint = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(joint, (ia, ib), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / outer[nz])))


def expected_mig(codes: np.ndarray, factors: np.ndarray) -> float:
    """Chen et al. eq. 6 on codes that take at most 20 values (discretisation is a relabelling)."""
    gaps = []
    for k in range(factors.shape[1]):
        mi = sorted((plugin_mi(c, factors[:, k]) for c in codes.T), reverse=True)
        gaps.append((mi[0] - mi[1]) / plugin_mi(factors[:, k], factors[:, k]))
    return float(np.mean(gaps))


def test_mig_matches_the_formula_on_the_factors_and_on_a_copied_factor(cases):
    factors, codes = cases
    rows = np.random.default_rng(0).permutation(len(factors))[:1500]  # mig's own subset
    for name in ("factors", "copy"):
        want = expected_mig(codes[name][rows], factors[rows])
        assert mig(codes[name], factors, num_train=1500) == pytest.approx(want, abs=1e-9)
    assert mig(codes["factors"], factors, num_train=1500) > 0.98
    # the copied factor has no gap: (K - 1) of K factors keep theirs
    assert mig(codes["copy"], factors, num_train=1500) == pytest.approx((K - 1) / K, abs=0.02)


def test_mig_is_lower_under_rotation_and_near_zero_for_noise(cases):
    factors, codes = cases
    top = mig(codes["factors"], factors, num_train=1500)
    assert mig(codes["rotated"], factors, num_train=1500) < top - 0.3
    assert mig(codes["noise"], factors, num_train=1500) < 0.02


def test_dci_on_the_factors_is_near_one_and_noise_near_zero(cases):
    factors, codes = cases
    top = dci(codes["factors"], factors, **COUNTS)
    assert top["dci_disentanglement"] > 0.98 and top["dci_completeness"] > 0.98
    assert top["dci_informativeness"] == pytest.approx(1.0, abs=1e-9)
    rotated = dci(codes["rotated"], factors, **COUNTS)
    assert rotated["dci_disentanglement"] < 0.5 and rotated["dci_completeness"] < 0.5
    noise = dci(codes["noise"], factors, **COUNTS)
    assert noise["dci_disentanglement"] < 0.05 and noise["dci_completeness"] < 0.05


def test_a_copied_factor_lowers_completeness_but_not_disentanglement(cases):
    factors, codes = cases
    copy = dci(codes["copy"], factors, **COUNTS)
    # the copied factor's importance splits about evenly over its two identical codes:
    # its completeness is 1 - H_d(1/2, 1/2) = 1 - ln 2 / ln d, the other factors keep 1
    d = K + 1
    want = (K - 1 + 1 - math.log(2) / math.log(d)) / K
    assert copy["dci_completeness"] == pytest.approx(want, abs=0.03)
    assert copy["dci_disentanglement"] > 0.98


def test_dci_from_importance_matches_a_hand_computation():
    assert dci_from_importance(np.eye(3)) == pytest.approx(
        {"dci_disentanglement": 1.0, "dci_completeness": 1.0}
    )
    assert dci_from_importance(np.ones((4, 2))) == pytest.approx(
        {"dci_disentanglement": 0.0, "dci_completeness": 0.0}, abs=1e-12
    )
    # codes: [1, 0] and [1, 1]; code weights 1/3, 2/3, code 2 has entropy 1 bit of 1 bit
    # factors: [1, 1] and [0, 1]; factor weights 2/3, 1/3, factor 1 has entropy 1 bit of 1 bit
    r = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert dci_from_importance(r) == pytest.approx(
        {"dci_disentanglement": 1 / 3, "dci_completeness": 1 / 3}
    )


def test_beta_vae_and_factor_vae_scores_are_one_on_the_factors_and_chance_on_noise(cases):
    factors, codes = cases
    # the fixed factor's code differs by exactly 0 within a batch: both classifiers are exact
    assert beta_vae_score(codes["factors"], factors, **VOTES) == 1.0
    assert factor_vae_score(codes["factors"], factors, **VOTES) == 1.0
    assert beta_vae_score(codes["rotated"], factors, **VOTES) < 1.0
    assert factor_vae_score(codes["rotated"], factors, **VOTES) < 1.0
    # noise carries nothing: votes spread over the K factors, 1/K right; binomial sd ~0.018
    assert beta_vae_score(codes["noise"], factors, **VOTES) == pytest.approx(1 / K, abs=0.07)
    assert factor_vae_score(codes["noise"], factors, **VOTES) == pytest.approx(1 / K, abs=0.07)


def test_sap_is_highest_on_the_factors_and_near_zero_for_noise(cases):
    factors, codes = cases
    top = sap(codes["factors"], factors, **COUNTS)
    assert sap(codes["rotated"], factors, **COUNTS) < top
    assert sap(codes["noise"], factors, **COUNTS) < 0.03


def test_modularity_and_explicitness(cases):
    factors, codes = cases
    top = modularity_explicitness(codes["factors"], factors, **COUNTS)
    # each code informs exactly one factor (the others' plug-in MI is ~0 on a full grid)
    assert top["modularity"] > 0.99
    assert top["explicitness"] > 0.99
    assert modularity_explicitness(codes["rotated"], factors, **COUNTS)["modularity"] < 0.97
    # noise: the logistic regression ranks no better than chance (AUC 0.5)
    noise = modularity_explicitness(codes["noise"], factors, **COUNTS)
    assert noise["explicitness"] == pytest.approx(0.5, abs=0.03)


def test_bad_arrays_are_refused_in_one_line(cases):
    factors, codes = cases
    with pytest.raises(ConfigError, match=r"factors.shape=.* allowed 11520 x K"):
        mig(codes["factors"], factors[:10])
    with pytest.raises(ConfigError, match=r"num_train \+ num_test=30000 is invalid"):
        dci(codes["factors"], factors, num_train=20000, num_test=10000)
    with pytest.raises(ConfigError, match=r"codes=.*finite"):
        sap(np.full_like(codes["factors"], np.nan), factors)
