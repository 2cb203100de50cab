"""Evaluation metrics for pair scores (cosine similarities): classification, ranking, regression.

Inputs are 1-D tensors, arrays or lists; outputs are ``dict[str, float]`` on the natural [0, 1] scale
(no ×100). Computations run in float64 so that thresholds and ties are not blurred by float32 rounding.
Degenerate inputs never raise; the value returned for each case is stated in the function's docstring.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef
from torchmetrics.functional.classification import binary_accuracy, binary_average_precision, binary_f1_score
from torchmetrics.retrieval import (
    RetrievalHitRate,
    RetrievalMAP,
    RetrievalMRR,
    RetrievalNormalizedDCG,
    RetrievalPrecision,
)

_EPS = 1e-6  # margin of the "all positive" / "all negative" thresholds beyond the extreme scores


def _vec(x: Any, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.reshape(-1).to(dtype)


def best_f1_threshold(scores: Any, labels: Any) -> tuple[float, float]:
    """The threshold ``t`` maximising F1 of ``score > t`` against binary ``labels``; returns ``(t, f1)``.

    Candidates: midpoints between consecutive distinct scores, ``min - 1e-6`` (all positive) and
    ``max + 1e-6`` (all negative). Vectorised: one sort and cumulative sums. Ties in F1 go to the highest
    threshold; with no positive label every F1 is 0 and the "all negative" threshold is returned.
    """
    s, y = _vec(scores), _vec(labels)
    if s.numel() == 0:
        return 0.0, 0.0
    order = torch.argsort(s, descending=True)
    s, y = s[order], y[order]
    tp, fp = torch.cumsum(y, 0), torch.cumsum(1 - y, 0)
    # The last index of each run of equal scores: predicting "positive" down to there is one candidate.
    last = torch.cat([torch.nonzero(s[1:] != s[:-1]).reshape(-1), torch.tensor([len(s) - 1])])
    f1 = 2 * tp[last] / (tp[last] + fp[last] + y.sum()).clamp_min(1e-12)
    below = torch.cat([s[last[:-1] + 1], s[-1:] - 2 * _EPS])  # next lower distinct score; beyond the min
    thr = (s[last] + below) / 2
    f1 = torch.cat([torch.zeros(1, dtype=f1.dtype), f1])
    thr = torch.cat([s[:1] + _EPS, thr])
    i = int(torch.argmax(f1))  # first maximum = highest threshold among ties
    return float(thr[i]), float(f1[i])


def classification_metrics(scores: Any, labels: Any, threshold: float | None = None, *,
                           positive_threshold: float = 0.5) -> dict[str, float]:
    """F1 and accuracy of ``score > threshold``, threshold-free average precision, and the threshold.

    ``labels`` are binarised as ``label > positive_threshold``. ``threshold=None`` picks the F1-maximising
    one (:func:`best_f1_threshold`; do this on dev), a given threshold is applied unchanged (test).
    Returns ``{"f1", "accuracy", "ap", "threshold"}``. Degenerate: no positive label gives f1 = 0 and
    ap = 0; an empty input gives all zeros.
    """
    s, y = _vec(scores), (_vec(labels) > positive_threshold).long()
    if s.numel() == 0:
        return {"f1": 0.0, "accuracy": 0.0, "ap": 0.0, "threshold": float(threshold or 0.0)}
    if threshold is None:
        threshold, _ = best_f1_threshold(s, y)
    pred = (s > threshold).long()  # binarised here: torchmetrics would sigmoid scores outside [0, 1]
    ap = float(binary_average_precision(s, y)) if bool(y.any()) else 0.0
    return {"f1": float(binary_f1_score(pred, y)), "accuracy": float(binary_accuracy(pred, y)),
            "ap": ap, "threshold": float(threshold)}


def _per_query(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return values  # torchmetrics' `aggregation`: keep one value per query


def ranking_metrics(scores: Any, labels: Any, qids: Any, positive_threshold: float = 0.5,
                    ks: Sequence[int] = (1, 5, 50), per_query: bool = False) -> dict[str, Any]:
    """Per-query ranking metrics averaged over queries (grouped by ``qids``); ``per_query=True``: not
    averaged, an array per metric with one value per query that has a positive, in increasing qid order (the
    same computation, ties included: their mean is the averaged metric).

    Binary relevance is ``label > positive_threshold`` (MAP, MRR, P@1, HasPositive@k = fraction of queries
    with a positive among their top k); nDCG@1 uses the graded label as gain. Queries without any positive
    are left out of every metric (the usual WikiQA / SemEval protocol; readers drop them from dev and test
    already); if no query has a positive, every metric is 0. Ties in score are broken by sort order.
    Returns ``{"map", "mrr", "p@1", "ndcg@1", "hp@<k>" for k in ks}``.
    """
    s, g, q = _vec(scores), _vec(labels), _vec(qids, torch.int64)
    rel = (g > positive_threshold).long()
    names = ["map", "mrr", "p@1", "ndcg@1", *(f"hp@{k}" for k in ks)]
    if s.numel():
        _, q = torch.unique(q, return_inverse=True)  # dense ids: torchmetrics bins by index value
        keep = torch.bincount(q, weights=rel.double())[q] > 0
        s, g, q, rel = s[keep], g[keep], q[keep], rel[keep]
    if s.numel() == 0:
        return {n: np.zeros(0) for n in names} if per_query else dict.fromkeys(names, 0.0)
    # torchmetrics' retrieval AP / RR / precision count a relevant item as irrelevant when its pred is <= 0
    # (``torch.where(preds > 0, target, 0)``), which breaks on cosines; an order-preserving shift avoids it.
    s = s - s.min() + 1.0
    agg: dict[str, Any] = {"aggregation": _per_query} if per_query else {}
    metrics = [RetrievalMAP(**agg), RetrievalMRR(**agg), RetrievalPrecision(top_k=1, **agg),
               RetrievalNormalizedDCG(top_k=1, **agg), *(RetrievalHitRate(top_k=k, **agg) for k in ks)]
    out = {}
    for name, m in zip(names, metrics):
        target = g.clamp_min(0) if name == "ndcg@1" else rel
        v = m(s, target, indexes=q)
        out[name] = v.numpy().astype(np.float64) if per_query else float(v)
    return out


def regression_metrics(scores: Any, labels: Any) -> dict[str, float]:
    """Pearson and Spearman (tie-averaged ranks) correlations of ``scores`` with ``labels``.

    Degenerate: fewer than two points, or constant scores or labels, give 0 for both.
    """
    s, y = _vec(scores), _vec(labels)
    if s.numel() < 2 or bool((s == s[0]).all()) or bool((y == y[0]).all()):
        return {"pearson": 0.0, "spearman": 0.0}
    return {"pearson": float(pearson_corrcoef(s, y)), "spearman": float(spearman_corrcoef(s, y))}


def task_metrics(task_type: str, scores: Any, labels: Any, qids: Any = None, *,
                 positive_threshold: float = 0.5, threshold: float | None = None) -> dict[str, float]:
    """Metrics for a task type ("classification", "ranking" or "regression"); ``qids`` needed for ranking.

    ``threshold`` only matters for classification (None = choose on these scores, e.g. dev).
    """
    if task_type == "classification":
        return classification_metrics(scores, labels, threshold, positive_threshold=positive_threshold)
    if task_type == "ranking":
        if qids is None:
            raise ValueError("ranking metrics need qids (the query id of every pair)")
        return ranking_metrics(scores, labels, qids, positive_threshold)
    if task_type == "regression":
        return regression_metrics(scores, labels)
    raise ValueError(f"unknown task type {task_type!r}; use classification, ranking or regression")
