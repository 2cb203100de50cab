"""Evaluation on unique texts: embed each split's distinct texts once, score pairs by lookup.

A split's pairs repeat their texts (WikiQA: a question per candidate sentence; STS-B / MRPC: a sentence
in several pairs). Encoding each pair's two sides batch by batch (the old path, kept as
:func:`pairwise_scores` for reference and benchmarks) encodes a question once per candidate. Here:

1. :func:`split_text_ids`: the distinct text ids (``PairTable.a`` / ``b`` index ``PairTable.texts``) the
   split needs; :class:`EvalTexts` (the eval dataset of the data module) cuts one rank's share
   (``ids[rank::world]``) into length-sorted, length-aware chunks; with a candidate pool the dataset of
   the first eval loader also carries the pool's texts (``source`` = :data:`POOL`).
2. The module embeds each chunk in ``validation_step`` / ``test_step`` (Lightning's loop: eval mode, no
   grad, precision context); :func:`gather_rows` all-gathers the rank shards under DDP (like the data
   module's ``embed_first_sides``) into one (n_texts, d) matrix on every rank.
3. :func:`pair_scores`: cosine of ``emb[a]`` and ``emb[b]``; the task's metrics as before (same values).
   With a pool: :func:`pool_queries` + :func:`pool_retrieval` rank every query against the whole pool in
   query chunks (memory: one ``chunk × pool`` block at a time), corpus-level MAP / MRR / P@1 / nDCG@1 /
   HasPositive@k (``hp@k``). The module keeps the last pool embeddings keyed by
   :func:`weights_fingerprint`: an evaluation with unchanged weights (test after a last-epoch validation,
   zero-shot validate + test) skips re-encoding the pool.

Standalone (no Trainer): :func:`embed_texts` + :func:`evaluate_split` (used by ``bench.evaluation``).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from bsc_lightning.data.table import PairTable
from bsc_lightning.metrics import task_metrics

log = logging.getLogger(__name__)

SPLIT, POOL = 0, 1  # the ``source`` of an eval batch: the split's own texts, or the candidate pool's
RANK_KS = (1, 5, 50)


# ------------------------------------------------------------------------------------ which texts
def split_text_ids(table: PairTable, pooled: bool = False) -> np.ndarray:
    """The distinct text ids a split's evaluation embeds (sorted): both sides, or only the queries (first
    sides) when the task ranks against a candidate pool (the second sides are pool texts)."""
    return np.unique(table.a) if pooled else np.unique(np.concatenate([table.a, table.b]))


def length_batches(lengths: np.ndarray, ids: np.ndarray, max_tokens: int | None,
                   max_rows: int | None) -> list[np.ndarray]:
    """``ids`` sorted by token length (longest first) and cut so that each batch pads to at most
    ``max_tokens`` (rows × longest), holds at most ``max_rows`` texts and spans similar lengths
    (``chunks.plan_eval_chunks``)."""
    from bsc_lightning.data.chunks import plan_eval_chunks

    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return []
    return [ids[p] for p in plan_eval_chunks(lengths[ids], max_tokens, max_rows)]


class EvalTexts(Dataset):
    """One rank's share of a split's distinct texts as ready encoder batches (a DataLoader with
    ``batch_size=None`` yields them as they are).

    Each item: ``{"chunks": Chunks, "text_ids": (n,) int64, "source": SPLIT | POOL}``; the module embeds
    ``chunks`` and files the rows under ``text_ids`` of the split's ``table.texts`` (or of the pool).
    ``table``, ``pool`` and ``with_pool`` stay readable on the dataset: the module's epoch end reads them
    from ``trainer.val_dataloaders`` / ``test_dataloaders``. Rank ``r`` of ``world`` takes ``ids[r::world]``.
    """

    def __init__(self, split: str, table: PairTable, tokens: Any, *, pool: Any = None, pool_tokens: Any = None,
                 with_pool: bool = False, rank: int = 0, world: int = 1, max_tokens: int | None = 16384,
                 max_rows: int | None = 512) -> None:
        self.split, self.table, self.pool, self.with_pool = split, table, pool, bool(with_pool and pool)
        self.tokens, self.pool_tokens = tokens, pool_tokens
        self.max_tokens, self.max_rows = max_tokens, max_rows
        self.rank, self.world = rank, world
        self.text_ids = split_text_ids(table, pool is not None)
        lengths = tokens.lengths()
        items = [(SPLIT, b) for b in length_batches(lengths, self.text_ids[rank::world], max_tokens, max_rows)]
        if self.with_pool:
            pool_ids = np.arange(len(pool), dtype=np.int64)[rank::world]
            items += [(POOL, b) for b in length_batches(pool_tokens.lengths(), pool_ids, max_tokens, max_rows)]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        source, ids = self.items[i]
        tokens = self.tokens if source == SPLIT else self.pool_tokens
        # one chunk, as planned in __init__ (already within the budget and length-sorted)
        return {"chunks": tokens.pack(ids, None, None, False), "text_ids": torch.from_numpy(ids),
                "source": source}


def identity(x: Any) -> Any:
    """The eval loaders' collate function (items are batches already); module-level: picklable."""
    return x


# ------------------------------------------------------------------------------------ embeddings
def gather_rows(parts: Sequence[tuple[Tensor, Tensor]], n: int, dim: int, device: torch.device | str,
                world: int = 1, all_gather: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """The (n, dim) float32 matrix of embedded rows and a (n,) bool mask of the rows present.

    ``parts``: this rank's ``(text_ids, embeddings)`` pieces. Under DDP (``world > 1``) every rank must call
    this (with ``all_gather`` = ``LightningModule.all_gather``): shards are padded to the longest, gathered
    with their ids, and every rank ends with the same matrix.
    """
    ids = torch.cat([p[0].to(device) for p in parts]) if parts else torch.empty(0, dtype=torch.long, device=device)
    emb = (torch.cat([p[1].to(device).float() for p in parts]) if parts
           else torch.empty((0, dim), dtype=torch.float32, device=device))
    if world > 1:
        assert all_gather is not None, "world > 1 needs all_gather"
        size = int(all_gather(torch.tensor([len(ids)], device=device)).max())
        pad_ids = torch.full((size,), -1, dtype=torch.long, device=device)
        pad_emb = torch.zeros((size, dim), dtype=torch.float32, device=device)
        pad_ids[: len(ids)], pad_emb[: len(ids)] = ids, emb
        ids, emb = all_gather(pad_ids).reshape(-1), all_gather(pad_emb).reshape(-1, dim)
    keep = ids >= 0
    ids, emb = ids[keep], emb[keep]
    full = torch.zeros((n, dim), dtype=torch.float32, device=device)
    present = torch.zeros(n, dtype=torch.bool, device=device)
    full[ids], present[ids] = emb, True
    return full, present


@torch.no_grad()
def embed_texts(encoder: Any, tokens: Any, ids: Sequence[int] | np.ndarray, max_tokens: int = 16384,
                device: torch.device | str | None = None) -> Tensor:
    """(len(ids), d) float32 embeddings of texts ``ids`` of a token cache, length-aware chunks
    (``Encoder.encode_ids``: eval mode, no grad)."""
    return encoder.encode_ids(tokens.seqs(np.asarray(ids, dtype=np.int64)), tokens.pad_id,
                              max_tokens=max_tokens, device=device)


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A digest of a module's parameters and buffers (exact bytes): equal digests, equal embeddings. The
    module keys its cached pool embeddings by it, so a test after the last validation with the same weights
    (the best checkpoint was the last epoch, or a zero-shot run) reuses the pool instead of re-encoding it."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------ pair scores
def pair_scores(emb: Tensor, a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> Tensor:
    """(N,) cosine of rows ``a`` and ``b`` of ``emb`` (float32, as the pairwise path computes it)."""
    a = torch.as_tensor(np.asarray(a), device=emb.device)
    b = torch.as_tensor(np.asarray(b), device=emb.device)
    return F.cosine_similarity(emb[a].float(), emb[b].float(), dim=-1)


def split_scores(table: PairTable, emb: Tensor, present: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(scores, labels, qids)`` of a split's pairs from the embeddings of its texts (``emb`` rows =
    ``table.texts`` ids), each (N,) on CPU. Pairs with a text that was not embedded (``present`` False: e.g.
    ``limit_val_batches``) are left out."""
    a, b, y, q = table.a, table.b, table.label, table.qid
    if present is not None:
        ok = present.cpu().numpy()
        keep = ok[a] & ok[b]
        if not keep.all():
            log.warning("%s: %d of %d pairs have a text that was not embedded; left out of the metrics",
                        table.name or "split", int((~keep).sum()), len(keep))
            a, b, y, q = a[keep], b[keep], y[keep], q[keep]
    return pair_scores(emb, a, b).cpu(), torch.from_numpy(y), torch.from_numpy(q)


def split_metrics(task_type: str, table: PairTable, emb: Tensor, present: Tensor | None = None, *,
                  positive_threshold: float = 0.5, threshold: float | None = None) -> dict[str, float]:
    """The task's metrics of a split from the embeddings of its texts (:func:`split_scores`)."""
    s, y, q = split_scores(table, emb, present)
    return task_metrics(task_type, s, y, q, positive_threshold=positive_threshold, threshold=threshold)


# ------------------------------------------------------------------------------------ pool retrieval
def pool_queries(table: PairTable, pool: Any, positive_threshold: float = 0.5
                 ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The split's queries for corpus-level ranking: (Q,) text ids (the first side of each ``qid`` group's
    first pair), each query's positive pool ids (second sides of its pairs with label > threshold, found
    in the pool) and their gains (the pair label; the highest when a candidate repeats). Queries without
    a positive in the pool are left out (as the pairwise ranking metrics do)."""
    pid = pool.ids_of(table.texts)[table.b]
    ok = (table.label > positive_threshold) & (pid >= 0)
    order = np.argsort(table.qid, kind="stable")
    qs, starts = np.unique(table.qid[order], return_index=True)
    bounds = list(starts) + [len(order)]
    text_ids, positives, gains = [], [], []
    for k in range(len(qs)):
        rows = order[bounds[k]:bounds[k + 1]]
        good = rows[ok[rows]]
        if len(good) == 0:
            continue
        best: dict[int, float] = {}
        for p, g in zip(pid[good].tolist(), table.label[good].tolist()):
            best[p] = max(g, best.get(p, g))
        text_ids.append(int(table.a[rows[0]]))
        positives.append(np.fromiter(best, dtype=np.int64, count=len(best)))
        gains.append(np.fromiter(best.values(), dtype=np.float64, count=len(best)))
    return np.asarray(text_ids, dtype=np.int64), positives, gains


@torch.no_grad()
def pool_ranks(query_emb: Tensor, pool_emb: Tensor, positives: Sequence[np.ndarray],
               chunk_elems: int = 1 << 22, pool_present: Tensor | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Each query's positives' 1-based ranks among ALL pool candidates by cosine, and each query's top-1
    pool id. Ties are broken by pool id (deterministic). Queries go in chunks of ``chunk_elems // P``
    rows, so at most one (chunk, P) score block exists at a time, never the whole (Q, P) matrix.
    Candidates with ``pool_present`` False (not embedded) rank last."""
    q = F.normalize(query_emb.float(), dim=-1)
    p = F.normalize(pool_emb.float(), dim=-1)
    n_pool = p.shape[0]
    step = max(1, chunk_elems // max(1, n_pool))
    col = torch.arange(n_pool, device=p.device)
    ranks: list[np.ndarray] = []
    top1 = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), step):
        s = q[start:start + step] @ p.T                                   # (c, P)
        if pool_present is not None:
            s = s.masked_fill(~pool_present.to(s.device)[None, :], float("-inf"))
        top1[start:start + len(s)] = torch.argmax(s, dim=1).cpu().numpy()
        pos = [torch.as_tensor(positives[start + i], device=p.device) for i in range(len(s))]
        rows = torch.cat([torch.full((len(x),), i, device=p.device) for i, x in enumerate(pos)])
        cols = torch.cat(pos)
        sr = s[rows]                                                      # (n_pos, P)
        sp = sr.gather(1, cols[:, None])                                  # (n_pos, 1)
        r = ((sr > sp) | ((sr == sp) & (col[None, :] < cols[:, None]))).sum(1) + 1
        r = r.cpu().numpy()
        split_at = np.cumsum([len(x) for x in pos])[:-1]
        ranks.extend(np.split(r, split_at))
    return ranks, top1


def pool_metrics(ranks: Sequence[np.ndarray], positives: Sequence[np.ndarray], gains: Sequence[np.ndarray],
                 top1: np.ndarray, ks: Sequence[int] = RANK_KS) -> dict[str, float]:
    """Corpus-level ranking metrics averaged over queries: MAP, MRR, P@1, nDCG@1 (graded gain of the top
    candidate / the query's best gain), ``hp@k`` (HasPositive@k: a positive within the top k)."""
    names = ["map", "mrr", "p@1", "ndcg@1", *(f"hp@{k}" for k in ks)]
    if len(ranks) == 0:
        return dict.fromkeys(names, 0.0)
    ap, rr, ndcg, first = [], [], [], []
    for r, pos, g, t in zip(ranks, positives, gains, top1):
        r = np.sort(np.asarray(r, dtype=np.float64))
        ap.append(float(np.mean(np.arange(1, len(r) + 1) / r)))
        rr.append(1.0 / r[0])
        first.append(r[0])
        hit = np.flatnonzero(pos == t)
        ndcg.append(float(g[hit[0]] / g.max()) if len(hit) and g.max() > 0 else 0.0)
    first_arr = np.asarray(first)
    out = {"map": float(np.mean(ap)), "mrr": float(np.mean(rr)), "p@1": float(np.mean(first_arr <= 1)),
           "ndcg@1": float(np.mean(ndcg))}
    out.update({f"hp@{k}": float(np.mean(first_arr <= k)) for k in ks})
    return out


def pool_retrieval(query_emb: Tensor, pool_emb: Tensor, positives: Sequence[np.ndarray],
                   gains: Sequence[np.ndarray] | None = None, ks: Sequence[int] = RANK_KS,
                   chunk_elems: int = 1 << 22, pool_present: Tensor | None = None) -> dict[str, float]:
    """Rank every query (rows of ``query_emb``) against the whole pool by cosine, in query chunks;
    :func:`pool_metrics` of the positives' ranks (``gains`` default: 1 for every positive)."""
    gains = gains if gains is not None else [np.ones(len(p)) for p in positives]
    ranks, top1 = pool_ranks(query_emb, pool_emb, positives, chunk_elems, pool_present)
    return pool_metrics(ranks, positives, gains, top1, ks)


def pool_split_metrics(table: PairTable, pool: Any, emb: Tensor, present: Tensor | None, pool_emb: Tensor,
                       pool_present: Tensor | None = None, positive_threshold: float = 0.5,
                       chunk_elems: int = 1 << 22) -> dict[str, float]:
    """Corpus-level metrics of a split: its queries (rows of ``emb`` by text id) against the pool."""
    qids, positives, gains = pool_queries(table, pool, positive_threshold)
    if present is not None:
        ok = present.cpu().numpy()[qids]
        if not ok.all():
            log.warning("%s: %d of %d queries were not embedded; left out", table.name or "split",
                        int((~ok).sum()), len(ok))
            qids = qids[ok]
            positives = [p for p, k in zip(positives, ok) if k]
            gains = [g for g, k in zip(gains, ok) if k]
    if pool_present is not None and bool(pool_present.all()):
        pool_present = None
    q = emb[torch.as_tensor(qids, device=emb.device)]
    return pool_retrieval(q, pool_emb, positives, gains, chunk_elems=chunk_elems, pool_present=pool_present)


# ------------------------------------------------------------------------------------ standalone paths
@torch.no_grad()
def pairwise_scores(encoder: Any, table: PairTable, tokens: Any, batch_size: int = 256,
                    chunk_tokens: int | None = 16384, device: torch.device | str | None = None) -> Tensor:
    """The OLD path, for reference and benchmarks: batches of pairs, both sides (2B texts) packed into
    length-aware chunks and encoded every batch (``PairCollator``), cosine per pair. (N,) float32 on CPU."""
    from bsc_lightning.data.datamodule import PairCollator  # the data module imports this module

    was = encoder.training
    encoder.eval()
    device = device or next(encoder.parameters()).device
    collate = PairCollator(table, tokens, chunk_tokens)
    out = []
    for start in range(0, len(table), batch_size):
        batch = collate(list(range(start, min(len(table), start + batch_size))))
        emb = encoder(batch["chunks"].to(device))
        n = batch["labels"].shape[0]
        out.append(F.cosine_similarity(emb[:n].float(), emb[n:].float(), dim=-1).cpu())
    encoder.train(was)
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def evaluate_split(encoder: Any, table: PairTable, tokens: Any, task_type: str, *, positive_threshold: float = 0.5,
                   threshold: float | None = None, max_tokens: int = 16384, pool: Any = None,
                   pool_tokens: Any = None, pool_emb: Tensor | None = None,
                   device: torch.device | str | None = None) -> dict[str, float]:
    """The NEW path without a Trainer: embed the split's distinct texts once, score by lookup, metrics.

    With a ``pool`` (and its ``pool_tokens``, or ``pool_emb`` already embedded): corpus-level ranking.
    """
    ids = split_text_ids(table, pool is not None)
    e = embed_texts(encoder, tokens, ids, max_tokens, device)
    emb = torch.zeros((len(table.texts), e.shape[1]), dtype=torch.float32, device=e.device)
    present = torch.zeros(len(table.texts), dtype=torch.bool, device=e.device)
    emb[torch.as_tensor(ids, device=e.device)] = e
    present[torch.as_tensor(ids, device=e.device)] = True
    if pool is None:
        return split_metrics(task_type, table, emb, present, positive_threshold=positive_threshold,
                             threshold=threshold)
    if pool_emb is None:
        pool_emb = embed_texts(encoder, pool_tokens, np.arange(len(pool)), max_tokens, device)
    return pool_split_metrics(table, pool, emb, present, pool_emb, None, positive_threshold)
