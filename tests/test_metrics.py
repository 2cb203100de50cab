"""Metrics against scikit-learn / scipy references and hand-computed examples."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, ndcg_score

from bsc_lightning.metrics import (
    best_f1_threshold,
    classification_metrics,
    ranking_metrics,
    regression_metrics,
    task_metrics,
)


def _cls_data(seed: int, n: int = 300, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.float32)
    s = np.tanh(rng.normal(size=n) + 1.2 * y)  # cosine-like, in (-1, 1), informative
    return (np.round(s, 1) if ties else s).astype(np.float32), y


@pytest.mark.parametrize("ties", [False, True])
def test_classification_at_given_threshold_matches_sklearn(ties: bool) -> None:
    s, y = _cls_data(0, ties=ties)
    # 0.15 is no score: float32 scores equal to the threshold would compare differently in float64
    m = classification_metrics(torch.tensor(s), torch.tensor(y), threshold=0.15)
    pred = s > 0.15
    assert m["threshold"] == 0.15
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["ap"] == pytest.approx(average_precision_score(y, s))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_chosen_threshold_maximises_f1_by_brute_force(seed: int, ties: bool) -> None:
    s, y = _cls_data(seed, n=120, ties=ties)
    cuts = np.concatenate([np.unique(s) - 1e-4, [s.max() + 1]])
    brute = max(f1_score(y, s > c, zero_division=0) for c in cuts)
    t, f1 = best_f1_threshold(s, y)
    m = classification_metrics(s, y)
    assert f1 == pytest.approx(brute) and m["f1"] == pytest.approx(brute)
    assert m["threshold"] == pytest.approx(t)
    assert f1_score(y, s > t) == pytest.approx(brute)  # the reported threshold really gives it
    assert not np.any(s == t)  # a midpoint, never a score


def test_threshold_is_midpoint_and_ties_prefer_highest() -> None:
    t, f1 = best_f1_threshold([0.9, 0.7, 0.2, 0.1], [1, 1, 0, 0])
    assert (t, f1) == (pytest.approx(0.45), 1.0)
    t, _ = best_f1_threshold([0.9, 0.5, 0.1], [1, 0, 1])  # all three positive: F1 0.8 > 2/3
    assert t < 0.1


def test_classification_degenerate() -> None:
    m = classification_metrics([0.3, 0.3, 0.3], [0, 1, 1])  # constant scores: predict all positive
    assert m["f1"] == pytest.approx(0.8) and m["ap"] == pytest.approx(2 / 3) and m["threshold"] < 0.3
    m = classification_metrics([0.1, 0.5, 0.9], [0, 0, 0])  # no positive: f1 = ap = 0, all negative
    assert m["f1"] == 0.0 and m["ap"] == 0.0 and m["accuracy"] == 1.0 and m["threshold"] > 0.9
    assert classification_metrics([], [])["f1"] == 0.0


def test_labels_binarised_by_positive_threshold() -> None:
    s, y = _cls_data(3)
    graded = np.where(y > 0, 0.8, 0.4)
    m = classification_metrics(s, graded, 0.0, positive_threshold=0.6)
    assert m["f1"] == pytest.approx(f1_score(y, s > 0.0))


def test_ranking_hand_example() -> None:
    # q0: positives at ranks 2 and 3 -> AP = (1/2 + 2/3) / 2, RR = 1/2, P@1 = 0
    # q1: positive at rank 1        -> AP = 1, RR = 1, P@1 = 1
    # q2: no positive               -> left out
    scores = [0.9, 0.8, 0.7, 0.1, 0.6, 0.2, 0.5, 0.4]
    labels = [0, 1, 1, 0, 1, 0, 0, 0]
    qids = [7, 7, 7, 7, 3, 3, 5, 5]
    m = ranking_metrics(scores, labels, qids, ks=(1, 2))
    assert m["map"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1) / 2)
    assert m["mrr"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["p@1"] == pytest.approx(0.5) and m["hp@1"] == pytest.approx(0.5) and m["hp@2"] == 1.0
    assert m["ndcg@1"] == pytest.approx(0.5)


def test_ranking_against_brute_force_reference() -> None:
    rng = np.random.default_rng(0)
    qids = np.repeat(np.arange(40), rng.integers(2, 15, 40))
    n = len(qids)
    scores = rng.normal(size=n)
    graded = rng.choice([0.0, 1 / 3, 2 / 3, 1.0], size=n, p=[0.5, 0.2, 0.15, 0.15])
    m = ranking_metrics(torch.tensor(scores), torch.tensor(graded), torch.tensor(qids), 0.5)
    ap, rr, nd, hp = [], [], [], {1: [], 5: [], 50: []}
    for q in np.unique(qids):
        s, g = scores[qids == q], graded[qids == q]
        rel = g > 0.5
        if not rel.any():
            continue
        rel_sorted = rel[np.argsort(-s)]
        ap.append(average_precision_score(rel, s))
        rr.append(1 / (np.argmax(rel_sorted) + 1))
        nd.append(ndcg_score(g[None], s[None], k=1))
        for k, hits in hp.items():
            hits.append(rel_sorted[:k].any())
    assert m["map"] == pytest.approx(np.mean(ap))
    assert m["mrr"] == pytest.approx(np.mean(rr))
    assert m["p@1"] == pytest.approx(np.mean(hp[1]))
    assert m["ndcg@1"] == pytest.approx(np.mean(nd))
    for k, hits in hp.items():
        assert m[f"hp@{k}"] == pytest.approx(np.mean(hits))


def test_ranking_degenerate() -> None:
    assert ranking_metrics([0.1, 0.2], [0, 0], [1, 1])["map"] == 0.0  # no query with a positive
    m = ranking_metrics([0.5, 0.5, 0.5], [0, 1, 0], [4, 4, 4])  # constant scores: no crash
    assert 0.0 <= m["map"] <= 1.0
    assert ranking_metrics([], [], [])["mrr"] == 0.0


def test_regression_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 200) / 5  # many ties, like STS-B
    s = y + rng.normal(scale=0.3, size=200)
    m = regression_metrics(torch.tensor(s, dtype=torch.float32), y)
    assert m["pearson"] == pytest.approx(pearsonr(s, y)[0], abs=1e-6)
    assert m["spearman"] == pytest.approx(spearmanr(s, y)[0], abs=1e-6)
    assert regression_metrics([0.5] * 4, [0, 1, 2, 3]) == {"pearson": 0.0, "spearman": 0.0}
    assert regression_metrics([1.0], [1.0]) == {"pearson": 0.0, "spearman": 0.0}


def test_task_metrics_dispatch() -> None:
    s, y = _cls_data(1)
    assert task_metrics("classification", s, y, threshold=0.2) == classification_metrics(s, y, 0.2)
    assert set(task_metrics("regression", s, y)) == {"pearson", "spearman"}
    q = np.arange(len(s)) // 10
    assert task_metrics("ranking", s, y, q) == ranking_metrics(s, y, q)
    with pytest.raises(ValueError, match="qids"):
        task_metrics("ranking", s, y)
    with pytest.raises(ValueError, match="unknown task type"):
        task_metrics("clustering", s, y)
