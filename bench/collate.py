"""Per-batch data cost of the training collate: the per-text Python path it replaced vs the vectorised one.

    python -m bench.collate [--pairs 256 1024 4096] [--data-dir ../shared/data] [--repeats 20]

Both paths pack the same 2B texts of a batch into the same length-aware chunks (checked); the old path
builds one array per text and decides chunk boundaries one text at a time, the new one gathers from the
flat token array (`TokenCache.pack`) with a chunk planner vectorised per chunk. Token lengths come from
WikiQA's train split when --data-dir holds it, else from bench.synthetic sentences tokenised by length
(whitespace words + 2 specials), which is all the collate depends on. Prints ms per batch and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch

from bench.common import markdown_table
from bsc_lightning.data.chunks import Chunks
from bsc_lightning.data.tokens import TokenCache


def reference_plan_chunks(lengths: np.ndarray, max_tokens: int | None = None, max_rows: int | None = None,
                          length_aware: bool = True, max_waste: float = 0.25,
                          min_chunk_tokens: int | None = None) -> list[np.ndarray]:
    """The per-sequence rule `plan_chunks` implements (the code before vectorisation): the oracle."""
    n = len(lengths)
    order = np.argsort(-lengths, kind="stable") if length_aware else np.arange(n)
    sorted_len = lengths[order].tolist()
    if min_chunk_tokens is None:
        min_chunk_tokens = min(2048, int(sum(sorted_len)) // 4)
    chunks, start = [], 0
    while start < n:
        end, longest, real = start + 1, sorted_len[start], sorted_len[start]
        while end < n:
            nxt = sorted_len[end]
            width, rows = max(longest, nxt), end + 1 - start
            if (max_rows is not None and rows > max_rows) or (max_tokens is not None and rows * width > max_tokens):
                break
            if length_aware and real >= min_chunk_tokens and nxt < (1.0 - max_waste) * longest:
                break
            longest, real = width, real + nxt
            end += 1
        chunks.append(order[start:end])
        start = end
    return chunks


def reference_pack(seqs: Sequence[np.ndarray], pad_id: int, max_tokens: int | None = None,
                   max_rows: int | None = None, length_aware: bool = True) -> Chunks:
    """The old collate path: per-text arrays, the per-sequence planner, one concatenate per chunk."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    plan = reference_plan_chunks(lengths, max_tokens, max_rows, length_aware)
    ids, masks = [], []
    for pos in plan:
        lens = lengths[pos]
        mask = np.arange(int(lens.max()))[None, :] < lens[:, None]
        x = np.full(mask.shape, pad_id, dtype=np.int64)
        x[mask] = np.concatenate([seqs[p] for p in pos])
        ids.append(torch.from_numpy(x))
        masks.append(torch.from_numpy(mask.astype(np.int64)))
    perm = torch.from_numpy(np.concatenate(plan))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))
    return Chunks(ids, masks, inverse)


def token_cache(data_dir: str | None, n: int = 20000, seed: int = 0) -> tuple[TokenCache, str]:
    rng = np.random.default_rng(seed)
    lengths = None
    if data_dir:
        try:
            from bsc_lightning.data.tasks import load_task

            t = load_task("wikiqa", f"{data_dir}/wikiqa").splits["train"]
            lengths = np.array([min(128, len(s.split()) + 2) for s in t.texts], dtype=np.int64)
            source = "WikiQA train (whitespace lengths, max 128)"
        except Exception as e:  # noqa: BLE001 - fall back to synthetic lengths, say so
            print(f"no WikiQA at {data_dir} ({type(e).__name__}); synthetic lengths")
    if lengths is None:
        from bench.synthetic import synthetic_sentences

        lengths = np.array([len(s.split()) + 2 for s in synthetic_sentences(n, seed=seed)], dtype=np.int64)
        source = "bench.synthetic sentences"
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(1000, 30000, size=int(offsets[-1])).astype(np.int32)
    return TokenCache(ids, offsets, 0), source


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--chunk-tokens", type=int, default=16384)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tokens, source = token_cache(args.data_dir)
    rng = np.random.default_rng(0)
    rows = []
    for b in args.pairs:
        text_ids = rng.integers(0, len(tokens), size=2 * b)
        old = reference_pack(tokens.seqs(text_ids), tokens.pad_id, args.chunk_tokens)
        new = tokens.pack(text_ids, args.chunk_tokens)
        same = len(old.input_ids) == len(new.input_ids) and bool((old.inverse == new.inverse).all()) and all(
            torch.equal(x, y) for x, y in zip(old.input_ids, new.input_ids))
        t_old = timed(lambda ids=text_ids: reference_pack(tokens.seqs(ids), tokens.pad_id, args.chunk_tokens),
                      args.repeats)
        t_new = timed(lambda ids=text_ids: tokens.pack(ids, args.chunk_tokens), args.repeats)
        rows.append({"pairs": b, "old_ms": t_old, "new_ms": t_new, "speedup": t_old / t_new, "same": same})
    print(f"token lengths: {source}; chunk_tokens={args.chunk_tokens}; median of {args.repeats}, 1 thread")
    print("\n".join(markdown_table(rows, [("pairs", "pairs", ""), ("per-text path (ms)", "old_ms", ".2f"),
                                           ("vectorised (ms)", "new_ms", ".2f"), ("ratio", "speedup", ".2f"),
                                           ("same chunks", "same", "")])))
    return rows


if __name__ == "__main__":
    main()
