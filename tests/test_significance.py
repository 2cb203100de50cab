"""bsc_lightning.significance: per-query values, the paired bootstrap, and A against B from run folders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bsc_lightning.metrics import ranking_metrics, task_metrics
from bsc_lightning.significance import compare, main, paired_bootstrap, per_query, read_scores, write_scores


def ranking_split(n_queries: int = 30, per: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    qids = np.repeat(np.arange(n_queries) * 7 + 3, per)      # ids need not be dense
    labels = (rng.random(len(qids)) < 0.3).astype(float)
    labels[rng.integers(0, per, n_queries) + per * np.arange(n_queries)] = 1.0  # a positive in every query
    labels[per * 2:per * 3] = 0.0                             # but one, which is left out
    return qids, labels


def fake_run(folder: Path, task_type: str, main_metric: str, qids, labels, scores, dev_threshold=None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"task:\n  type: {task_type}\n  main_metric: {main_metric}\n"
                                        "  positive_threshold: 0.5\n")
    metrics = {} if dev_threshold is None else {"dev/threshold": dev_threshold}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    write_scores(folder / "scores", "test", torch.as_tensor(scores, dtype=torch.float32),
                 torch.as_tensor(labels), torch.as_tensor(qids))
    return folder


def test_scores_round_trip_exactly(tmp_path):
    s = torch.rand(50) * 2 - 1
    y, q = torch.rand(50) * 5, torch.arange(50) // 5
    write_scores(tmp_path / "scores", "dev", s, y, q)
    q2, y2, s2 = read_scores(tmp_path, "dev")
    assert np.array_equal(q2, q.numpy()) and np.allclose(y2, y.numpy(), rtol=1e-9)
    assert np.array_equal(s2.astype(np.float32), s.numpy())  # float32 scores come back bit for bit


def test_read_scores_without_a_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pair scores"):
        read_scores(tmp_path, "test")


@pytest.mark.parametrize("metric", ["map", "mrr", "p@1", "ndcg@1"])
def test_per_query_values_average_to_the_run_metric(metric):
    qids, labels = ranking_split()
    scores = np.random.default_rng(1).random(len(qids))
    values = per_query(scores, labels, qids, metric)
    assert len(values) == 29                                           # the query without a positive is out
    assert values.mean() == pytest.approx(ranking_metrics(scores, labels, qids)[metric], abs=1e-6)
    alone = [ranking_metrics(scores[qids == q], labels[qids == q], qids[qids == q])[metric]
             for q in np.unique(qids) if labels[qids == q].any()]
    assert values == pytest.approx(alone, abs=1e-6)  # in qid order
    tied = np.round(scores, 1)  # ties: the run's own computation breaks them, the same way for both
    assert per_query(tied, labels, qids, metric).mean() == pytest.approx(
        ranking_metrics(tied, labels, qids)[metric], abs=1e-6)


def test_paired_bootstrap():
    a = np.random.default_rng(0).random(40)
    same = paired_bootstrap(a, a.copy(), resamples=500)
    assert same["delta"] == 0 and same["ci_low"] == same["ci_high"] == 0 and same["p_a_ahead"] == 0
    shifted = paired_bootstrap(a + 0.1, a, resamples=500)
    assert shifted["delta"] == pytest.approx(0.1) and shifted["ci_low"] == pytest.approx(0.1)
    assert shifted["p_a_ahead"] == 1.0
    b = np.random.default_rng(1).random(40)
    r = paired_bootstrap(a, b, resamples=4000)
    assert r["delta"] == pytest.approx(a.mean() - b.mean())
    assert r["ci_low"] < r["delta"] < r["ci_high"]
    se = (a - b).std(ddof=1) / np.sqrt(40)                            # the interval is about ±1.96 SE wide
    assert (r["ci_high"] - r["ci_low"]) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.1)


def test_compare_ranking_runs_averages_seeds_per_query(tmp_path):
    qids, labels = ranking_split()
    rng = np.random.default_rng(2)
    good = [fake_run(tmp_path / f"a{i}", "ranking", "map", qids, labels, labels + rng.random(len(qids)) * 0.5)
            for i in range(2)]
    noise = [fake_run(tmp_path / f"b{i}", "ranking", "map", qids, labels, rng.random(len(qids))) for i in range(3)]
    r = compare(good, noise, resamples=2000)
    run_map = [ranking_metrics(read_scores(p, "test")[2], labels, qids)["map"] for p in [*good, *noise]]
    assert r["a"] == pytest.approx(np.mean(run_map[:2])) and r["b"] == pytest.approx(np.mean(run_map[2:]))
    assert r["a"] == pytest.approx(1.0) and r["units"] == 29 and r["p_a_ahead"] == 1.0 and r["ci_low"] > 0
    mrr = compare(good, noise, metric="mrr", resamples=200)
    assert mrr["b"] == pytest.approx(np.mean([ranking_metrics(read_scores(p, "test")[2], labels, qids)["mrr"]
                                              for p in noise]))


def test_compare_refuses_runs_on_other_pairs(tmp_path):
    qids, labels = ranking_split()
    a = fake_run(tmp_path / "a", "ranking", "map", qids, labels, labels)
    b = fake_run(tmp_path / "b", "ranking", "map", qids[:-6], labels[:-6], labels[:-6])
    with pytest.raises(ValueError, match="pairs differ"):
        compare([a], [b])
    c = fake_run(tmp_path / "c", "regression", "spearman", qids, labels, labels)
    with pytest.raises(ValueError, match="task types"):
        compare([a], [c])


def test_compare_refuses_an_unknown_metric_and_a_missing_dev_threshold(tmp_path):
    qids, labels = ranking_split()
    a = fake_run(tmp_path / "a", "ranking", "map", qids, labels, labels)
    with pytest.raises(ValueError, match="'f1': not a ranking metric"):
        compare([a], [a], metric="f1")
    y = np.arange(20) % 2.0
    c = fake_run(tmp_path / "c", "classification", "f1", np.arange(20), y, y, dev_threshold=0.5)
    d = fake_run(tmp_path / "d", "classification", "f1", np.arange(20), y, y)
    with pytest.raises(ValueError, match="no dev/threshold"):
        compare([c], [d])


def test_compare_classification_applies_each_runs_dev_threshold(tmp_path):
    rng = np.random.default_rng(3)
    labels = (rng.random(200) < 0.5).astype(float)
    scores = labels * 0.3 + rng.random(200) * 0.6               # separable at 0.6 only roughly
    qids = np.arange(200)
    a = fake_run(tmp_path / "a", "classification", "f1", qids, labels, scores, dev_threshold=0.6)
    b = fake_run(tmp_path / "b", "classification", "f1", qids, labels, scores, dev_threshold=0.85)
    r = compare([a], [b], resamples=200)
    f1 = [task_metrics("classification", scores.astype(np.float32), labels, threshold=t)["f1"] for t in (0.6, 0.85)]
    assert r["a"] == pytest.approx(f1[0], abs=1e-6) and r["b"] == pytest.approx(f1[1], abs=1e-6)
    assert r["delta"] > 0.1 and r["units"] == 200


def test_compare_regression_bootstraps_pairs(tmp_path):
    rng = np.random.default_rng(4)
    labels = rng.random(120) * 5
    a = fake_run(tmp_path / "a", "regression", "spearman", np.arange(120), labels, labels + rng.random(120))
    b = fake_run(tmp_path / "b", "regression", "spearman", np.arange(120), labels, labels + 4 * rng.random(120))
    r = compare([a], [b], resamples=300)
    assert r["a"] == pytest.approx(task_metrics("regression", read_scores(a, "test")[2], labels)["spearman"])
    assert r["ci_low"] > 0 and r["p_a_ahead"] == 1.0 and r["resamples"] == 300


def test_cli_prints_the_comparison_and_fails_clearly(tmp_path, capsys):
    qids, labels = ranking_split()
    a = fake_run(tmp_path / "a", "ranking", "map", qids, labels, labels)
    b = fake_run(tmp_path / "b", "ranking", "map", qids, labels, np.zeros(len(qids)))
    assert main([str(a), "--vs", str(b), "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "map on test (29 queries; A: 1 runs, B: 1 runs" in out and "A 100.00" in out and "A ahead in" in out
    assert main([str(a), "--vs", str(b), "--split", "dev"]) == 2
    assert "no pair scores" in capsys.readouterr().err
    assert main([str(tmp_path), "--vs", str(b)]) == 2  # not a run folder: one line, no traceback
    assert "config.yaml" in capsys.readouterr().err
