"""LightningDataModule: read → tokenise once → an epoch's batches from a strategy → chunked collate.

Batch construction is the paper's central lever, so the data module never lets Lightning reorder
training pairs: a strategy (`bsc_lightning.data.batching`) orders the whole epoch, the order is cut
into global batches (per-device batch × world size) and each rank takes its slice of every global
batch. All ranks build the same order from the shared seed, so the all-gathered negatives of one
step come from one coherent global batch.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bsc_lightning.data.batching import Strategy, batch_stats, build_strategy, global_batches, rank_slice
from bsc_lightning.data.chunks import Chunks, pack_chunks
from bsc_lightning.data.table import PairTable
from bsc_lightning.data.tasks import DataError, Task, cut_splits, load_task
from bsc_lightning.data.tokens import TokenCache, tokenize_texts
from bsc_lightning.evaluation import EvalTexts, identity

log = logging.getLogger(__name__)


class _Indices(Dataset):
    """The dataset is just row numbers; the collator turns a list of them into tensors."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class PairCollator:
    """Rows of a table → a batch dict; both sides' 2B sequences packed into length-aware chunks.

    Output: ``chunks`` (Chunks over 2B texts: first B = side a, then B = side b), ``labels`` (B,)
    float32, ``q_ids``/``a_ids`` (B,) int64 text ids, ``qid`` (B,), ``index`` (B,) row numbers.
    """

    def __init__(self, table: PairTable, tokens: TokenCache, chunk_tokens: int | None,
                 chunk_rows: int | None = None, length_aware: bool = True) -> None:
        self.table, self.tokens = table, tokens
        self.chunk_tokens, self.chunk_rows, self.length_aware = chunk_tokens, chunk_rows, length_aware

    def __call__(self, rows: list[int]) -> dict[str, Any]:
        idx = np.asarray(rows, dtype=np.int64)
        t = self.table
        text_ids = np.concatenate([t.a[idx], t.b[idx]])  # (2B,)
        if self.length_aware or self.chunk_tokens or self.chunk_rows:
            chunks = self.tokens.pack(text_ids, self.chunk_tokens, self.chunk_rows, self.length_aware)
        else:
            chunks = self._padded_per_side(text_ids, len(idx))
        return {
            "chunks": chunks,
            "labels": torch.from_numpy(t.label[idx]),
            "q_ids": torch.from_numpy(t.a[idx]),
            "a_ids": torch.from_numpy(t.b[idx]),
            "qid": torch.from_numpy(t.qid[idx]),
            "index": torch.from_numpy(idx),
        }

    def _padded_per_side(self, text_ids: np.ndarray, b: int) -> Chunks:
        """The classic layout (what a plain loop does): each side padded to its own longest text."""
        seqs = self.tokens.seqs(text_ids)
        sides = [pack_chunks(seqs[:b], self.tokens.pad_id, length_aware=False),
                 pack_chunks(seqs[b:], self.tokens.pad_id, length_aware=False)]
        return Chunks([s.input_ids[0] for s in sides], [s.attention_mask[0] for s in sides],
                      torch.arange(2 * b))


class EpochBatchSampler(Sampler[list[int]]):
    """Yields this rank's slice of every global batch of the current epoch, built at iteration time
    (so `example`/`clusters` see the model as it is at the start of the epoch).

    The epoch is read from the trainer when iteration starts: Lightning never calls ``set_epoch`` on a
    custom batch sampler, so relying on it would replay epoch 0's order forever.
    """

    def __init__(self, dm: PairDataModule) -> None:
        self.dm = dm

    def __len__(self) -> int:
        return self.dm.num_train_batches()

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self.dm.rank_world()
        epoch = self.dm.current_epoch()
        batches = self.dm.epoch_batches(epoch)
        for batch in batches[self.dm.pop_resume_position(epoch):]:
            yield rank_slice(batch, rank, world).tolist()


class PairDataModule(L.LightningDataModule):
    """Owns the task's pair tables, their token cache and batch construction.

    Built from the ``data`` config (``conf/config.yaml``, where each key is explained) with the runtime
    objects passed in: the loaded ``task`` (or a task name, loaded with its config's facts), the
    ``tokenizer`` and the batch-construction ``strategy`` (or a strategy name). Strategies that need
    embeddings (``example``, ``clusters``) call ``embedder(seqs, pad_id, max_tokens=, progress=)``,
    set by the run to the current encoder's ``encode_ids``: the data module never reaches into the model.
    Per-epoch batch statistics wait in ``epoch_stats`` for the ``BatchStatsLogger`` callback.
    """

    def __init__(self, task: Task | str, tokenizer: Any, strategy: Strategy | str = "random", *,
                 max_length: int = 128, batch_size: int = 32, eval_batch_size: int = 256, seed: int = 0,
                 chunk_tokens: int | None = 16384, chunk_rows: int | None = None, length_aware: bool = True,
                 num_workers: int = 0, pin_memory: bool = False, limit_train: int | None = None,
                 limit_eval: int | None = None, train_positives_only: bool = False,
                 train_negatives_per_query: int | None = None, drop_last: bool = False,
                 cache_dir: str | None = None,
                 embedder: Callable[..., torch.Tensor] | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise DataError(f"data.batch_size={batch_size}: must be >= 1")
        self._given_task = task
        self.task_name = task.name if isinstance(task, Task) else task
        self.tokenizer, self.max_length = tokenizer, max_length
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.strategy: Strategy = build_strategy(strategy) if isinstance(strategy, str) else strategy
        self.chunk_tokens, self.chunk_rows, self.length_aware = chunk_tokens, chunk_rows, length_aware
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.limit_train, self.limit_eval = limit_train, limit_eval
        self.train_positives_only, self.drop_last = train_positives_only, drop_last
        self.train_negatives_per_query = train_negatives_per_query
        self.cache_dir, self.embedder = cache_dir, embedder
        self.task: Task | None = None
        self.tokens: dict[str, TokenCache] = {}
        self.epoch_stats: dict[str, float] | None = None   # the last built epoch's, until logged
        self._epoch_cache: tuple[int, list[np.ndarray]] | None = None
        self._resume_at: tuple[int, int] | None = None   # (epoch, batches already trained) after a resume

    # ----------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            # A new fit (e.g. stage 2) builds its epochs from its own weights. Lightning calls `setup`
            # before it restores a checkpoint into `load_state_dict`, so a resume survives this reset.
            self._epoch_cache, self._resume_at = None, None
        if self.task is not None:
            return
        task = self._given_task if isinstance(self._given_task, Task) else load_task(self._given_task)
        self.task = task = cut_splits(task, train_positives_only=self.train_positives_only,
                                      train_negatives_per_query=self.train_negatives_per_query,
                                      limit_train=self.limit_train, limit_eval=self.limit_eval)
        splits = task.splits
        # One pass per distinct text list (readers may share one list across splits).
        by_list: dict[int, TokenCache] = {}
        for name, t in splits.items():
            if id(t.texts) not in by_list:
                by_list[id(t.texts)] = tokenize_texts(t.texts, self.tokenizer, self.max_length, self.cache_dir)
            self.tokens[name] = by_list[id(t.texts)]
        if task.pool is not None:  # the candidate pool of corpus-level ranking (dev/test evaluation)
            self.tokens["pool"] = tokenize_texts(task.pool.texts, self.tokenizer, self.max_length, self.cache_dir)
        log.info("task %s: %s", task.name, {k: len(v) for k, v in splits.items()})

    def check_batch_size(self, world: int | None = None) -> None:
        """Fail before training when the global batch is larger than the training data."""
        world = world or self.rank_world()[1]
        n = len(self.train_table)
        if self.batch_size * world > n:
            raise DataError(f"data.batch_size={self.batch_size} × {world} device(s) > {n} training pairs of "
                            f"task {self.task_name!r}: lower data.batch_size")

    @property
    def train_table(self) -> PairTable:
        assert self.task is not None, "call setup() first"
        return self.task.splits["train"]

    def current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    # ------------------------------------------------------------------------------- batching
    def num_train_batches(self) -> int:
        _, world = self.rank_world()
        g = self.batch_size * world
        n = len(self.train_table)
        rest = (n % g) // world * world
        return n // g + (1 if rest and not self.drop_last else 0)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's global batches (cached: one build per epoch, identical on every rank)."""
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        _, world = self.rank_world()
        table = self.train_table
        emb = self.embed_first_sides() if self.strategy.needs_embeddings else None
        start = time.perf_counter()
        order = self.strategy.order(table, epoch=epoch, seed=self.seed, batch_size=self.batch_size * world,
                                    embeddings=emb)
        batches = global_batches(order, self.batch_size * world, world, self.drop_last)
        seconds = time.perf_counter() - start
        if world > 1:
            self._check_same_order_on_all_ranks(order)
        stats = batch_stats(table, batches, emb)
        dropped = len(table) - sum(len(b) for b in batches)
        self.epoch_stats = {"batching/seconds": seconds, "batching/dropped_pairs": dropped,
                            **{f"batching/{k}": float(v) for k, v in stats.items()}}
        log.info("epoch batches: %s", {k: round(v, 4) for k, v in self.epoch_stats.items()})
        self._epoch_cache = (epoch, batches)
        return batches

    # ------------------------------------------------------------------------------ resume state
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue the epoch: its order and how many batches were trained.

        Kept on the data module, not the loader: Lightning builds the train loader while configuring
        the optimiser (``estimated_stepping_batches``), before it restores loop state, so a loader's
        own ``load_state_dict`` would never be called on resume.

        Tensors and ints only, so checkpoints load with ``weights_only=True``. ``processed`` counts the
        batches whose optimiser step is done when Lightning saves (after a step or at epoch end).
        """
        if self._epoch_cache is None:
            return {}
        epoch, batches = self._epoch_cache
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed if self.trainer else 0
        sizes = [len(b) for b in batches]
        return {"epoch": epoch, "batches_done": int(done), "sizes": torch.tensor(sizes, dtype=torch.long),
                "order": torch.from_numpy(np.concatenate(batches) if batches else np.empty(0, np.int64))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        order = state["order"].numpy().astype(np.int64)
        bounds = np.cumsum([0] + state["sizes"].tolist())
        self._epoch_cache = (int(state["epoch"]), [order[i:j] for i, j in itertools.pairwise(bounds)])
        self._resume_at = (int(state["epoch"]), int(state["batches_done"]))

    def pop_resume_position(self, epoch: int) -> int:
        """Batches of ``epoch`` to skip: those trained before the checkpoint we resumed from (once)."""
        at, self._resume_at = self._resume_at, None
        skip = at[1] if at is not None and at[0] == epoch else 0
        if skip:
            log.info("resuming epoch %d after its first %d batches", epoch, skip)
        return skip

    def _check_same_order_on_all_ranks(self, order: np.ndarray) -> None:
        """The global batches are only coherent if every rank built the same order: verify it
        (one 8-byte all-gather per epoch) instead of trusting it."""
        digest = np.frombuffer(hashlib.sha1(np.ascontiguousarray(order).tobytes()).digest()[:8], dtype=np.int64)
        mine = torch.from_numpy(digest.copy()).to(self.trainer.strategy.root_device)
        everyone = self.trainer.strategy.all_gather(mine).reshape(-1)  # (world,)
        if not bool((everyone == everyone[0]).all()):
            raise RuntimeError(f"shuffle={self.strategy.name}: ranks built different epoch orders; the strategy "
                               "must be deterministic given (seed, epoch) and the gathered embeddings")

    @torch.no_grad()
    def embed_first_sides(self) -> torch.Tensor:
        """(N, d) L2-normalised first-side embeddings of the training pairs, from the current model.

        Under DDP each rank encodes a disjoint shard of the unique texts and the shards are
        all-gathered, so every rank holds the same matrix without encoding everything itself.
        """
        if self.embedder is None:
            raise RuntimeError(f"shuffle={self.strategy.name} needs embeddings: set PairDataModule.embedder "
                               "(the run sets it to the encoder's encode_ids)")
        rank, world = self.rank_world()
        table = self.train_table
        uniq, inv = np.unique(table.a, return_inverse=True)
        mine = uniq[rank::world]
        tokens = self.tokens["train"]
        emb = self.embedder(tokens.seqs(mine), tokens.pad_id, max_tokens=self.chunk_tokens or 16384,
                            progress=rank == 0)  # (n_mine, d)
        if world > 1:
            size = (len(uniq) + world - 1) // world
            padded = torch.zeros((size, emb.shape[1]), dtype=emb.dtype, device=emb.device)
            padded[: len(emb)] = emb
            gathered = self.trainer.strategy.all_gather(padded)  # (world, size, d)
            full = torch.empty((len(uniq), emb.shape[1]), dtype=emb.dtype, device=emb.device)
            for r in range(world):
                n_r = len(uniq[r::world])
                full[r::world] = gathered[r, :n_r]
            emb = full
        emb = torch.nn.functional.normalize(emb, dim=-1)
        return emb[torch.as_tensor(inv.reshape(-1), device=emb.device)]  # (N, d)

    # ----------------------------------------------------------------------------- loaders
    def _collator(self, split: str) -> PairCollator:
        assert self.task is not None, "call setup() first"
        return PairCollator(self.task.splits[split], self.tokens[split], self.chunk_tokens, self.chunk_rows,
                            self.length_aware)

    def train_dataloader(self) -> DataLoader:
        self.check_batch_size()
        # Own generators: a loader draws a base seed from its generator at every iter(); from the global
        # one that draw would shift dropout's stream and break an exact resume.
        return DataLoader(_Indices(len(self.train_table)), batch_sampler=EpochBatchSampler(self),
                           collate_fn=self._collator("train"), num_workers=self.num_workers,
                           pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0,
                           generator=torch.Generator().manual_seed(self.seed))

    def eval_dataloader(self, split: str, with_pool: bool = True) -> DataLoader:
        """This rank's share of the split's DISTINCT texts in length-sorted chunks (`EvalTexts`): the module
        embeds each text once and scores pairs by lookup. ``with_pool``: the loader also carries the
        task's candidate pool (embedded once per evaluation; later loaders of the same run reuse it)."""
        assert self.task is not None
        rank, world = self.rank_world()
        data = EvalTexts(split, self.task.splits[split], self.tokens[split], pool=self.task.pool,
                         pool_tokens=self.tokens.get("pool"), with_pool=with_pool, rank=rank, world=world,
                         max_tokens=self.chunk_tokens or 16384, max_rows=2 * self.eval_batch_size)
        return DataLoader(data, batch_size=None, shuffle=False, collate_fn=identity, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("dev")

    def test_dataloader(self) -> list[DataLoader]:
        # Dev comes first: the classification threshold is chosen on it and applied to test.
        # A candidate pool rides with the dev loader only: embedded once, ranked against by both splits.
        return [self.eval_dataloader("dev"), self.eval_dataloader("test", with_pool=False)]
