"""The pair table: the one in-memory shape every task reader produces and every later stage reads.

Texts are stored once (``texts``) and pairs point into them (``a``, ``b``). The text ids double as
duplicate ids: two pairs whose ``a`` ids are equal have identical first sides, so duplicate
detection is decided from the input texts once, here, and never from embeddings.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

TaskType = Literal["classification", "ranking", "regression"]


@dataclass
class PairTable:
    """Pairs ``(texts[a[i]], texts[b[i]])`` with a float ``label`` and a query group ``qid``.

    - ``texts``: unique strings (both sides share one list).
    - ``a``, ``b``: int64 arrays (N,), ids into ``texts``; equal ids mean identical texts.
    - ``label``: float32 array (N,), already transformed by the task (STS-B in [0, 1], 0/1 classes,
      graded relevance); a pair is positive when ``label > positive_threshold`` of its task.
    - ``qid``: int64 array (N,), the query a pair belongs to (ranking metrics group by it).
    """

    texts: list[str]
    a: np.ndarray
    b: np.ndarray
    label: np.ndarray
    qid: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        self.a = np.asarray(self.a, dtype=np.int64)
        self.b = np.asarray(self.b, dtype=np.int64)
        self.label = np.asarray(self.label, dtype=np.float32)
        self.qid = np.asarray(self.qid, dtype=np.int64)
        n = len(self.a)
        if not (len(self.b) == len(self.label) == len(self.qid) == n):
            raise ValueError(f"PairTable {self.name!r}: column lengths differ")

    @classmethod
    def from_pairs(
        cls,
        text_a: Sequence[str],
        text_b: Sequence[str],
        label: Sequence[float],
        qid: Sequence[int] | None = None,
        name: str = "",
    ) -> PairTable:
        """Build a table from parallel lists; ``qid`` defaults to the id of the first side's text."""
        index: dict[str, int] = {}
        texts: list[str] = []

        def tid(t: str) -> int:
            i = index.get(t)
            if i is None:
                i = index[t] = len(texts)
                texts.append(t)
            return i

        a = np.fromiter((tid(t) for t in text_a), dtype=np.int64, count=len(text_a))
        b = np.fromiter((tid(t) for t in text_b), dtype=np.int64, count=len(text_b))
        q = a.copy() if qid is None else np.asarray(qid, dtype=np.int64)
        return cls(texts, a, b, np.asarray(label, dtype=np.float32), q, name)

    def __len__(self) -> int:
        return len(self.a)

    @property
    def text_a(self) -> list[str]:
        return [self.texts[i] for i in self.a]

    @property
    def text_b(self) -> list[str]:
        return [self.texts[i] for i in self.b]

    def subset(self, idx: Sequence[int] | np.ndarray, name: str | None = None) -> PairTable:
        """Rows ``idx`` of the table; texts are kept (ids stay valid and comparable)."""
        idx = np.asarray(idx, dtype=np.int64)
        return PairTable(self.texts, self.a[idx], self.b[idx], self.label[idx], self.qid[idx],
                         self.name if name is None else name)

    def positives(self, threshold: float) -> np.ndarray:
        """Boolean mask (N,) of pairs with ``label > threshold``."""
        return self.label > threshold
