"""The ``Strategy`` base class, option checks and what every strategy shares: seeded RNG, global batches,
rank slices and batch statistics."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch

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


def _group_info(sizes: np.ndarray, s: int) -> dict[str, float]:
    return {"groups": float(len(sizes)), "mean_group_size": float(sizes.mean()) if len(sizes) else 0.0,
            "full_groups": float((sizes == s).mean()) if len(sizes) else 0.0}


STRATEGIES: dict[str, type[Strategy]] = {}


@dataclass
class Strategy:
    """Base class. ``order`` returns a permutation (int64) of ``range(len(table))``.

    ``batch_size`` is the GLOBAL batch size (per-device batch × world size). After each call ``info``
    holds a few numbers worth logging (group counts, violations, ...). Options are checked when the
    strategy is built (``validate``), so a bad config fails before any data is loaded.
    """

    name: ClassVar[str] = ""
    needs_embeddings: ClassVar[bool] = False
    info: dict[str, float] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:  # one class + one conf/shuffle/<name>.yaml is a new strategy; the registry is for lookups
            STRATEGIES[cls.name] = cls

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ``ValueError`` naming the config key of the first invalid option."""

    def _bad(self, key: str, why: str) -> ValueError:
        value = getattr(self, key)
        return ValueError(f"shuffle.{key}={value!r} {why} (shuffle={self.name})")

    def _check_int(self, key: str, minimum: int) -> None:
        value = getattr(self, key)
        # bool is an int subclass: `group_size: true` in a YAML file is a mistake, not 1
        if not isinstance(value, Integral) or isinstance(value, bool):
            raise self._bad(key, "must be an integer")
        if value < minimum:
            raise self._bad(key, f"must be >= {minimum}")

    def _check_bool(self, key: str) -> None:
        if not isinstance(getattr(self, key), bool):
            raise self._bad(key, "must be true or false")

    def order(self, table: PairTable, *, epoch: int, seed: int, batch_size: int,
              embeddings: torch.Tensor | None = None) -> np.ndarray:
        raise NotImplementedError


def strategy_options(cls: type[Strategy]) -> list[str]:
    """The option names a strategy accepts (its init fields)."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


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


def _intra_batch_cosine(table: PairTable, batches: list[np.ndarray], embeddings: torch.Tensor,
                        pick: np.ndarray) -> float:
    """Mean over the picked batches of the mean cosine between their DISTINCT first-side texts."""
    cos = []
    for k in pick:
        # copies of a text have cosine 1 with each other: counting them would measure duplication,
        # not how hard the negatives are, so each first-side text counts once per batch
        _, first = np.unique(table.a[batches[k]], return_index=True)
        m = len(first)
        if m < 2:
            continue
        rows = torch.from_numpy(batches[k][first]).to(embeddings.device)
        e = embeddings[rows].float()                                               # (m, d)
        total = e.sum(0)                                                           # (d,)
        # sum over i != j of e_i·e_j = ||Σ e||² − Σ ||e_i||², no (m, m) matrix needed
        cos.append(float((total @ total - (e * e).sum()) / (m * (m - 1))))
    return float(np.mean(cos)) if cos else float("nan")


def batch_stats(table: PairTable, batches: list[np.ndarray], embeddings: torch.Tensor | None = None,
                max_cos_batches: int = 256) -> dict[str, float]:
    """Numbers to log about an epoch's batches.

    - ``n_batches``, ``mean_batch_size``;
    - ``duplicates_per_batch``: mean number of pairs whose a- or b-text id already occurred earlier
      in the same batch (ids are shared by both sides); ``duplicate_fraction``: the same over all pairs;
    - ``intra_batch_cosine`` (with embeddings): mean cosine between the distinct first-side texts of a
      batch (copies of a text count once), averaged over up to ``max_cos_batches`` batches (a fixed
      sample when there are more); batches with fewer than two distinct first sides are left out.
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
        stats["intra_batch_cosine"] = _intra_batch_cosine(table, batches, embeddings, pick)
    return stats
