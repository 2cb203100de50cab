"""Batch construction ("shuffling"): which pairs share a batch, and so which negatives BSC sees.

A strategy returns the ORDER of the training pairs for one epoch; the data module cuts that order into
consecutive global batches (``global_batches``) and hands each rank its slice (``rank_slice``).
Strategies see the ``PairTable`` (text ids, never tokens) and, when ``needs_embeddings``, the
L2-normalised first-side embeddings computed by the current model at the start of the epoch.

Strategies (paper, "Batch construction"):
- ``none``: file order.            - ``random``: a new permutation each epoch.
- ``example``: Algorithm 1, groups of s nearest neighbours by the current model, list reversed.
- ``words``: Algorithm 2, groups of k pairs sharing a random t-word shingle of their first side.
- ``clusters``: Algorithm 2 with the shingle replaced by a k-means cluster id.
- ``no_duplicates``: random, but no text id twice inside one global batch.

Every order is a deterministic function of (table, seed, epoch[, embeddings]): the only state kept
between calls is a cache of table-derived data, so resuming at an epoch boundary reproduces the run.
"""
from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from bsc_lightning.data.neighbours import kmeans, topk_cosine
from bsc_lightning.data.table import PairTable


def _rng(seed: int, epoch: int) -> np.random.Generator:
    # one independent stream per (seed, epoch): no state carried between epochs
    return np.random.default_rng([seed, epoch])


def _check_embeddings(table: PairTable, embeddings: torch.Tensor | None, who: str) -> torch.Tensor:
    if embeddings is None:
        raise ValueError(f"{who} needs first-side embeddings (needs_embeddings=True)")
    if embeddings.ndim != 2 or embeddings.shape[0] != len(table):
        raise ValueError(f"{who}: embeddings {tuple(embeddings.shape)} do not match {len(table)} pairs")
    # half-precision matmuls are slow (or missing) on CPU; on a GPU keep the caller's dtype
    return embeddings.float() if embeddings.device.type == "cpu" else embeddings


@dataclass
class Strategy:
    """Base class. ``order`` returns a permutation (int64) of ``range(len(table))``.

    ``batch_size`` is the GLOBAL batch size (per-device batch × world size). After each call ``info``
    holds a few numbers worth logging (group counts, violations, ...).
    """

    name: ClassVar[str] = ""
    needs_embeddings: ClassVar[bool] = False
    info: dict[str, float] = field(default_factory=dict, init=False, repr=False, compare=False)

    def order(self, table: PairTable, *, epoch: int, seed: int, batch_size: int,
              embeddings: torch.Tensor | None = None) -> np.ndarray:
        raise NotImplementedError


@dataclass
class NoShuffle(Strategy):
    """The file order (CQA data is grouped by question, so this already clusters related pairs)."""

    name: ClassVar[str] = "none"

    def order(self, table: PairTable, *, epoch: int, seed: int, batch_size: int,
              embeddings: torch.Tensor | None = None) -> np.ndarray:
        return np.arange(len(table), dtype=np.int64)


@dataclass
class RandomShuffle(Strategy):
    """A fresh seeded permutation every epoch."""

    name: ClassVar[str] = "random"

    def order(self, table: PairTable, *, epoch: int, seed: int, batch_size: int,
              embeddings: torch.Tensor | None = None) -> np.ndarray:
        return _rng(seed, epoch).permutation(len(table)).astype(np.int64)


# ---------------------------------------------------------------------------------------------------
# Algorithm 1: example-based shuffling
# ---------------------------------------------------------------------------------------------------

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

    Shuffle; for each not-yet-used example e take its ``n_candidates`` nearest neighbours by cosine of
    the first-side embeddings, then the first s − 1 of them that are not yet used (and, with
    ``keep_identical_apart``, whose first-side text id differs from e's and from every member chosen so
    far); e and them form a group. Groups are concatenated and, with ``reverse``, the whole list is
    reversed so that the small leftover groups formed at the end (easy batches) come first.

    The greedy loop is sequential, but exact top-n lists are computed ahead for a chunk of upcoming
    anchors at a time on the embeddings' device: at most ``chunk_size`` and at most a 1/4s share of
    the still unused examples, so that few anchors are absorbed by a group before their turn (those are
    skipped; about N / s rows are searched in all). The similarity matrix is tiled, never O(N²).
    """

    name: ClassVar[str] = "example"
    needs_embeddings: ClassVar[bool] = True
    group_size: int = 8
    n_candidates: int = 64
    keep_identical_apart: bool = True
    reverse: bool = True
    chunk_size: int = 4096

    def order(self, table: PairTable, *, epoch: int, seed: int, batch_size: int,
              embeddings: torch.Tensor | None = None) -> np.ndarray:
        return self.grouped_order(table, epoch=epoch, seed=seed, embeddings=embeddings)[0]

    def grouped_order(self, table: PairTable, *, epoch: int, seed: int,
                      embeddings: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """(order (N,), group sizes in that order); the order is the concatenation of the groups."""
        emb = _check_embeddings(table, embeddings, "ExampleShuffle")     # (N, d)
        n, s = len(table), self.group_size
        perm = _rng(seed, epoch).permutation(n)
        # bytearray: fast scalar access in the Python loop, zero-copy numpy view for the chunk filter
        used_b = bytearray(n)
        used = np.frombuffer(used_b, dtype=np.uint8)
        text = table.a.tolist()
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
            q = emb[torch.from_numpy(anchors).to(emb.device)]                        # (m, d)
            # +1: the anchor itself is (normally) its own first neighbour and is already used
            cand = topk_cosine(q, emb, self.n_candidates + 1).cpu().tolist()       # (m, n+1)
            for e, row in zip(anchors.tolist(), cand):
                if used_b[e]:
                    continue                       # absorbed by an earlier group of this chunk
                used_b[e] = 1
                group, seen = [e], {text[e]}
                for j in row:
                    if used_b[j]:
                        continue
                    if self.keep_identical_apart:
                        if text[j] in seen:
                            continue
                        seen.add(text[j])
                    used_b[j] = 1
                    group.append(j)
                    if len(group) == s:
                        break
                out.extend(group)
                sizes.append(len(group))
        order, sz = np.asarray(out, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
        if self.reverse:
            order, sz = order[::-1].copy(), sz[::-1].copy()
        self.info = {"groups": float(len(sz)), "mean_group_size": float(sz.mean()) if len(sz) else 0.0,
                     "full_groups": float((sz == s).mean()) if len(sz) else 0.0,
                     "searched_rows": float(searched)}
        return order, sz


# ---------------------------------------------------------------------------------------------------
# Algorithm 2: key-based grouping (words / clusters)
# ---------------------------------------------------------------------------------------------------

def group_by_keys(keys: np.ndarray, group_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The grouping step of Algorithm 2: (order (N,), group sizes in that order).

    Sort by key (random order among equal keys); walk the sorted list starting a new group when the key
    changes or the group reaches ``group_size``; put the groups in random order. Two sorts in all.
    ``keys``: (N,) or (N, m) integer array, rows compared as a whole.
    """
    keys = keys.reshape(len(keys), -1)                                   # (N, m)
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    # sort 1: by key, ties broken randomly (np.lexsort: last key is the primary one)
    srt = np.lexsort((rng.random(n),) + tuple(keys[:, j] for j in reversed(range(keys.shape[1]))))
    ks = keys[srt]
    idx = np.arange(n)
    change = np.ones(n, dtype=bool)
    change[1:] = (ks[1:] != ks[:-1]).any(1)
    run_start = np.maximum.accumulate(np.where(change, idx, 0))
    gid = np.cumsum((idx - run_start) % group_size == 0) - 1           # group of each sorted element
    n_groups = int(gid[-1]) + 1
    # sort 2: by a random group id. A random permutation of the groups is the paper's random 64-bit id
    # without the (harmless) chance of collisions; the stable sort keeps each group contiguous.
    rank = rng.permutation(n_groups)
    order = srt[np.argsort(rank[gid], kind="stable")].astype(np.int64)
    sizes = np.bincount(gid, minlength=n_groups)[np.argsort(rank)].astype(np.int64)
    return order, sizes


def _group_info(sizes: np.ndarray, s: int) -> dict[str, float]:
    return {"groups": float(len(sizes)), "mean_group_size": float(sizes.mean()) if len(sizes) else 0.0,
            "full_groups": float((sizes == s).mean()) if len(sizes) else 0.0}


_WORD = re.compile(r"\w+")
_STOP_WORDS_TEXT = """
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor
not of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves s t
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def _first_side_words(table: PairTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-stop word ids of every pair's first side: (flat word ids, start per pair, length per pair)."""
    vocab: dict[str, int] = {}
    ids = np.unique(table.a)
    starts = np.zeros(len(table.texts), dtype=np.int64)
    lens = np.zeros(len(table.texts), dtype=np.int64)
    flat: list[int] = []
    per_text = []
    for t in ids.tolist():
        words = [vocab.setdefault(w, len(vocab)) for w in _WORD.findall(table.texts[t].lower())
                 if w not in STOP_WORDS]
        per_text.append(len(words))
        flat.extend(words)
    lens[ids] = per_text
    starts[ids] = np.cumsum(lens[ids]) - lens[ids]
    flat.append(-1)                        # sentinel so that gathers stay in range for empty texts
    return np.asarray(flat, dtype=np.int64), starts[table.a], lens[table.a]


@dataclass
class WordsShuffle(Strategy):
    """Algorithm 2 (fast shingle-based shuffling) of Chernyavskiy et al. (2022).

    Each pair's key is a random shingle of ``shingle_words`` consecutive non-stop words of its first
    side (lower-cased ``\\w+`` tokens; shorter texts use all they have), its words sorted as in the
    authors' code so the key is order-insensitive; then ``group_by_keys`` with k = ``group_size``.
    Tokenisation is cached per table, so an epoch only redraws the shingle positions and sorts.
    """

    name: ClassVar[str] = "words"
    group_size: int = 8
    shingle_words: int = 3
    _cache: Any = field(default=None, init=False, repr=False, compare=False)

    def _words(self, table: PairTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._cache is None or self._cache[0]() is not table or self._cache[1] != len(table):
            self._cache = (weakref.ref(table), len(table), _first_side_words(table))
        return self._cache[2]

    def shingles(self, table: PairTable, rng: np.random.Generator) -> np.ndarray:
        """(N, t) word ids of a random shingle per pair, sorted per row, padded with -1."""
        flat, start, length = self._words(table)
        t = self.shingle_words
        width = np.minimum(length, t)                                    # (N,)
        pos = (rng.random(len(table)) * (length - width + 1)).astype(np.int64)
        cols = np.arange(t)
        valid = cols[None, :] < width[:, None]                           # (N, t)
        gather = np.where(valid, start[:, None] + pos[:, None] + cols[None, :], len(flat) - 1)
        sh = np.where(valid, flat[gather], -1)                           # (N, t)
        sh.sort(axis=1)
        return sh

    def order(self, table: PairTable, *, epoch: int, seed: int, batch_size: int,
              embeddings: torch.Tensor | None = None) -> np.ndarray:
        return self.grouped_order(table, epoch=epoch, seed=seed)[0]

    def grouped_order(self, table: PairTable, *, epoch: int, seed: int,
                      embeddings: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        rng = _rng(seed, epoch)
        order, sizes = group_by_keys(self.shingles(table, rng), self.group_size, rng)
        self.info = _group_info(sizes, self.group_size)
        return order, sizes


@dataclass
class ClustersShuffle(Strategy):
    """Algorithm 2 with the shingle replaced by the k-means cluster id of the first-side embedding.

    k-means (k-means++ seeding, ``iters`` Lloyd steps) runs on the embeddings' device every epoch,
    since the embeddings come from the model being trained.
    """

    name: ClassVar[str] = "clusters"
    needs_embeddings: ClassVar[bool] = True
    n_clusters: int = 300
    group_size: int = 8
    iters: int = 10

    def order(self, table: PairTable, *, epoch: int, seed: int, batch_size: int,
              embeddings: torch.Tensor | None = None) -> np.ndarray:
        return self.grouped_order(table, epoch=epoch, seed=seed, embeddings=embeddings)[0]

    def grouped_order(self, table: PairTable, *, epoch: int, seed: int,
                      embeddings: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        emb = _check_embeddings(table, embeddings, "ClustersShuffle")
        rng = _rng(seed, epoch)
        labels = kmeans(emb, self.n_clusters, self.iters, rng)          # (N,)
        order, sizes = group_by_keys(labels, self.group_size, rng)
        self.info = _group_info(sizes, self.group_size)
        self.info["largest_cluster"] = float(np.bincount(labels).max()) if len(labels) else 0.0
        return order, sizes


# ---------------------------------------------------------------------------------------------------
# No duplicate texts inside a global batch
# ---------------------------------------------------------------------------------------------------

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


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (NoShuffle, RandomShuffle, ExampleShuffle, WordsShuffle, ClustersShuffle,
                              NoDuplicates)
}


def build_strategy(name: str, **options: Any) -> Strategy:
    """``STRATEGIES[name](**options)``, e.g. ``build_strategy("example", group_size=4)``."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown shuffle strategy {name!r}; choose from {sorted(STRATEGIES)}")
    return STRATEGIES[name](**options)


# ---------------------------------------------------------------------------------------------------
# Global batches, rank slices, statistics
# ---------------------------------------------------------------------------------------------------

def global_batches(order: np.ndarray, global_batch_size: int, world_size: int = 1,
                   drop_last: bool = False) -> list[np.ndarray]:
    """Consecutive slices of ``order`` of ``global_batch_size`` pairs.

    The last partial batch is kept but truncated to a multiple of ``world_size`` (dropped if that
    leaves nothing), so every rank gets the same number of equally sized batches and no collective can
    hang; with ``drop_last`` it is dropped. Pairs left out are the caller's to log.
    """
    if global_batch_size <= 0 or global_batch_size % world_size:
        raise ValueError(f"global batch {global_batch_size} must be a positive multiple of world size "
                         f"{world_size}")
    batches = [order[i:i + global_batch_size] for i in range(0, len(order), global_batch_size)]
    if batches and len(batches[-1]) < global_batch_size:
        keep = 0 if drop_last else len(batches[-1]) // world_size * world_size
        if keep == 0:
            batches.pop()
        else:
            batches[-1] = batches[-1][:keep]
    return batches


def rank_slice(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """The contiguous ``1/world_size`` share of a global batch that ``rank`` trains on."""
    if len(batch) % world_size:
        raise ValueError(f"batch of {len(batch)} does not split evenly over {world_size} ranks")
    per = len(batch) // world_size
    return batch[rank * per:(rank + 1) * per]


def batch_stats(table: PairTable, batches: list[np.ndarray], embeddings: torch.Tensor | None = None,
                max_cos_batches: int = 256) -> dict[str, float]:
    """Numbers to log about an epoch's batches.

    - ``n_batches``, ``mean_batch_size``;
    - ``duplicates_per_batch``: mean number of pairs whose a- or b-text id already occurred earlier
      in the same batch (ids are shared by both sides); ``duplicate_fraction``: the same over all pairs;
    - ``intra_batch_cosine`` (with embeddings): mean cosine between distinct first sides of a batch,
      averaged over up to ``max_cos_batches`` batches (a fixed sample when there are more).
    """
    sizes = np.array([len(b) for b in batches], dtype=np.int64)
    stats = {"n_batches": float(len(batches)), "mean_batch_size": float(sizes.mean()) if len(sizes) else 0.0}
    if not len(batches) or not sizes.sum():
        empty = {"duplicates_per_batch": 0.0, "duplicate_fraction": 0.0}
        return stats | empty | ({} if embeddings is None else {"intra_batch_cosine": float("nan")})
    idx = np.concatenate(batches)
    bid = np.repeat(np.arange(len(batches), dtype=np.int64), sizes)
    # key = (batch, text id); an occurrence is a duplicate when its key first appeared at an earlier pair
    keys = (bid[:, None] * len(table.texts) + np.stack([table.a[idx], table.b[idx]], 1)).ravel()  # (2M,)
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    first_pair = (first[inv.ravel()] // 2).reshape(-1, 2)              # (M, 2)
    dup = (first_pair < np.arange(len(idx))[:, None]).any(1)           # (M,)
    stats["duplicates_per_batch"] = float(dup.sum() / len(batches))
    stats["duplicate_fraction"] = float(dup.mean())
    if embeddings is not None:
        pick = np.arange(len(batches))
        if len(pick) > max_cos_batches:
            pick = np.sort(np.random.default_rng(0).choice(len(pick), max_cos_batches, replace=False))
        cos = []
        for k in pick:
            if sizes[k] < 2:
                continue
            e = embeddings[torch.from_numpy(batches[k]).to(embeddings.device)].float()  # (m, d)
            total = e.sum(0)                                                        # (d,)
            # sum over i != j of e_i·e_j = ||Σ e||² − Σ ||e_i||², no (m, m) matrix needed
            off = (total @ total - (e * e).sum()) / (sizes[k] * (sizes[k] - 1))
            cos.append(float(off))
        stats["intra_batch_cosine"] = float(np.mean(cos)) if cos else float("nan")
    return stats
