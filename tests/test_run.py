"""End to end: the real configs composed with Hydra's compose API, tiny fits on a tiny random BERT.

Every fit reads the tiny data folders of `data_root` (tests/fixtures.py, the original release layouts),
so nothing here needs ../shared/data; the slow `test_tiny_fit_on_real_data` also runs the real files.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures import make_cfg

from bsc_lightning.data.tasks import DataError
from bsc_lightning.metrics import task_metrics
from bsc_lightning.run import train
from bsc_lightning.significance import read_scores

__all__ = ["make_cfg"]  # test_ddp_run and test_wiring compose configs through this module too


@pytest.fixture
def base(tiny_bert, tmp_path) -> list[str]:
    return [f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=cpu", "data.batch_size=8",
            "data.limit_train=48", "data.limit_eval=40", "trainer.log_every_n_steps=1", "logger=csv",
            f"data.cache_dir={tmp_path / 'cache'}", "data.chunk_tokens=128"]


def task_overrides(task: str, data: Path, tmp: Path) -> list[str]:
    """The task and its data folder: ``data`` is a folder holding stsb/, mrpc/, wikiqa/, qqp/."""
    if task == "quora":
        return ["task=quora", f"task.data_dir={data / 'qqp'}", "task.options.train_size=100",
                "task.options.dev_size=50"]
    if task == "custom":
        rows = ["text_a,text_b,label"] + [f"question number {i} here,answer {i % 7} there,{i % 2}" for i in range(60)]
        for split in ("train", "dev", "test"):
            (tmp / f"{split}.csv").write_text("\n".join(rows) + "\n")
        return ["task=custom", f"task.data_dir={tmp}"]
    if task == "pfcc_s":
        from test_evaluation import write_pfcc

        return ["task=pfcc_s", f"task.data_dir={write_pfcc(tmp / 'pfcc')}", "task.options.train_pairs=40"]
    if task in ("cqa_a", "cqa_b"):
        return [f"task={task}", f"task.data_dir={data / 'semeval_cqa'}"]
    return [f"task={task}", f"task.data_dir={data / task}"]


KEYS = {"stsb": ["spearman", "pearson"], "mrpc": ["f1", "accuracy", "ap", "threshold"],
        "quora": ["f1", "threshold"], "wikiqa": ["map", "mrr", "p@1", "ndcg@1", "hp@1"],
        "custom": ["f1", "threshold"]}

CASES = [
    ("stsb", "symmetric", []),
    ("stsb", "combo", ["loss.bsc.normalization=coordinate", "loss.bsc.temperature=1.2"]),
    ("stsb", "mse", []),
    ("stsb", "cosent", []),
    ("mrpc", "triplet", ["shuffle=no_duplicates"]),
    ("mrpc", "symmetric", ["loss.learn_temperature=true", "shuffle=words"]),
    ("quora", "symmetric", ["loss.normalization=coordinate", "loss.temperature=1.2"]),
    ("wikiqa", "oneway", ["shuffle=none"]),
    ("wikiqa", "symmetric", ["shuffle=example", "shuffle.group_size=4"]),
    ("custom", "combo", ["logger=wandb"]),
]


@pytest.mark.parametrize("task,loss,extra", CASES, ids=[f"{t}-{l}-{i}" for i, (t, l, _) in enumerate(CASES)])
def test_tiny_fit_writes_metrics(base, data_root, tmp_path, task, loss, extra):
    cfg = make_cfg(base + task_overrides(task, data_root, tmp_path) + [f"loss={loss}", "export=false"] + extra)
    check_fit(cfg, tmp_path / "run", task, wandb="logger=wandb" in extra)


@pytest.mark.slow
@pytest.mark.parametrize("task,loss", [("stsb", "symmetric"), ("mrpc", "combo"), ("wikiqa", "symmetric")])
def test_tiny_fit_on_real_data(base, shared_data, tmp_path, task, loss):
    """In addition to the fixtures: the real release files (BOM, CRLF, 0x12, extra columns) end to end."""
    cfg = make_cfg(base + task_overrides(task, shared_data, tmp_path) + [f"loss={loss}", "export=false"])
    check_fit(cfg, tmp_path / "run", task)


def check_fit(cfg, out: Path, task: str, wandb: bool = False) -> None:
    metrics = train(cfg, out)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    for split in ("dev", "test"):
        for k in KEYS[task]:
            assert f"{split}/{k}" in saved, (split, k, sorted(saved))
    if "threshold" in KEYS[task]:  # the test split uses the dev-chosen threshold unchanged
        assert saved["test/threshold"] == saved["dev/threshold"]
    for split in ("dev", "test"):  # the pair scores it was tested on (scores/) give its metrics back
        q, y, s = read_scores(out, split)
        assert 0 < len(q) <= 40  # data.limit_eval=40 of base
        again = task_metrics(cfg.task.type, s, y, q, positive_threshold=cfg.task.positive_threshold,
                             threshold=saved["dev/threshold"] if split == "test" and "threshold" in KEYS[task] else None)
        for k in KEYS[task]:
            assert again[k] == pytest.approx(saved[f"{split}/{k}"], abs=1e-6), (split, k)
    assert (out / "checkpoints" / "stage1-best.ckpt").is_file()
    assert (out / "config.yaml").is_file()
    if not wandb:
        assert list((out / "logs").rglob("metrics.csv"))


def test_export_loads_in_sentence_transformers_and_automodel(base, data_root, tmp_path):
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    cfg = make_cfg(base + task_overrides("stsb", data_root, tmp_path) + ["data.limit_train=16"])
    out = tmp_path / "run"
    train(cfg, out)
    st = SentenceTransformer(str(out / "encoder"), device="cpu")
    hf = AutoModel.from_pretrained(out / "encoder")
    assert hf.config.hidden_size == 32
    emb = st.encode(["a cat sits", "a dog runs"], convert_to_tensor=True)
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()


def test_sequential_bsc_then_mse(base, data_root, tmp_path):
    cfg = make_cfg(base + task_overrides("stsb", data_root, tmp_path) + ["experiment=stsb_bsc_then_mse",
                                                                            "export=false"])
    assert cfg.loss.symmetric is True and cfg.stage2.loss._target_.endswith("MSELoss")
    out = tmp_path / "run"
    metrics = train(cfg, out)
    assert (out / "checkpoints" / "stage1-best.ckpt").is_file()
    assert (out / "checkpoints" / "stage2-best.ckpt").is_file()
    assert "test/spearman" in metrics


def test_cached_loss_fit(base, data_root, tmp_path):
    extra = ["model.cache_chunk_size=4", "loss.row_block=3", "export=false"]
    cfg = make_cfg(base + task_overrides("stsb", data_root, tmp_path) + extra)
    metrics = train(cfg, tmp_path / "run")
    assert "test/spearman" in metrics


def test_batch_larger_than_data_fails_before_training(base, data_root, tmp_path):
    cfg = make_cfg(base + task_overrides("stsb", data_root, tmp_path) + ["data.batch_size=64"])
    with pytest.raises(DataError, match="data.batch_size=64"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_task_is_one_clear_error(base, tmp_path):
    cfg = make_cfg(base + ["task.name=nope"])
    with pytest.raises(DataError, match="nope"):
        train(cfg, tmp_path / "run")


def test_cpu_runs_are_deterministic(base, data_root, tmp_path):
    over = base + task_overrides("stsb", data_root, tmp_path) + ["export=false", "data.limit_train=24"]
    first = train(make_cfg(over), tmp_path / "a")
    second = train(make_cfg(over), tmp_path / "b")
    assert first == second
    third = train(make_cfg(over + ["seed=1"]), tmp_path / "c")
    assert third != first  # the seed really reaches the model and the batches


def test_non_finite_loss_stops_with_the_step():
    import torch

    from bsc_lightning.module import BSCModule

    class _Enc(torch.nn.Module):
        pass

    m = BSCModule(_Enc(), torch.nn.Identity(), task_type="regression", positive_threshold=0.6,
                  main_metric="spearman")
    m._check_finite(torch.tensor(1.0))
    with pytest.raises(FloatingPointError, match="step 0"):
        m._check_finite(torch.tensor(float("nan")))
