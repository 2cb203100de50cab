"""experiments/peer.py (the sentence-transformers baseline) on the tiny BERT and the fixture data, in process.

Checked on values: the metrics.json keys and ranges; training moved the weights (trained != zero-shot); the
last partial batch is kept (steps = ceil(pairs / batch)); the positives reach the trainer (symmetric always,
other losses with --positives-only); the classification test metrics use the dev threshold (recomputed from
scores/ with our metrics); aggregate.py tables the peer jobs.
"""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import sentence_transformers
import yaml

from bsc_lightning.data import tasks
from bsc_lightning.data.tasks import CandidatePool, load_task
from bsc_lightning.metrics import classification_metrics, regression_metrics
from bsc_lightning.significance import compare, read_scores

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses (aggregate.Job) look their module up
    spec.loader.exec_module(mod)
    return mod


peer = _load("peer")
needs_trainer = pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                                   reason="SentenceTransformerTrainer needs accelerate: "
                                          "pip install 'sentence-transformers[train]'")


def _options(task: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / "task" / f"{task}.yaml").read_text())["options"] or {}


def _run(out: Path, *argv: str) -> tuple[dict, dict]:
    metrics = peer.main([*argv, "--out", str(out)])
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    return metrics, json.loads((out / "peer.json").read_text())


def _in_range(metrics: dict, lo: float, hi: float) -> None:
    for k, v in metrics.items():
        assert math.isfinite(v) and lo - 1e-6 <= v <= hi + 1e-6, (k, v)


@needs_trainer
def test_stsb_mse_trains_and_aggregates(tiny_bert, data_root, tmp_path):
    common = ["--task", "stsb", "--loss", "mse", "--data-dir", str(data_root), "--model", tiny_bert,
              "--batch-size", "16", "--lr", "1e-3", "--limit-train", "40"]
    zero, _ = _run(tmp_path / "zero", *common, "--zero-shot")
    trained, info = _run(tmp_path / "mse", *common)
    keys = {f"{s}/{m}" for s in ("dev", "test") for m in ("spearman", "pearson")}
    assert set(trained) == set(zero) == keys
    _in_range(trained, -1, 1)
    assert abs(trained["test/spearman"] - zero["test/spearman"]) > 1e-4  # the weights moved
    assert info["train_examples"] == 40 and info["steps"] == 3  # 16 + 16 + 8: the partial batch is kept
    assert info["sentence_transformers"] == sentence_transformers.__version__
    # the saved scores and our labels give the reported metrics: what was scored is what was saved
    test = load_task("stsb", data_root, options=_options("stsb")).splits["test"]
    q, y, s = read_scores(tmp_path / "mse", "test")
    assert np.array_equal(y.astype(np.float32), test.label) and np.array_equal(q, test.qid)
    assert regression_metrics(s, test.label)["spearman"] == pytest.approx(trained["test/spearman"])

    agg = _load("aggregate")
    jobs = agg.load_jobs(tmp_path)
    assert len(jobs) == 2 and not any(j.failed for j in jobs)
    rows = agg.summarize(jobs, paper={"numbers": []})
    assert [r["train"] for r in rows] == ["False", None]  # the zero-shot job is its own setting
    assert {r["metric"] for r in rows} == {"spearman"}
    assert rows[1]["test_mean"] == pytest.approx(100 * trained["test/spearman"])


@needs_trainer
def test_mrpc_symmetric_positives_and_dev_threshold(tiny_bert, data_root, tmp_path):
    task = load_task("mrpc", data_root, options=_options("mrpc"))
    positives = int(task.splits["train"].positives(task.positive_threshold).sum())
    assert 0 < positives < len(task.splits["train"])  # the filter has something to drop
    common = ["--task", "mrpc", "--data-dir", str(data_root), "--model", tiny_bert, "--batch-size", "32",
              "--lr", "1e-3"]
    m, info = _run(tmp_path / "sym", *common, "--loss", "symmetric")
    assert info["train_examples"] == positives and info["steps"] == math.ceil(positives / 32)
    assert set(m) == {f"{s}/{k}" for s in ("dev", "test") for k in ("f1", "accuracy", "ap", "threshold")}
    _in_range({k: v for k, v in m.items() if not k.endswith("threshold")}, 0, 1)
    assert m["test/threshold"] == m["dev/threshold"] == info["dev_threshold"]
    scores = {split: read_scores(tmp_path / "sym", split)[2] for split in ("dev", "test")}
    dev, test = task.splits["dev"], task.splits["test"]
    assert classification_metrics(scores["dev"], dev.label)["threshold"] == pytest.approx(m["dev/threshold"])
    again = classification_metrics(scores["test"], test.label, threshold=m["dev/threshold"])
    assert again["f1"] == pytest.approx(m["test/f1"]) and again["accuracy"] == pytest.approx(m["test/accuracy"])

    m2, info = _run(tmp_path / "mse", *common, "--loss", "mse", "--positives-only")
    assert info["train_examples"] == positives  # --positives-only reaches the trainer for any loss
    r = compare([tmp_path / "sym"], [tmp_path / "mse"], resamples=20)  # peer jobs compare as our runs do
    assert (r["a"], r["b"]) == (pytest.approx(m["test/f1"]), pytest.approx(m2["test/f1"]))


def test_wikiqa_zero_shot_ranking_and_pool_refused(tiny_bert, data_root, tmp_path, monkeypatch):
    m, info = _run(tmp_path / "zero", "--task", "wikiqa", "--data-dir", str(data_root), "--model", tiny_bert,
                   "--zero-shot", "--limit-eval", "40")
    assert {"dev/map", "dev/mrr", "test/map", "test/mrr", "test/p@1", "test/ndcg@1"} <= set(m)
    _in_range(m, 0, 1)
    assert info["split_sizes"]["test"] == 40 and "steps" not in info
    with pytest.raises(SystemExit, match="exists"):  # a finished job is never overwritten
        peer.main(["--task", "wikiqa", "--data-dir", str(data_root), "--model", tiny_bert, "--zero-shot",
                   "--out", str(tmp_path / "zero")])

    pooled = load_task("wikiqa", data_root, options=_options("wikiqa"))
    pooled.pool = CandidatePool(["a claim", "another claim"])
    monkeypatch.setattr(peer, "load_task", lambda *a, **k: pooled)
    with pytest.raises(SystemExit, match="candidate pool"):
        peer.main(["--task", "wikiqa", "--zero-shot", "--out", str(tmp_path / "pool")])


@needs_trainer
def test_wikiqa_symmetric_hard_negatives(tiny_bert, data_root, tmp_path, monkeypatch):
    """--negatives-per-query K: the same kept pairs as data.train_negatives_per_query=K, and each positive row
    reaches the trainer as (anchor, positive, K negatives of its own question) in that column order."""
    from datasets import Dataset
    task = load_task("wikiqa", data_root, options=_options("wikiqa"))
    train = tasks.keep_negatives_per_query(task.splits["train"], task.positive_threshold, 2)
    seen: list[Dataset] = []
    real = Dataset.from_dict
    monkeypatch.setattr(Dataset, "from_dict", lambda d, *a, **k: seen.append(d) or real(d, *a, **k))
    _, info = _run(tmp_path / "hn", "--task", "wikiqa", "--data-dir", str(data_root), "--model", tiny_bert,
                   "--loss", "symmetric", "--negatives-per-query", "2", "--limit-eval", "40")
    (data,) = seen
    assert list(data) == ["anchor", "positive", "negative_1", "negative_2"]
    pos = train.positives(task.positive_threshold)
    assert data["anchor"] == [train.texts[i] for i in train.a[pos]] and info["train_examples"] == pos.sum()
    kept = {(train.texts[q], train.texts[b]) for q, b, p in zip(train.a, train.b, pos) if not p}
    for j, anchor in enumerate(data["anchor"]):
        negs = {data["negative_1"][j], data["negative_2"][j]}
        own = {b for q, b in kept if q == anchor}
        assert negs <= own if own else not negs & {data["positive"][j]}
    assert sum(bool({b for q, b in kept if q == a}) for a in data["anchor"]) > 0  # some rows have their own
    assert yaml.safe_load((tmp_path / "hn" / ".hydra" / "overrides.yaml").read_text())[-1] == \
        "data.train_negatives_per_query=2"
