"""The two orders that ignore content: ``none`` (file order) and ``random``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from bsc_lightning.data.batching.base import Strategy, _rng
from bsc_lightning.data.table import PairTable


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
