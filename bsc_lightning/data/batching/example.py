"""Algorithm 1 (``example``): groups of nearest neighbours by the current model's embeddings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from bsc_lightning.data.batching.base import Strategy, _check_embeddings, _group_info, _rng
from bsc_lightning.data.neighbours import topk_cosine
from bsc_lightning.data.table import PairTable


def _next_anchors(perm: np.ndarray, ptr: int, used: np.ndarray, want: int) -> tuple[np.ndarray, int]:
    """The next ``want`` not-yet-used anchors of ``perm`` from position ``ptr``, and the new ``ptr``."""
    parts, got = [], 0
    while ptr < len(perm) and got < want:
        window = perm[ptr:ptr + want]
        free_pos = np.flatnonzero(used[window] == 0)
        take = free_pos[:want - got]
        parts.append(window[take])
        got += len(take)
        ptr += int(take[-1]) + 1 if got == want else len(window)
    return (np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)), ptr


@dataclass
class ExampleShuffle(Strategy):
    """Algorithm 1 (example-based shuffling) of Chernyavskiy et al. (2022).

    Shuffle; for each not-yet-used example e take the ``n_candidates`` nearest first-side TEXTS by cosine
    of the first-side embeddings, then fill e's group up to s = ``group_size`` with not-yet-used pairs of
    those texts, best first; e and them form a group. Groups are concatenated and, with ``reverse``, the
    whole list is reversed so that the small leftover groups formed at the end (easy batches) come first.

    Why texts and not rows: on ranking data one question comes with ~10 answers, so its copies tie at
    cosine 1 and a top-n over rows spends the n slots on a few questions' copies; with
    ``keep_identical_apart`` most of them are then rejected and groups stay nearly empty (WikiQA train:
    mean group 2.8 of 8 before this change). Searching distinct texts gives n distinct candidates:
    - ``keep_identical_apart``: one pair per candidate text, never e's own text, so a group holds
      distinct first sides and the pairs of one question go to different groups;
    - otherwise: all unused pairs of a candidate text before the next one (e's own copies first, as they
      are at cosine 1), which is Algorithm 1 over rows with copies ordered by the epoch's shuffle.
    With all first sides distinct, texts are rows and this is exactly Algorithm 1 over rows.
    A text's embedding is that of its first row (the data module encodes each distinct text once).

    The greedy loop is sequential, but exact top-n lists are computed ahead for a chunk of upcoming
    anchors at a time on the embeddings' device: at most ``chunk_size`` and at most a 1/4s share of
    the still unused examples, so that few anchors are absorbed by a group before their turn (those are
    skipped; about N / s anchors are searched in all). The similarity matrix is tiled, never O(N²).
    The order is a function of (seed, epoch, embeddings) only.
    """

    name: ClassVar[str] = "example"
    needs_embeddings: ClassVar[bool] = True
    group_size: int = 8
    n_candidates: int = 64
    keep_identical_apart: bool = True
    reverse: bool = True
    chunk_size: int = 4096

    def validate(self) -> None:
        self._check_int("group_size", 1)
        self._check_int("n_candidates", 0)
        if self.n_candidates < self.group_size - 1:
            # fewer candidates than free slots: no group could ever be full
            raise self._bad("n_candidates", f"must be >= group_size - 1 = {self.group_size - 1}")
        self._check_bool("keep_identical_apart")
        self._check_bool("reverse")
        self._check_int("chunk_size", 1)

    def order(self, table: PairTable, *, epoch: int, seed: int, batch_size: int,
              embeddings: torch.Tensor | None = None) -> np.ndarray:
        return self.grouped_order(table, epoch=epoch, seed=seed, embeddings=embeddings)[0]

    def grouped_order(self, table: PairTable, *, epoch: int, seed: int,
                      embeddings: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """(order (N,), group sizes in that order); the order is the concatenation of the groups."""
        emb = _check_embeddings(table, embeddings, "ExampleShuffle")     # (N, d)
        n, s, apart = len(table), self.group_size, self.keep_identical_apart
        perm = _rng(seed, epoch).permutation(n)                          # (N,)
        _, first_row, text_of = np.unique(table.a, return_index=True, return_inverse=True)
        text_of = text_of.reshape(-1)                                    # (N,) text index in [0, T)
        n_text = len(first_row)
        text_emb = emb[torch.from_numpy(first_row).to(emb.device)]       # (T, d)
        # Each text's pool: its rows in epoch order, pool[nxt[t]:end[t]] still unused. Anchors come in
        # epoch order and members are taken from the front of a pool, so the used rows of a text are
        # always a prefix of its pool and an unused anchor is the front of its own pool.
        pool = perm[np.argsort(text_of[perm], kind="stable")].tolist()   # (N,) grouped by text
        bounds = np.concatenate([[0], np.cumsum(np.bincount(text_of, minlength=n_text))])  # (T+1,)
        nxt, end = bounds[:-1].tolist(), bounds[1:].tolist()
        # bytearray: fast scalar access in the Python loop, zero-copy numpy view for the chunk filter
        used_b = bytearray(n)
        used = np.frombuffer(used_b, dtype=np.uint8)
        text = text_of.tolist()
        # +1: the anchor's own text is (normally) its own first neighbour
        k = min(self.n_candidates + 1, n_text)
        out: list[int] = []
        sizes: list[int] = []
        ptr, searched = 0, 0
        while True:
            # a chunk's groups consume up to chunk × s examples; keeping that well below the number still
            # unused keeps most anchors unused when their turn comes (the others were searched in vain)
            chunk = min(self.chunk_size, max(256, (n - len(out)) // (4 * s)))
            anchors, ptr = _next_anchors(perm, ptr, used, chunk)
            if len(anchors) == 0:
                break
            searched += len(anchors)
            # anchors of one text share one search
            q_text, q_inv = np.unique(text_of[anchors], return_inverse=True)
            q = text_emb[torch.from_numpy(q_text).to(emb.device)]                 # (m', d)
            cand = topk_cosine(q, text_emb, k).cpu().numpy()[q_inv.reshape(-1)]   # (m, k) text indices
            for e, row in zip(anchors.tolist(), cand.tolist()):
                if used_b[e]:
                    continue                       # absorbed by an earlier group of this chunk
                t = text[e]
                assert pool[nxt[t]] == e           # the prefix invariant above
                nxt[t] += 1
                used_b[e] = 1
                group = [e]
                for c in row:
                    if len(group) >= s:            # checked first: group_size=1 keeps e alone
                        break
                    if apart and c == t:
                        continue
                    # one pair of c when keeping identical texts apart, else all its unused pairs
                    stop = min(end[c], nxt[c] + (1 if apart else s - len(group)))
                    for j in pool[nxt[c]:stop]:
                        used_b[j] = 1
                        group.append(j)
                    nxt[c] = stop
                out.extend(group)
                sizes.append(len(group))
        order, sz = np.asarray(out, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
        if self.reverse:
            order, sz = order[::-1].copy(), sz[::-1].copy()
        self.info = _group_info(sz, s) | {"searched_rows": float(searched), "distinct_texts": float(n_text)}
        return order, sz
