"""LightningModule: the shared encoder + a pluggable embedding loss + task metrics.

Training sees embeddings of both sides and hands them to the loss; evaluation embeds each split's
distinct texts once (`bsc_lightning.evaluation`), scores every pair by cosine and computes the task's
metrics over the whole split (dev-chosen threshold for classification, applied unchanged to test), or
ranks each query against the task's candidate pool.
"""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from functools import partial
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bsc_lightning.encoder import Encoder
from bsc_lightning.evaluation import (
    POOL,
    SPLIT,
    EvalTexts,
    gather_rows,
    pool_split_metrics,
    split_scores,
    weights_fingerprint,
)
from bsc_lightning.losses import ComboLoss, CoSENTLoss, MSELoss
from bsc_lightning.losses.cached import all_reduce_grads, cached_loss_backward
from bsc_lightning.metrics import task_metrics

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """Every RNG a step may draw from, as tensors and ints only (checkpoints load with weights_only)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias", "norm.weight")


class BSCModule(L.LightningModule):
    """Encoder + loss + metrics.

    Args:
        encoder: the shared `Encoder`. loss: any module with the loss contract
            ``forward(q, a, labels, q_ids, a_ids) -> LossOutput``.
        task_type / positive_threshold / main_metric: from the task.
        optimizer: a partial optimiser (Hydra ``_partial_``) taking parameter groups.
        warmup_ratio: linear warm-up share of all steps, then linear decay to 0.
        temperature_lr: learning rate of the loss's own parameters (learnable 1/τ), no weight decay.
        grad_clip: max gradient norm (None: off); applied here so that both optimisation paths use it.
        cache_chunk_size: when set, the gradient-cache path (manual optimisation): texts are encoded
            in chunks of at most this many rows and the loss still sees the whole batch.
        nan_check_every: how often (steps) the deferred non-finite-loss flag is read; reading it
            synchronises the device, so it is not done every step on accelerators.
    """

    def __init__(self, encoder: Encoder, loss: nn.Module, *, task_type: str, positive_threshold: float,
                 main_metric: str, optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 warmup_ratio: float = 0.1, temperature_lr: float = 1e-3, grad_clip: float | None = 1.0,
                 cache_chunk_size: int | None = None, nan_check_every: int = 50) -> None:
        super().__init__()
        self.encoder, self.loss = encoder, loss
        self.task_type, self.positive_threshold, self.main_metric = task_type, positive_threshold, main_metric
        self.optimizer_factory = optimizer or partial(torch.optim.AdamW, lr=2e-5, weight_decay=0.01)
        self.warmup_ratio, self.temperature_lr, self.grad_clip = warmup_ratio, temperature_lr, grad_clip
        self.cache_chunk_size = cache_chunk_size
        self.automatic_optimization = cache_chunk_size is None
        self.nan_check_every = max(1, nan_check_every)
        self._bad_step: Tensor | None = None
        self._eval: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {}
        self._texts: dict[tuple[int, int], list[tuple[Tensor, Tensor]]] = {}  # (loader, source) → (ids, emb)
        # the candidate pool's embeddings of the last evaluation: (key, emb, present), key = (weights
        # fingerprint, pool object id); this evaluation's key (None: no pool)
        self._pool_cache: tuple[Any, Tensor, Tensor] | None = None
        self._pool_key: Any = None
        self.test_results: dict[str, float] = {}
        self.eval_scores: list[tuple[Tensor, Tensor, Tensor] | None] = []  # the last evaluation's pair scores
        self.stage = "stage1"   # which stage of a sequential run this module trains (saved in checkpoints)

    # ------------------------------------------------------------------------------- training
    def on_fit_start(self) -> None:
        if self.cache_chunk_size is not None and str(self.trainer.precision).startswith("16"):
            raise ValueError("model.cache_chunk_size with trainer.precision=16-mixed is not supported (the "
                             "gradient cache bypasses the loss scaler): use bf16-mixed or 32-true")
        # A file of positives alone (no labelled negatives) is fine for BSC, but losses that learn from the labels'
        # values or order then learn nothing useful: say so before the run spends its time (recipe_ranking's mse run).
        dm = getattr(self.trainer, "datamodule", None)
        if isinstance(self.loss, (MSELoss, ComboLoss, CoSENTLoss)) and getattr(dm, "task", None) is not None:
            label = dm.train_table.label                                       # (N,)
            if len(label) and bool((label == label[0]).all()) and self.trainer.is_global_zero:
                log.warning("every training label is %g: %s learns from labelled differences, so it only moves "
                            "every cosine towards %g (a file without labelled negatives?)", label[0],
                            type(self.loss).__name__, label[0])

    def _split(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        emb = self.encoder(batch["chunks"])  # (2B, d)
        b = batch["labels"].shape[0]
        return emb[:b], emb[b:]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        if self.cache_chunk_size is not None:
            return self._cached_training_step(batch)
        q, a = self._split(batch)
        out = self.loss(q, a, batch["labels"], batch["q_ids"], batch["a_ids"])
        self._after_loss(out, batch)
        return out.loss

    def _cached_training_step(self, batch: dict[str, Any]) -> None:
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        out = cached_loss_backward(self.encoder, self.loss, batch["chunks"], batch["labels"],
                                   batch["q_ids"], batch["a_ids"])
        # The reducer of DDP never ran (plain backward calls, one per chunk): average the
        # gradients ourselves, once per step.
        all_reduce_grads(self.parameters())
        if self.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        self._after_loss(out, batch)

    def _after_loss(self, out: Any, batch: dict[str, Any]) -> None:
        self._check_finite(out.loss)
        bsz = int(batch["labels"].shape[0])
        # Under DDP each rank holds its share of the global loss (local_loss): only the mean over
        # ranks is the global value. The reduction is a device collective, not a host sync.
        sync = self.trainer.world_size > 1
        self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=bsz, sync_dist=sync)
        self.log_dict({f"train/{k}": v for k, v in out.logs.items()}, batch_size=bsz, sync_dist=sync)

    def _check_finite(self, loss: Tensor) -> None:
        """Stop with the step number when the loss stops being finite, without a sync every step."""
        step = torch.full((), self.global_step, device=loss.device, dtype=torch.long)
        bad = ~torch.isfinite(loss.detach())
        if self._bad_step is None:
            self._bad_step = torch.full((), -1, device=loss.device, dtype=torch.long)
        self._bad_step = torch.where(bad & (self._bad_step < 0), step, self._bad_step)
        if self.global_step % self.nan_check_every == 0 or loss.device.type == "cpu":
            first = int(self._bad_step)
            if first >= 0:
                raise FloatingPointError(
                    f"non-finite training loss at step {first} (loss={loss.item()}): lower the learning rate, "
                    "raise the temperature (loss.temperature) or use precision=32")

    def on_train_epoch_end(self) -> None:
        if self._bad_step is not None and int(self._bad_step) >= 0:
            self._check_finite(torch.tensor(float("nan")))

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if self.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for name, p in self.encoder.named_parameters():
            if p.requires_grad:
                (no_decay if any(k in name for k in _NO_DECAY) else decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        loss_params = [p for p in self.loss.parameters() if p.requires_grad]
        if loss_params:
            groups.append({"params": loss_params, "weight_decay": 0.0, "lr": self.temperature_lr})
        opt = self.optimizer_factory(groups)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.warmup_ratio * total)

        def linear(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning saves no RNG state: without it a resumed run draws other dropout masks.
        checkpoint["bsc"] = {"stage": self.stage, "rng": rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("bsc") or {}
        if state.get("rng") is not None and self._trainer is not None and self.trainer.state.fn == "fit":
            set_rng_state(state["rng"])

    # ------------------------------------------------------------------------------ evaluation
    # The eval loaders yield chunks of a split's DISTINCT texts (bsc_lightning.evaluation.EvalTexts, one
    # rank's share under DDP); the steps embed them, the epoch end all-gathers the shards, scores pairs by
    # lookup (or ranks queries against the candidate pool) and computes the metrics once per split, the
    # same on every rank. Loaders of pair batches (PairCollator: "labels" in the batch) still work the old way.
    def _eval_step(self, batch: dict[str, Any], dataloader_idx: int) -> None:
        if "text_ids" in batch:
            if int(batch["source"]) == POOL and self._pool_cached():
                return  # same weights, same pool: the last evaluation's pool embeddings are reused
            emb = self.encoder(batch["chunks"]).float().detach()  # (n, d), rows = batch["text_ids"]
            self._texts.setdefault((dataloader_idx, int(batch["source"])), []).append((batch["text_ids"], emb))
            return
        q, a = self._split(batch)
        scores = F.cosine_similarity(q.float(), a.float(), dim=-1)  # (B,)
        self._eval.setdefault(dataloader_idx, []).append(
            (scores.detach().cpu(), batch["labels"].cpu(), batch["qid"].cpu()))

    def _collect(self, idx: int) -> tuple[Tensor, Tensor, Tensor]:
        s, y, q = zip(*self._eval.pop(idx))
        return torch.cat(s), torch.cat(y), torch.cat(q)

    def _eval_sets(self, stage: str) -> list[Any]:
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        return [getattr(dl, "dataset", None) for dl in loaders]

    def _gather(self, key: tuple[int, int], n: int) -> tuple[Tensor, Tensor]:
        world = self.trainer.world_size if self._trainer is not None else 1
        return gather_rows(self._texts.pop(key, []), n, self.encoder.dim, self.device, world, self.all_gather)

    def _start_eval(self, stage: str) -> None:
        self._eval.clear()
        self._texts.clear()
        pools = [ds.pool for ds in self._eval_sets(stage) if isinstance(ds, EvalTexts) and ds.pool is not None]
        self._pool_key = (weights_fingerprint(self.encoder), id(pools[0])) if pools else None

    def _pool_cached(self) -> bool:
        return self._pool_key is not None and self._pool_cache is not None and self._pool_cache[0] == self._pool_key

    def _pool_embeddings(self, idx: int, n: int) -> tuple[Tensor, Tensor]:
        if self._pool_cached():
            self._texts.pop((idx, POOL), None)
            return self._pool_cache[1], self._pool_cache[2]
        emb, present = self._gather((idx, POOL), n)
        if bool(present.all()):  # only a whole pool is reused (limit_val_batches may cut it)
            self._pool_cache = (self._pool_key, emb, present)
        return emb, present

    def _metrics_all(self, stage: str, thresholds: bool = False) -> list[dict[str, float]]:
        """Metrics of every eval loader, in order; with ``thresholds`` the first loader's (dev)
        classification threshold is applied to the later ones (test)."""
        out: list[dict[str, float]] = []
        self.eval_scores = []  # (scores, labels, qids) per loader, for scores/<split>.tsv; None for a pool split
        pool_emb = pool_present = None
        for idx, ds in enumerate(self._eval_sets(stage)):
            threshold = out[0].get("threshold") if thresholds and out else None
            if not isinstance(ds, EvalTexts) or ds.pool is None:
                if isinstance(ds, EvalTexts):
                    s, y, q = split_scores(ds.table, *self._gather((idx, SPLIT), len(ds.table.texts)))
                else:  # a loader of pair batches: the pairwise path
                    s, y, q = self._collect(idx)
                self.eval_scores.append((s, y, q))
                out.append(task_metrics(self.task_type, s, y, q, positive_threshold=self.positive_threshold,
                                        threshold=threshold))
                continue
            self.eval_scores.append(None)
            emb, present = self._gather((idx, SPLIT), len(ds.table.texts))
            if ds.with_pool or pool_emb is None:  # the pool is embedded once per evaluation (first loader)
                pool_emb, pool_present = self._pool_embeddings(idx, len(ds.pool))
            out.append(pool_split_metrics(ds.table, ds.pool, emb, present, pool_emb, pool_present,
                                          self.positive_threshold))
        self._texts.clear()
        self._eval.clear()
        return out

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_validation_epoch_start(self) -> None:
        self._start_eval("val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._eval.clear()
            self._texts.clear()
            return
        sets = self._eval_sets("val")
        if not sets or (not isinstance(sets[0], EvalTexts) and 0 not in self._eval):
            self._eval.clear()
            return
        # Every rank holds every split embedding after the gather: the metrics are the same on all ranks,
        # so no cross-rank reduction is needed (and ModelCheckpoint sees the value on every rank).
        m = self._metrics_all("val")[0]
        self.log_dict({f"val/{k}": float(v) for k, v in m.items()}, sync_dist=False, rank_zero_only=False)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_test_epoch_start(self) -> None:
        self._start_eval("test")

    def on_test_epoch_end(self) -> None:
        # Dev first: its classification threshold is applied unchanged to test.
        dev, test = self._metrics_all("test", thresholds=True)[:2]
        self.test_results = {**{f"dev/{k}": float(v) for k, v in dev.items()},
                             **{f"test/{k}": float(v) for k, v in test.items()}}
        clean = {k: v for k, v in self.test_results.items() if math.isfinite(v)}
        self.log_dict(clean, sync_dist=False)
