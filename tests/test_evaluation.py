"""Evaluation on unique texts (bsc_lightning.evaluation): same metrics as the old pairwise path, the same
under DDP as in one process, corpus-level retrieval against a candidate pool (PFCC-S, custom pool_file)."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from fixtures import make_cfg

from bsc_lightning.data.datamodule import PairDataModule
from bsc_lightning.data.tasks import DataError, load_task
from bsc_lightning.data.tokens import tokenize_texts
from bsc_lightning.encoder import Encoder, load_tokenizer
from bsc_lightning.evaluation import (
    EvalTexts,
    gather_rows,
    pairwise_scores,
    pool_retrieval,
    split_metrics,
    split_text_ids,
)
from bsc_lightning.losses import BSCLoss
from bsc_lightning.metrics import ranking_metrics, task_metrics
from bsc_lightning.module import BSCModule
from bsc_lightning.run import train


# ------------------------------------------------------------------------------------------ PFCC fixtures
def _tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """A TSV written with csv's default quoting (a field with a newline or a quote gets quoted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _claims(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["vaccine", "senator", "election", "shark", "hurricane", "bill", "photo", "mayor", "virus", "flag",
             "school", "army", "bridge", "police", "tax", "river", "pizza", "airport", "judge", "coin"]
    out = []
    for i in range(n):
        out.append(f"Claim {i}: the {rng.choice(words)} {rng.choice(words)} story about {rng.choice(words)} is real.")
    return out


def write_pfcc(root: Path, n_pairs: int = 60, n_claims: int = 150) -> Path:
    """pfcc_s/known_lie and pfcc_s/clef2020 in the real layouts (quoted multi-line claims, a duplicate
    claim row, a tweet with two claims, a test tweet without a qrel)."""
    claims = _claims(n_claims)
    claims[3] = 'A "quoted" claim\nthat spans two lines.'
    kl = root / "pfcc_s" / "known_lie"
    claim_rows = [[f"title {i}", c] for i, c in enumerate(claims)] + [["dup title", claims[5]]]
    _tsv(kl / "verified-claims.tsv", ["title", "fact"], claim_rows)
    pairs = [[f"tweet {i} says {claims[(7 * i) % n_claims].split(':')[1]}", claims[(7 * i) % n_claims]]
             for i in range(n_pairs)]
    pairs[10][1] = claims[3]
    pairs.append([pairs[2][0], claims[11]])  # a tweet with a second claim (in test)
    _tsv(kl / "tweet-veclaim-pairs.tsv", ["claim", "fact"], pairs)
    clef = root / "pfcc_s" / "clef2020"
    _tsv(clef / "verified_claims.docs.tsv", ["", "vclaim", "title"], [[str(i), c, f"t{i}"] for i, c in enumerate(claims)])
    tweet_id = 0
    for split, n in (("train", 30), ("dev", 10), ("test", 10)):
        rows, qrels = [], []
        for k in range(n):
            c = (tweet_id * 5) % n_claims
            rows.append([str(tweet_id), f"tweet {tweet_id} about {claims[c].split(':')[1]}"])
            if not (split == "test" and k == n - 1):  # one test tweet has no qrel
                qrels.append(f"{tweet_id}\t0\t{c}\t1")
            tweet_id += 1
        _tsv(clef / split / "tweets.queries.tsv", ["", "tweet_content"], rows)
        (clef / split / "tweet-vclaim-pairs.qrels").write_text("\n".join(qrels) + "\n")
    return root


@pytest.fixture(scope="module")
def pfcc_root(tmp_path_factory) -> Path:
    return write_pfcc(tmp_path_factory.mktemp("pfcc"))


def test_pfcc_reader_known_lie_and_clef2020(pfcc_root):
    task = load_task("pfcc_s", pfcc_root, options={"train_pairs": 40, "dev_fraction": 0.25})
    assert task.type == "ranking" and task.main_metric == "map" and task.pool is not None
    assert len(task.pool) == 150  # the duplicate claim row is kept once
    assert 'A "quoted" claim\nthat spans two lines.' in task.pool.texts
    tr, dv, te = (task.splits[s] for s in ("train", "dev", "test"))
    assert (len(tr), len(dv), len(te)) == (30, 10, 21)
    assert not set(tr.qid.tolist()) & set(dv.qid.tolist())  # dev holds out whole tweets
    # the same split from the pfcc_s folder itself and again with the same seed; another seed differs
    again = load_task("pfcc_s", pfcc_root / "pfcc_s", options={"train_pairs": 40, "dev_fraction": 0.25})
    assert again.splits["dev"].text_a == dv.text_a
    other = load_task("pfcc_s", pfcc_root, options={"train_pairs": 40, "dev_fraction": 0.25, "split_seed": 1})
    assert other.splits["dev"].text_a != dv.text_a
    clef = load_task("pfcc_s", pfcc_root, options={"source": "clef2020"})
    assert [len(clef.splits[s]) for s in ("train", "dev", "test")] == [30, 10, 9]
    assert len(clef.pool) == 150
    with pytest.raises(DataError, match="source"):
        load_task("pfcc_s", pfcc_root, options={"source": "nope"})
    with pytest.raises(DataError, match="train_pairs"):
        load_task("pfcc_s", pfcc_root, options={"train_pairs": 1000})


def test_pool_retrieval_matches_full_ranking():
    """Chunked corpus-level metrics == torchmetrics over every (query, candidate) pair."""
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(23, 8, generator=g), torch.randn(97, 8, generator=g)
    rng = np.random.default_rng(0)
    positives = [rng.choice(97, size=rng.integers(1, 4), replace=False) for _ in range(23)]
    got = pool_retrieval(q, p, positives, chunk_elems=3 * 97)  # 3 queries per block
    sims = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(p, dim=-1).T
    rel = torch.zeros(23, 97)
    for i, pos in enumerate(positives):
        rel[i, torch.as_tensor(pos)] = 1
    want = ranking_metrics(sims.reshape(-1), rel.reshape(-1), torch.arange(23).repeat_interleave(97))
    assert got == pytest.approx(want, abs=1e-6)
    assert set(got) == {"map", "mrr", "p@1", "ndcg@1", "hp@1", "hp@5", "hp@50"}


# ------------------------------------------------------------------------------------------ unique vs pairwise
@pytest.fixture(scope="module")
def encoder(tiny_bert) -> Encoder:
    torch.manual_seed(0)
    return Encoder(tiny_bert, max_length=32)


def _test_results(encoder, task, tmp_path, world_chunk_tokens=256) -> dict[str, float]:
    dm = PairDataModule(task, load_tokenizer(encoder.name_or_path), "random", max_length=32, batch_size=4,
                        eval_batch_size=16, chunk_tokens=world_chunk_tokens, cache_dir=str(tmp_path / "cache"))
    module = BSCModule(encoder, BSCLoss(), task_type=task.type, positive_threshold=task.positive_threshold,
                       main_metric=task.main_metric)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, enable_checkpointing=False)
    trainer.test(module, datamodule=dm, verbose=False)
    return dm, module.test_results


@pytest.mark.parametrize("name", ["stsb", "mrpc", "wikiqa"])
def test_unique_texts_match_pairwise_path(encoder, data_root, tmp_path, name):
    task = load_task(name, data_root / name)
    dm, got = _test_results(encoder, task, tmp_path)
    assert isinstance(dm.test_dataloader()[0].dataset, EvalTexts)
    old = {}
    for split in ("dev", "test"):
        s = pairwise_scores(encoder, dm.task.splits[split], dm.tokens[split], batch_size=16, chunk_tokens=256)
        t = dm.task.splits[split]
        m = task_metrics(task.type, s, t.label, t.qid, positive_threshold=task.positive_threshold,
                         threshold=old.get("dev/threshold"))
        old.update({f"{split}/{k}": v for k, v in m.items()})
    assert set(got) == set(old)
    assert got == pytest.approx(old, rel=1e-5, abs=1e-6)
    if "dev/threshold" in got:
        assert got["test/threshold"] == got["dev/threshold"]
    # never more texts encoded than the pairwise path's 2 per pair; fewer where texts repeat
    t = dm.task.splits["test"]
    n = len(split_text_ids(t))
    assert n < 2 * len(t) if name == "wikiqa" else n <= 2 * len(t)


def test_eval_chunks_close_where_lengths_drop(monkeypatch):
    """Evaluation chunks (EvalTexts and Encoder.encode_ids): within the budget, length-sorted, and cut where
    the length drops by more than 10% once a chunk holds 2,048 real tokens (the training rule allows 25%)."""
    from bsc_lightning.data import chunks as chunk_mod

    lengths = np.array([100] * 30 + [85] * 30 + [60] * 30)  # 10% and more below 100, within 25%
    plan = chunk_mod.plan_eval_chunks(lengths, max_tokens=16384)
    assert [sorted(set(lengths[p].tolist())) for p in plan] == [[100], [85], [60]]
    assert [len(p) for p in chunk_mod.plan_chunks(lengths, max_tokens=16384)] == [60, 30]  # training rule
    assert all(len(p) * lengths[p].max() <= 1000 for p in chunk_mod.plan_eval_chunks(lengths, max_tokens=1000))
    # both evaluation paths plan with it: EvalTexts' items and encode_ids' chunks
    table = type("T", (), {"a": np.arange(45), "b": np.arange(45, 90)})()
    tokens = type("Tok", (), {"lengths": lambda self: lengths})()
    items = EvalTexts("test", table, tokens).items
    assert [sorted(set(lengths[ids].tolist())) for _, ids in items] == [[100], [85], [60]]
    calls = []
    monkeypatch.setattr("bsc_lightning.encoder.plan_eval_chunks",
                        lambda lens, max_tokens: calls.append((list(lens), max_tokens)) or [])
    Encoder.encode_ids(type("E", (), {"training": False, "eval": lambda s: s, "train": lambda s, m: s,
                                      "dim": 4, "parameters": lambda s: iter([torch.zeros(1)])})(),
                       [[1, 2], [3]], 0, max_tokens=77)
    assert calls == [([2, 1], 77)]


def test_gather_rows_shards_and_missing_rows():
    emb = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    shards = [(torch.tensor([0, 2, 4]), emb[[0, 2, 4]]), (torch.tensor([1, 5]), emb[[1, 5]])]
    full, present = gather_rows(shards, 7, 2, "cpu")
    assert torch.equal(full[:6][present[:6]], emb[[0, 1, 2, 4, 5]]) and present.tolist() == [
        True, True, True, False, True, True, False]


def test_pool_task_evaluates_against_whole_pool(encoder, pfcc_root, tmp_path):
    task = load_task("pfcc_s", pfcc_root, options={"train_pairs": 40, "dev_fraction": 0.25})
    dm, got = _test_results(encoder, task, tmp_path)
    for split in ("dev", "test"):
        assert {f"{split}/{k}" for k in ("map", "mrr", "p@1", "ndcg@1", "hp@1", "hp@5", "hp@50")} <= set(got)
    # the same numbers from the standalone path: embed queries and the pool, rank in one block
    from bsc_lightning.evaluation import evaluate_split

    pool_tokens = dm.tokens["pool"]
    for split in ("dev", "test"):
        want = evaluate_split(encoder, dm.task.splits[split], dm.tokens[split], "ranking", pool=dm.task.pool,
                              pool_tokens=pool_tokens)
        assert {k: got[f"{split}/{k}"] for k in want} == pytest.approx(want, abs=1e-6)
    # the dev loader carries the pool, the test loader reuses it
    dev, test = dm.test_dataloader()
    assert dev.dataset.with_pool and not test.dataset.with_pool
    n_pool_texts = sum(len(ids) for src, ids in dev.dataset.items if src == 1)
    assert n_pool_texts == len(dm.task.pool)


def test_pool_embeddings_reused_only_while_weights_are_unchanged(tiny_bert, pfcc_root, tmp_path):
    """A 2-epoch fit validates twice (weights changed: the pool is encoded both times); the test right after
    (same weights as the last validation) reuses the pool, with the same metrics as a fresh encoding."""
    from functools import partial

    torch.manual_seed(0)
    enc = Encoder(tiny_bert, max_length=32)
    task = load_task("pfcc_s", pfcc_root, options={"train_pairs": 40, "dev_fraction": 0.25})
    dm = PairDataModule(task, load_tokenizer(tiny_bert), "random", max_length=32, batch_size=8,
                        eval_batch_size=16, chunk_tokens=256, cache_dir=str(tmp_path / "cache"))
    module = BSCModule(enc, BSCLoss(), task_type=task.type, positive_threshold=task.positive_threshold,
                       main_metric=task.main_metric, optimizer=partial(torch.optim.AdamW, lr=1e-3))
    rows: list[int] = []
    enc.register_forward_hook(lambda m, args, out: None if m.training else rows.append(out.shape[0]))
    kw = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
          "enable_model_summary": False, "use_distributed_sampler": False, "enable_checkpointing": False,
          "num_sanity_val_steps": 0}
    L.Trainer(max_epochs=2, **kw).fit(module, datamodule=dm)
    n_pool, n_dev = len(task.pool), len(np.unique(task.splits["dev"].a))
    n_test = len(np.unique(task.splits["test"].a))
    assert sum(rows) == 2 * (n_pool + n_dev)  # two validations, the pool encoded in each
    rows.clear()
    trainer = L.Trainer(**kw)
    trainer.test(module, datamodule=dm, verbose=False)
    assert sum(rows) == n_dev + n_test  # the pool of the last validation, reused
    cached = module.test_results
    module._pool_cache = None
    rows.clear()
    trainer.test(module, datamodule=dm, verbose=False)
    assert sum(rows) == n_pool + n_dev + n_test
    assert module.test_results == pytest.approx(cached, abs=1e-6)


def test_custom_pool_file(tmp_path):
    claims = _claims(40)
    rows = [["text_a", "text_b", "label", "qid"]]
    for i in range(30):
        rows.append([f"query {i} on {claims[i].split(':')[1]}", claims[i], "1", f"q{i}"])
    for split in ("train", "dev", "test"):
        with (tmp_path / f"{split}.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    (tmp_path / "pool.txt").write_text("\n".join(claims[1:]) + "\n")  # claims[0] is missing: added
    task = load_task("custom", tmp_path, type="ranking", options={
        "train_file": "train.csv", "dev_file": "dev.csv", "test_file": "test.csv", "pool_file": "pool.txt",
        "columns": {"text_a": "text_a", "text_b": "text_b", "label": "label", "qid": "qid"}})
    assert task.pool is not None and len(task.pool) == 40 and task.pool.texts[-1] == claims[0]
    with pytest.raises(DataError, match="ranking"):
        load_task("custom", tmp_path, type="classification", options={
            "train_file": "train.csv", "test_file": "test.csv", "pool_file": "pool.txt"})


# ------------------------------------------------------------------------------------------ DDP
@pytest.mark.parametrize("task", ["mrpc", pytest.param("pfcc_s", marks=pytest.mark.slow)])
def test_ddp_evaluation_equals_one_process(tiny_bert_no_dropout, data_root, pfcc_root, tmp_path, task):
    """trainer=ddp_sim (2 processes, each embeds half of the distinct texts, all-gathered) == trainer=cpu."""
    data = [f"task.data_dir={data_root / 'mrpc'}"] if task == "mrpc" else [
        f"task.data_dir={pfcc_root}", "task.options.train_pairs=40", "task.options.dev_fraction=0.25"]
    base = [f"encoder.name_or_path={tiny_bert_no_dropout}", "encoder.max_length=32", f"task={task}", *data,
            "train=false", "logger=none", "export=false", f"data.cache_dir={tmp_path / 'cache'}",
            "data.chunk_tokens=128", "data.eval_batch_size=8"]
    one = train(make_cfg(base + ["trainer=cpu"]), tmp_path / "one")
    two = train(make_cfg(base + ["trainer=ddp_sim"]), tmp_path / "two")
    saved = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert set(one) == set(saved) and len(one) >= 6
    assert saved == pytest.approx(one, rel=1e-5, abs=1e-6)
    assert two == pytest.approx(one, rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------------------------------ real data
@pytest.mark.slow
def test_pfcc_real_counts(shared_data):
    task = load_task("pfcc_s", shared_data)
    assert len(task.pool) == 10369  # 10,381 claim rows, 10,369 distinct texts (the paper's pool size)
    assert [len(task.splits[s]) for s in ("train", "dev", "test")] == [720, 80, 199]
    assert sum(len(t) for s, t in task.splits.items() if s != "test") == 800
    clef = load_task("pfcc_s", shared_data, options={"source": "clef2020"})
    assert [len(clef.splits[s]) for s in ("train", "dev", "test")] == [801, 198, 200]
    assert len(clef.pool) == 10369
    assert [len(np.unique(clef.splits[s].qid)) for s in ("train", "dev", "test")] == [800, 197, 199]


@pytest.mark.slow
def test_split_metrics_on_real_wikiqa(shared_data, encoder, tmp_path):
    task = load_task("wikiqa", shared_data)
    t = task.splits["test"]
    tokens = tokenize_texts(t.texts, load_tokenizer(encoder.name_or_path), 32, tmp_path)
    ids = split_text_ids(t)
    assert len(ids) < 1.2 * len(t)  # 2,351 pairs: 243 questions + the distinct sentences
    from bsc_lightning.evaluation import embed_texts

    e = embed_texts(encoder, tokens, ids)
    emb = torch.zeros((len(t.texts), e.shape[1]))
    emb[torch.as_tensor(ids)] = e
    new = split_metrics("ranking", t, emb)
    old = task_metrics("ranking", pairwise_scores(encoder, t, tokens), t.label, t.qid)
    assert new == pytest.approx(old, rel=1e-5, abs=1e-6)
