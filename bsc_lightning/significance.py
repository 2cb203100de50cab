"""Is run A ahead of run B on this test set, or within what the test set can tell apart?

Every trained or zero-shot run writes the pair scores it was tested on, ``scores/dev.tsv`` and
``scores/test.tsv`` (qid, label, score per pair; :func:`write_scores`); a ``choose`` run copies its kept
variant's. Not written: pool-ranked tasks (PFCC-S) and ``ddp_spawn`` runs, whose spawned ranks hold the
scores. This module compares two approaches, each given as one or more runs (seeds) on the same split, with a
paired bootstrap (Efron & Tibshirani 1993; Koehn 2004 for its use on test sets):

- ranking: per-query metric values (MAP = the mean of per-query AP), averaged over each approach's seeds,
  then queries are resampled with replacement; the difference of means is the difference of the approaches'
  mean-over-seeds scores, and its spread is what a test set of that many queries can resolve;
- classification and regression: pairs are resampled and the metric is recomputed on each resample for
  every run (classification at each run's dev threshold, from its metrics.json).

    python -m bsc_lightning.significance multirun/a/*/ --vs multirun/b/*/ [--split test] [--metric map]

prints both means, A − B, its 95% percentile interval and the share of resamples in which A is ahead.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from bsc_lightning.metrics import ranking_metrics, task_metrics

HEADER = "qid\tlabel\tscore"


def write_scores(folder: Path, split: str, scores: torch.Tensor, labels: torch.Tensor, qids: torch.Tensor) -> Path:
    """``folder/<split>.tsv``: one line per scored pair, in the split's order (``%.9g``: float32 scores exactly,
    so that metrics and dev thresholds recomputed from the file are the run's)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.tsv"
    rows = np.column_stack([qids.cpu().numpy().astype(np.float64), labels.cpu().numpy().astype(np.float64),
                            scores.cpu().double().numpy()])
    np.savetxt(path, rows, fmt=["%d", "%.10g", "%.9g"], delimiter="\t", header=HEADER, comments="")
    return path


def read_scores(run: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(qids, labels, scores)`` of ``run/scores/<split>.tsv``; a clear error when the run has none."""
    path = Path(run) / "scores" / f"{split}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no pair scores (runs write them since scores/ was added; a run whose "
                                "task ranks against a candidate pool, or one under strategy=ddp_spawn, has none)")
    rows = np.loadtxt(path, delimiter="\t", skiprows=1, ndmin=2)
    return rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2]


def per_query(scores: np.ndarray, labels: np.ndarray, qids: np.ndarray, metric: str,
              positive_threshold: float = 0.5) -> np.ndarray:
    """``metric`` of :func:`ranking_metrics` for each query with a positive, in increasing qid order; their
    mean is the run's ``ranking_metrics(...)[metric]``."""
    return ranking_metrics(scores, labels, qids, positive_threshold, per_query=True)[metric]


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Units (queries) resampled with replacement; ``a``, ``b``: (n,) per-unit values of the two approaches."""
    rng = np.random.default_rng(seed)
    diff = a - b                                                    # (n,)
    idx = rng.integers(0, len(diff), size=(resamples, len(diff)))   # (R, n)
    return summary(float(a.mean()), float(b.mean()), diff[idx].mean(axis=1))


def summary(a: float, b: float, deltas: np.ndarray) -> dict[str, float]:
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return {"a": a, "b": b, "delta": a - b, "ci_low": float(lo), "ci_high": float(hi),
            "p_a_ahead": float((deltas > 0).mean()), "resamples": float(len(deltas))}


def run_info(run: Path) -> tuple[str, str, float, float | None]:
    """``(task type, main metric, positive threshold, dev threshold)`` from a run's config.yaml / metrics.json."""
    cfg = OmegaConf.load(Path(run) / "config.yaml")
    metrics = json.loads((Path(run) / "metrics.json").read_text()) if (Path(run) / "metrics.json").is_file() else {}
    return (str(cfg.task.type), str(cfg.task.main_metric), float(cfg.task.get("positive_threshold", 0.5)),
            metrics.get("dev/threshold"))


def compare(runs_a: Sequence[Path], runs_b: Sequence[Path], split: str = "test", metric: str | None = None,
            resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Approach A (its runs, e.g. seeds) against approach B on one split: :func:`summary` of A − B (metric
    values on the [0, 1] scale) plus ``units`` (queries or pairs)."""
    infos = [run_info(r) for r in [*runs_a, *runs_b]]
    task_type, main, positive, _ = infos[0]
    if any(i[0] != task_type for i in infos):
        raise ValueError(f"runs of different task types: {sorted({i[0] for i in infos})}")
    metric = metric or main
    data = [read_scores(r, split) for r in [*runs_a, *runs_b]]
    q0, y0, _ = data[0]
    for r, (q, y, _) in zip([*runs_a, *runs_b], data):
        if not (np.array_equal(q, q0) and np.allclose(y, y0)):
            raise ValueError(f"{r}: its {split} pairs differ from {runs_a[0]}'s (another task, cut or split)")
    known = task_metrics(task_type, data[0][2][:2], y0[:2], q0[:2], positive_threshold=positive, threshold=0.0)
    if metric not in known or metric == "threshold":
        raise ValueError(f"metric {metric!r}: not a {task_type} metric (one of {', '.join(sorted(known))})")
    thresholds = [i[3] for i in infos]
    if task_type == "classification" and None in thresholds:
        raise ValueError(f"{[*runs_a, *runs_b][thresholds.index(None)]}: no dev/threshold in its metrics.json; "
                         "a classification run's test scores are read at the threshold its dev chose")
    n_a = len(runs_a)
    if task_type == "ranking":
        values = np.stack([per_query(s, y0, q0, metric, positive) for _, _, s in data])  # (runs, queries)
        out = paired_bootstrap(values[:n_a].mean(0), values[n_a:].mean(0), resamples, seed)
        return {**out, "units": float(values.shape[1])}
    rng = np.random.default_rng(seed)

    def score(idx: np.ndarray, runs: range) -> float:
        return float(np.mean([task_metrics(task_type, data[k][2][idx], y0[idx], positive_threshold=positive,
                                           threshold=thresholds[k])[metric] for k in runs]))
    all_idx = np.arange(len(y0))
    ra, rb = range(n_a), range(n_a, len(data))
    deltas = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, len(y0), size=len(y0))
        deltas[i] = score(idx, ra) - score(idx, rb)
    return {**summary(score(all_idx, ra), score(all_idx, rb), deltas), "units": float(len(y0))}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("a", nargs="+", type=Path, help="run folders of approach A (one per seed)")
    p.add_argument("--vs", nargs="+", type=Path, required=True, help="run folders of approach B")
    p.add_argument("--split", default="test", choices=["dev", "test"])
    p.add_argument("--metric", default=None, help="a metric of the task type (default: the task's main metric)")
    p.add_argument("--resamples", type=int, default=None,
                   help="bootstrap resamples (default 10,000 for ranking, 1,000 for pairs: each recomputes the metric)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        task_type, main_metric, _, _ = run_info(args.a[0])
        resamples = args.resamples or (10_000 if task_type == "ranking" else 1_000)
        r = compare(args.a, args.vs, args.split, args.metric, resamples, args.seed)
    except (OSError, ValueError, KeyError) as e:  # a folder that is not a run, its scores, the metric
        print(f"error: {e}", file=sys.stderr)
        return 2
    unit = "queries" if task_type == "ranking" else "pairs"
    print(f"{args.metric or main_metric} on {args.split} ({int(r['units'])} {unit}; A: {len(args.a)} runs, "
          f"B: {len(args.vs)} runs; paired bootstrap over {unit}, {int(r['resamples'])} resamples, ×100)")
    print(f"A {100 * r['a']:.2f}  B {100 * r['b']:.2f}  A − B {100 * r['delta']:+.2f}  "
          f"95% interval [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]  A ahead in {100 * r['p_a_ahead']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
