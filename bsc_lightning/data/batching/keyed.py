"""Algorithm 2 (``words``) and its k-means variant (``clusters``): group pairs that share a key."""
from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from bsc_lightning.data.batching.base import Strategy, _check_embeddings, _group_info, _rng
from bsc_lightning.data.neighbours import kmeans
from bsc_lightning.data.table import PairTable


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
    The default of one word is the authors' code's; longer shingles rarely repeat on short texts and
    leave most groups singletons. Tokenisation is cached per table, so an epoch only redraws the
    shingle positions and sorts.
    """

    name: ClassVar[str] = "words"
    group_size: int = 8
    shingle_words: int = 1
    _cache: Any = field(default=None, init=False, repr=False, compare=False)

    def validate(self) -> None:
        self._check_int("group_size", 1)
        self._check_int("shingle_words", 1)

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
    since the embeddings come from the model being trained. It is deterministic on CUDA too (see
    ``bsc_lightning.data.neighbours.cluster_sums``): under DDP every rank runs it and the data module
    checks that all ranks built the same order.
    """

    name: ClassVar[str] = "clusters"
    needs_embeddings: ClassVar[bool] = True
    n_clusters: int = 300
    group_size: int = 8
    iters: int = 10

    def validate(self) -> None:
        self._check_int("n_clusters", 1)
        self._check_int("group_size", 1)
        self._check_int("iters", 1)

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
