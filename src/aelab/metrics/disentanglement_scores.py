"""Disentanglement scores of a representation against known generative factors.

Every function takes arrays, so a notebook can score any representation:

- `codes`: N x d float array, one code per image (a VAE's posterior mean, as disentanglement_lib
  scores it);
- `factors`: N x K array of discrete factor values (class indices or the values themselves:
  each column is relabelled 0..n_k-1). The sampled scores (BetaVAE, FactorVAE) group rows by
  factor value, so they assume `factors` covers the factor grid roughly uniformly (a full or
  uniformly subsampled grid, as dSprites' test split is).

The definitions follow the papers; where a paper leaves a choice open, disentanglement_lib's
(Locatello et al. 2019, `disentanglement_lib/evaluation/metrics/`) is taken: 20 equal-width bins
to discretise a code, its sample counts as defaults, and its classifiers through scikit-learn
(logistic regression for BetaVAE and explicitness, a linear SVM for SAP, gradient-boosted trees
for DCI, a majority vote for FactorVAE). Each score is in [0, 1], higher is better.

Errors: a `ConfigError` (one line naming the value and the allowed range) for arrays of the wrong
shape or sample counts the arrays cannot supply.

scikit-learn is imported where it is used, as in `aelab.metrics.probes`.
"""

from __future__ import annotations

import math
import time

import numpy as np

from aelab.checks import ConfigError, check_int

NUM_BINS = 20  # disentanglement_lib's discretisation of a code for the mutual information


def _arrays(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes; returns codes as float64 (N x d) and factors relabelled 0..n_k-1 (N x K)."""
    codes, factors = np.asarray(codes), np.asarray(factors)
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise ConfigError("codes.shape", codes.shape, "N x d with d >= 1")
    if factors.ndim != 2 or factors.shape[0] != codes.shape[0] or factors.shape[1] < 1:
        raise ConfigError("factors.shape", factors.shape, f"{codes.shape[0]} x K with K >= 1")
    if not np.isfinite(codes).all():
        raise ConfigError("codes", "non-finite values", "finite numbers")
    labels = np.stack([np.unique(f, return_inverse=True)[1] for f in factors.T], axis=1)
    return codes.astype(np.float64), labels.reshape(factors.shape)


def _split(n: int, num_train: int, num_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random row indices for training a score's classifier and for evaluating it."""
    check_int("num_train", num_train, 1)
    check_int("num_test", num_test, 1)
    if num_train + num_test > n:
        raise ConfigError(
            "num_train + num_test", num_train + num_test, f"at most the {n} rows given"
        )
    order = np.random.default_rng(seed).permutation(n)
    return order[:num_train], order[num_train : num_train + num_test]


def discretize(codes: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Each code dimension into `num_bins` equal-width bins over its range (disentanglement_lib's
    `histogram_discretize`). codes: N x d; returns N x d integer bin indices in [1, num_bins]."""
    check_int("num_bins", num_bins, 2)
    out = np.empty(codes.shape, dtype=np.int64)
    for j, column in enumerate(np.asarray(codes, dtype=np.float64).T):
        out[:, j] = np.digitize(column, np.histogram(column, num_bins)[1][:-1])
    return out


def mutual_information_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(z_j; v_k) in nats between every discretised code j and factor k (plug-in estimate).

    discrete_codes: N x d, factors: N x K, both integer. Returns d x K.
    """
    from sklearn.metrics import mutual_info_score

    return np.array(
        [[mutual_info_score(f, z) for f in factors.T] for z in np.asarray(discrete_codes).T]
    )


def _entropies(factors: np.ndarray) -> np.ndarray:
    """H(v_k) in nats of each factor column (plug-in); K values."""
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(f, f) for f in factors.T])


def mig(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_bins: int = NUM_BINS,
    num_train: int = 10000,
    seed: int = 0,
) -> float:
    """Mutual information gap (Chen et al. 2018, eq. 6): the mean over factors k of
    (I(z_a; v_k) - I(z_b; v_k)) / H(v_k), a and b the two codes most informative about v_k.

    Codes are discretised into `num_bins` bins; `num_train` rows (at most N) are used.
    """
    codes, factors = _arrays(codes, factors)
    check_int("num_train", num_train, 1)
    rows = np.random.default_rng(seed).permutation(len(codes))[:num_train]
    if codes.shape[1] < 2:
        raise ConfigError("codes.shape[1]", codes.shape[1], "at least 2 codes for a gap")
    mi = mutual_information_matrix(discretize(codes[rows], num_bins), factors[rows])
    top = np.sort(mi, axis=0)[::-1]
    entropy = _entropies(factors[rows])
    informative = entropy > 0  # a constant factor has no gap to measure
    return float(np.mean((top[0] - top[1])[informative] / entropy[informative]))


def modularity_explicitness(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_bins: int = NUM_BINS,
    num_train: int = 10000,
    num_test: int = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """Modularity and explicitness (Ridgeway & Mozer 2018, sec. 3).

    Modularity: per code j, 1 - sum_{k != k*} I(z_j; v_k)^2 / (I(z_j; v_k*)^2 (K - 1)), k* the
    factor it informs most, averaged over codes (0 for a code that informs nothing); mutual
    information on the discretised training codes. Explicitness: per factor, the mean one-vs-rest
    ROC AUC of a logistic regression from the codes on the test rows, averaged over factors
    (0.5 is chance). The codes are first standardised with the training rows' mean and standard
    deviation, as disentanglement_lib does, so that the regression's fixed L2 penalty (C = 1)
    does not make explicitness depend on the code's scale. Returns {"modularity",
    "explicitness"}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    codes, factors = _arrays(codes, factors)
    train, test = _split(len(codes), num_train, num_test, seed)
    mi = mutual_information_matrix(discretize(codes[train], num_bins), factors[train])
    squared = np.square(mi)
    peak = squared.max(axis=1)
    n_factors = factors.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (squared.sum(axis=1) - peak) / (peak * max(n_factors - 1, 1))
    modularity = np.where(peak > 0, 1.0 - delta, 0.0)
    # a constant code keeps scale 1 (StandardScaler's rule) rather than dividing by zero
    scaler = StandardScaler().fit(codes[train])
    x_train, x_test = scaler.transform(codes[train]), scaler.transform(codes[test])
    aucs = []
    for k in range(n_factors):
        y_train, y_test = factors[train, k], factors[test, k]
        classes = np.unique(y_train)
        if len(classes) < 2:
            continue
        clf = LogisticRegression(max_iter=1000).fit(x_train, y_train)
        proba = clf.predict_proba(x_test)
        per_class = [
            roc_auc_score(y_test == c, proba[:, i])
            for i, c in enumerate(clf.classes_)
            if 0 < np.sum(y_test == c) < len(y_test)
        ]
        aucs.append(np.mean(per_class))
    return {"modularity": float(np.mean(modularity)), "explicitness": float(np.mean(aucs))}


def sap(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    seed: int = 0,
) -> float:
    """Separated attribute predictability (Kumar et al. 2018, sec. 3): per factor, the gap
    between the two codes that predict it best on their own, averaged over factors.

    Factors are discrete, so a code's predictiveness is the test accuracy of a linear SVM
    (C=0.01, balanced classes) from that one code, disentanglement_lib's choice.
    """
    from sklearn.svm import LinearSVC

    codes, factors = _arrays(codes, factors)
    if codes.shape[1] < 2:
        raise ConfigError("codes.shape[1]", codes.shape[1], "at least 2 codes for a gap")
    train, test = _split(len(codes), num_train, num_test, seed)
    score = np.zeros((codes.shape[1], factors.shape[1]))
    for j in range(codes.shape[1]):
        for k in range(factors.shape[1]):
            y_train = factors[train, k]
            if len(np.unique(y_train)) < 2:
                score[j, k] = 1.0
                continue
            clf = LinearSVC(C=0.01, class_weight="balanced").fit(codes[train, j : j + 1], y_train)
            score[j, k] = np.mean(clf.predict(codes[test, j : j + 1]) == factors[test, k])
    top = np.sort(score, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


def dci_importance(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """The d x K importance matrix R_jk of DCI: the feature importances of one gradient-boosted
    tree classifier per factor (scikit-learn's defaults, as disentanglement_lib), and the mean
    test accuracy of those classifiers (informativeness)."""
    from sklearn.ensemble import GradientBoostingClassifier

    codes, factors = _arrays(codes, factors)
    train, test = _split(len(codes), num_train, num_test, seed)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    accuracy = []
    for k in range(factors.shape[1]):
        clf = GradientBoostingClassifier(random_state=seed)
        clf.fit(codes[train], factors[train, k])
        importance[:, k] = np.abs(clf.feature_importances_)
        accuracy.append(np.mean(clf.predict(codes[test]) == factors[test, k]))
    return importance, float(np.mean(accuracy))


def _normalised_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of p (rows normalised to sum 1) in base `base`: 0..1."""
    p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-11, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1) / math.log(base)


def dci_from_importance(importance: np.ndarray) -> dict[str, float]:
    """DCI disentanglement and completeness (Eastwood & Williams 2018, eqs. 1-3) of a d x K
    importance matrix R: disentanglement sum_j rho_j (1 - H_K(P_j.)), rho_j = sum_k R_jk / sum R;
    completeness sum_k rho_k (1 - H_d(P_.k)), rho_k = sum_j R_jk / sum R."""
    importance = np.asarray(importance, dtype=np.float64)
    d, n_factors = importance.shape
    total = importance.sum()
    if total <= 0:
        return {"dci_disentanglement": 0.0, "dci_completeness": 0.0}
    per_code = 1.0 - _normalised_entropy(importance, n_factors) if n_factors > 1 else np.ones(d)
    per_factor = 1.0 - _normalised_entropy(importance.T, d) if d > 1 else np.ones(n_factors)
    return {
        "dci_disentanglement": float(np.sum(importance.sum(axis=1) / total * per_code)),
        "dci_completeness": float(np.sum(importance.sum(axis=0) / total * per_factor)),
    }


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """DCI (Eastwood & Williams 2018): {"dci_disentanglement", "dci_completeness",
    "dci_informativeness"}; informativeness is the gradient-boosted trees' mean test accuracy."""
    importance, accuracy = dci_importance(
        codes, factors, num_train=num_train, num_test=num_test, seed=seed
    )
    return {**dci_from_importance(importance), "dci_informativeness": accuracy}


def _fixed_factor_batches(
    factors: np.ndarray, num_points: int, batch_size: int, rng: np.random.Generator
) -> list[tuple[int, np.ndarray]]:
    """`num_points` batches: a factor k drawn uniformly, one of its values drawn from a random
    row, and `batch_size` rows (with replacement) that share that value. Returns (k, rows)."""
    batches = []
    for _ in range(num_points):
        k = int(rng.integers(factors.shape[1]))
        value = factors[rng.integers(len(factors)), k]
        pool = np.flatnonzero(factors[:, k] == value)
        batches.append((k, rng.choice(pool, size=batch_size)))
    return batches


class _HeldFactorPairs:
    """BetaVAE's pairs over a factor grid: `pairs(k)` gives `batch_size` row pairs (first,
    second), each pair a random row and a random row sharing its value of factor k; every pair
    draws its own value."""

    def __init__(self, factors: np.ndarray, batch_size: int, rng: np.random.Generator) -> None:
        self.factors, self.batch_size, self.rng = factors, batch_size, rng
        # per factor, rows sorted by value with each value's start and count, so that a partner
        # of the same value is drawn for all pairs at once: order[start + floor(u * count)]
        self.orders = [np.argsort(column, kind="stable") for column in factors.T]
        self.counts = [np.bincount(column) for column in factors.T]
        self.starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in self.counts]

    def pairs(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        first = self.rng.integers(len(self.factors), size=self.batch_size)
        value = self.factors[first, k]
        offset = (self.rng.random(self.batch_size) * self.counts[k][value]).astype(np.int64)
        return first, self.orders[k][self.starts[k][value] + offset]


def beta_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    seed: int = 0,
) -> float:
    """BetaVAE score (Higgins et al. 2017, sec. 3): a linear classifier's accuracy at naming the
    factor held fixed, from the mean |z1 - z2| over `batch_size` pairs that share that factor.

    Per point a factor k is drawn uniformly; each pair then draws its own value of k (from a
    random row) and its two rows share that value, as in the paper and disentanglement_lib's
    `beta_vae.py` (the pairs of one point do not share one value). `num_train` and `num_eval`
    points train and evaluate a logistic regression, disentanglement_lib's choice; 1/K is chance.
    """
    from sklearn.linear_model import LogisticRegression

    codes, factors = _arrays(codes, factors)
    check_int("batch_size", batch_size, 1)
    check_int("num_train", num_train, 1)
    check_int("num_eval", num_eval, 1)
    rng = np.random.default_rng(seed)
    sampler = _HeldFactorPairs(factors, batch_size, rng)

    def points(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(factors.shape[1], size=n)
        features = np.empty((n, codes.shape[1]))
        for i, k in enumerate(labels):
            first, second = sampler.pairs(int(k))
            features[i] = np.mean(np.abs(codes[first] - codes[second]), axis=0)
        return features, labels

    x_train, y_train = points(num_train)
    x_eval, y_eval = points(num_eval)
    if len(np.unique(y_train)) < 2:
        return float(np.mean(y_eval == y_train[0]))
    clf = LogisticRegression(max_iter=1000, random_state=seed).fit(x_train, y_train)
    return float(clf.score(x_eval, y_eval))


def factor_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_std: float = 0.05,
    seed: int = 0,
) -> float:
    """FactorVAE score (Kim & Mnih 2018, sec. 4): codes divided by their standard deviation over
    `num_variance_estimate` rows; per batch of `batch_size` rows sharing one factor's value, the
    active code of least variance votes for that factor; a majority-vote classifier (code ->
    factor) is fit on `num_train` votes and its accuracy on `num_eval` votes is the score. 0 when
    no code is active; 1/K is chance.

    A code is active when its standard deviation is at least `prune_std` (disentanglement_lib's
    `prune_dims`, threshold 0.05): a code collapsed to a constant carries no factor, and the
    cut is on the scale itself, so a code that is only rescaled keeps its score.
    """
    codes, factors = _arrays(codes, factors)
    check_int("batch_size", batch_size, 2)
    check_int("num_train", num_train, 1)
    check_int("num_eval", num_eval, 1)
    check_int("num_variance_estimate", num_variance_estimate, 2)
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(codes), size=min(num_variance_estimate, len(codes)), replace=False)
    scale = np.std(codes[sample], axis=0, ddof=1)
    active = scale >= prune_std
    if not active.any():
        return 0.0
    normalised = codes[:, active] / scale[active]

    def votes(n: int) -> np.ndarray:
        counts = np.zeros((int(active.sum()), factors.shape[1]), dtype=np.int64)
        for k, rows in _fixed_factor_batches(factors, n, batch_size, rng):
            counts[np.argmin(np.var(normalised[rows], axis=0, ddof=1)), k] += 1
        return counts

    train_votes, eval_votes = votes(num_train), votes(num_eval)
    chosen = np.argmax(train_votes, axis=1)  # each code's majority factor
    return float(eval_votes[np.arange(len(chosen)), chosen].sum() / num_eval)


def all_scores(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    seed: int = 0,
    timings: dict[str, float] | None = None,
    **counts: int,
) -> dict:
    """Every score above on one representation, under the field-standard names.

    `counts` (num_train, num_test, num_eval, batch_size) override each score's sample counts
    where it takes them. `timings`, when given, receives the seconds each score took.
    """
    num_train, num_test = counts.get("num_train", 10000), counts.get("num_test", 5000)
    num_eval, batch_size = counts.get("num_eval", 5000), counts.get("batch_size", 64)
    sampled = {"num_train": num_train, "num_eval": num_eval, "batch_size": batch_size}
    split = {"num_train": num_train, "num_test": num_test}
    parts = {
        "beta_vae_score": lambda: beta_vae_score(codes, factors, seed=seed, **sampled),
        "factor_vae_score": lambda: factor_vae_score(codes, factors, seed=seed, **sampled),
        "mig": lambda: mig(codes, factors, num_train=num_train, seed=seed),
        "sap": lambda: sap(codes, factors, seed=seed, **split),
        "dci": lambda: dci(codes, factors, seed=seed, **split),
        "modularity_explicitness": lambda: modularity_explicitness(
            codes, factors, seed=seed, **split
        ),
    }
    scores: dict[str, float] = {}
    for name, score in parts.items():
        start = time.perf_counter()
        value = score()
        scores.update(value if isinstance(value, dict) else {name: value})
        if timings is not None:
            timings[name] = time.perf_counter() - start
    return scores
