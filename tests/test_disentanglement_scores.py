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
    _HeldFactorPairs,
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


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.2])
def test_factor_vae_keeps_a_rescaled_code_whose_std_clears_the_cut(cases, scale):
    # disentanglement_lib's prune_dims keeps a code whose standard deviation is >= 0.05: the
    # standardised factors scaled to std 0.2 (variance 0.04) stay active and score 1.0
    factors, codes = cases
    assert factor_vae_score(codes["factors"] * scale, factors, **VOTES) == 1.0


def test_factor_vae_prunes_codes_below_the_std_cut(cases):
    factors, codes = cases
    # every code at std 0.04 < 0.05: none is active, and the definition's score is 0
    assert factor_vae_score(codes["factors"] * 0.04, factors, **VOTES) == 0.0
    # the noise codes pruned, the factors' kept: the perfect code's votes are all right
    mixed = np.c_[codes["factors"], 0.01 * codes["noise"]]
    assert factor_vae_score(mixed, factors, **VOTES) == 1.0


def expected_explicitness(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> float:
    """Ridgeway & Mozer's explicitness as disentanglement_lib computes it: codes standardised
    with the training rows' mean and std (ddof 0), a logistic regression per factor, the macro
    one-vs-rest ROC AUC on the test rows, averaged over factors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    order = np.random.default_rng(seed).permutation(len(codes))  # the module's split
    train, test = order[: COUNTS["num_train"]], order[COUNTS["num_train"] :][: COUNTS["num_test"]]
    mean, std = codes[train].mean(0), codes[train].std(0)
    x_train, x_test = (codes[train] - mean) / std, (codes[test] - mean) / std
    aucs = []
    for k in range(factors.shape[1]):
        clf = LogisticRegression(max_iter=1000).fit(x_train, factors[train, k])
        onehot = factors[test, k][:, None] == clf.classes_[None, :]
        aucs.append(roc_auc_score(onehot, clf.predict_proba(x_test), average="macro"))
    return float(np.mean(aucs))


def test_explicitness_standardises_the_codes_so_scale_does_not_move_it(cases):
    factors, codes = cases
    want = expected_explicitness(codes["rotated"], factors)
    for scale in (1.0, 0.5, 0.1):
        got = modularity_explicitness(codes["rotated"] * scale, factors, **COUNTS)
        assert got["explicitness"] == pytest.approx(want, abs=1e-6)


def test_beta_vae_pairs_share_the_held_factor_and_draw_their_own_value(cases):
    factors, _ = cases
    sampler = _HeldFactorPairs(factors, 64, np.random.default_rng(0))
    held, same_other = [], []
    for _ in range(400):
        first, second = sampler.pairs(2)  # factor 2 has 10 values
        assert np.array_equal(factors[first, 2], factors[second, 2])
        # one point's pairs hold many values of the factor, not one shared value
        assert len(np.unique(factors[first, 2])) > 1
        held.append(factors[first, 2])
        same_other.append(factors[first, 3] == factors[second, 3])
    # each pair's value drawn uniformly over the grid: 25600 draws, 10 values, 2560 +- 48 each
    counts = np.bincount(np.concatenate(held), minlength=SIZES[2])
    assert np.all(np.abs(counts - 2560) < 5 * 48)
    # the other factors independent within a pair: factor 3 (8 values) agrees 1/8 of the time
    assert np.mean(same_other) == pytest.approx(1 / 8, abs=0.01)
