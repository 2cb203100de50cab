"""Batch construction ("shuffling"): which pairs share a batch, and so which negatives BSC sees.

A strategy returns the ORDER of the training pairs for one epoch; the data module cuts that order into
consecutive global batches (``global_batches``) and hands each rank its slice (``rank_slice``).
Strategies see the ``PairTable`` (text ids, never tokens) and, when ``needs_embeddings``, the
L2-normalised first-side embeddings computed by the current model at the start of the epoch.

Strategies (paper, "Batch construction"), one module each:
- ``none``: file order.            - ``random``: a new permutation each epoch.      (``simple``)
- ``example``: Algorithm 1, groups of s nearest neighbours by the current model, list reversed;
  neighbours are searched over distinct first-side texts.                          (``example``)
- ``words``: Algorithm 2, groups of k pairs sharing a random t-word shingle of their first side.
- ``clusters``: Algorithm 2 with the shingle replaced by a k-means cluster id.      (``keyed``)
- ``no_duplicates``: random, but no text id twice inside one global batch.          (``no_duplicates``)
``base`` holds the ``Strategy`` class, global batches, rank slices and ``batch_stats``.

Every order is a deterministic function of (table, seed, epoch[, embeddings]): the only state kept
between calls is a cache of table-derived data, so resuming at an epoch boundary reproduces the run.
Options are checked when a strategy is built: ``build_strategy`` raises a one-line ``ValueError`` that
names the config key (``shuffle.<key>``). Each strategy registers itself in ``STRATEGIES`` by its
``name``; runs build it from ``conf/shuffle/<name>.yaml`` (``_target_``).
"""
from __future__ import annotations

from typing import Any

from bsc_lightning.data.batching.base import (
    STRATEGIES,
    Strategy,
    batch_stats,
    global_batches,
    rank_slice,
    strategy_options,
)
from bsc_lightning.data.batching.example import ExampleShuffle
from bsc_lightning.data.batching.keyed import STOP_WORDS, ClustersShuffle, WordsShuffle, group_by_keys
from bsc_lightning.data.batching.no_duplicates import NoDuplicates
from bsc_lightning.data.batching.simple import NoShuffle, RandomShuffle


def build_strategy(name: str, **options: Any) -> Strategy:
    """``STRATEGIES[name](**options)``, e.g. ``build_strategy("example", group_size=4)``.

    Unknown names and options, and out-of-range values, raise a one-line ``ValueError``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown shuffle strategy {name!r}; choose from {sorted(STRATEGIES)}")
    cls = STRATEGIES[name]
    known = strategy_options(cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"shuffle.{unknown[0]}: not an option of shuffle={name}; "
                         f"known options: {known or 'none'}")
    return cls(**options)


__all__ = [
    "STOP_WORDS", "STRATEGIES", "ClustersShuffle", "ExampleShuffle", "NoDuplicates", "NoShuffle",
    "RandomShuffle", "Strategy", "WordsShuffle", "batch_stats", "build_strategy", "global_batches",
    "group_by_keys", "rank_slice",
]
