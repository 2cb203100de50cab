"""``no_duplicates``: a random order in which no text appears twice inside a global batch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from bsc_lightning.data.batching.base import Strategy, _rng
from bsc_lightning.data.table import PairTable


def _place_repeated(xs: list[int], ys: list[int], n_texts: int, remaining: list[int],
                    repair_budget: int) -> tuple[list[int], int]:
    """Greedy batch assignment of pairs with text ids (xs[k], ys[k]), in the given order.

    Each pair goes to the next open batch (round robin) holding neither id. Only batches holding one
    of them are skipped, and a text already in every batch skips the scan (pigeonhole), so the cost is
    near-linear. When the scan fails only because the clean batches are full (typical for the last
    pairs), one swap is tried: move a member of a clean full batch into an open batch, within
    ``repair_budget`` checks. What still fails is placed anyway and counted as a violation.
    ``remaining`` (free slots per batch) is updated in place; returns (batch of each pair, violations).
    Plain Python lists and sets on purpose: this loop is the hot path, numpy scalars would be slower.
    """
    n_batches = len(remaining)
    batch_of = [0] * len(xs)
    open_ = [j for j in range(n_batches) if remaining[j] > 0]
    used: list[set[int]] = [set() for _ in range(n_batches)]
    members: list[list[int]] = [[] for _ in range(n_batches)]
    dirty = [False] * n_batches                 # holds a violation: `used` no longer tells who owns an id
    placed = [0] * n_texts                      # text id -> number of batches holding it

    def put(k: int, j: int) -> None:
        u = used[j]
        for t in (xs[k], ys[k]):
            if t not in u:
                placed[t] += 1
                u.add(t)
        members[j].append(k)
        batch_of[k] = j
        remaining[j] -= 1

    def swap(k: int) -> bool:
        x, y, checks = xs[k], ys[k], 0
        for j in range(n_batches):
            u = used[j]
            if remaining[j] or dirty[j] or x in u or y in u:
                continue
            for m, p in enumerate(members[j]):
                for q, o in enumerate(open_):
                    checks += 1
                    if checks > repair_budget:
                        return False
                    if xs[p] not in used[o] and ys[p] not in used[o]:
                        for t in {xs[p], ys[p]}:        # p leaves j: its texts no longer there
                            placed[t] -= 1
                            u.discard(t)
                        members[j].pop(m)
                        remaining[j] += 1
                        put(p, o)
                        put(k, j)
                        if remaining[o] == 0:
                            del open_[q]
                        return True
        return False

    pos = violations = 0
    for k in range(len(xs)):
        x, y, size, q = xs[k], ys[k], len(open_), -1
        if placed[x] < n_batches and placed[y] < n_batches:
            for step in range(size):
                u = used[open_[(pos + step) % size]]
                if x not in u and y not in u:
                    q = (pos + step) % size
                    break
            if q < 0 and swap(k):
                pos = pos % len(open_) if open_ else 0
                continue
        if q < 0:
            q = pos % size
            violations += 1
            dirty[open_[q]] = True
        j = open_[q]
        put(k, j)
        # round robin: the next open batch is at q + 1, or at q when this one filled and left the list
        if remaining[j] == 0:
            del open_[q]
            pos = q
        else:
            pos = q + 1
        pos = pos % len(open_) if open_ else 0
    return batch_of, violations


@dataclass
class NoDuplicates(Strategy):
    """Random order in which no text id (either side; both sides share ids) appears twice in a batch.

    Pairs whose texts are all unique in the table can never conflict, so only pairs touching a repeated
    text are placed greedily (``_place_repeated``), most frequent texts first and round robin over the
    batches so that they spread evenly; unique pairs then fill the free slots at random and each batch
    is shuffled internally. When it is impossible (a text in more pairs than there are batches) the
    rest is placed anyway and counted in ``violations`` (also in ``info``).
    """

    name: ClassVar[str] = "no_duplicates"
    repair_budget: int = 100_000
    violations: int = field(default=0, init=False, compare=False)

    def validate(self) -> None:
        self._check_int("repair_budget", 0)

    def order(self, table: PairTable, *, epoch: int, seed: int, batch_size: int,
              embeddings: torch.Tensor | None = None) -> np.ndarray:
        n = len(table)
        rng = _rng(seed, epoch)
        n_batches = max(1, -(-n // batch_size))
        remaining = np.full(n_batches, batch_size, dtype=np.int64)
        remaining[-1] = n - batch_size * (n_batches - 1)
        counts = np.bincount(np.concatenate([table.a, table.b]), minlength=len(table.texts))
        repeated = (counts[table.a] > 1) | (counts[table.b] > 1)
        rep = np.flatnonzero(repeated)
        freq = np.maximum(counts[table.a[rep]], counts[table.b[rep]])
        rep = rep[np.lexsort((rng.random(len(rep)), -freq))]            # most constrained first

        batch_of = np.empty(n, dtype=np.int64)
        rem = remaining.tolist()
        placed, violations = _place_repeated(table.a[rep].tolist(), table.b[rep].tolist(), len(table.texts),
                                             rem, self.repair_budget)
        batch_of[rep] = placed
        free = rng.permutation(np.flatnonzero(~repeated))
        batch_of[free] = np.repeat(np.arange(n_batches), rem)
        self.violations = violations
        self.info = {"violations": float(violations), "repeated_pairs": float(len(rep))}
        return np.lexsort((rng.random(n), batch_of)).astype(np.int64)  # by batch, shuffled inside
