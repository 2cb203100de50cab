"""Logging that survives resumes and spawned ranks.

- ``CSVLogger``: Lightning's CSV logger deletes an existing ``metrics.csv`` whenever a new writer is
  created, which happens on ``resume`` and, under ``ddp_spawn``, again in every spawned ``fit``/``test``
  (the training and validation rows written by the ranks were lost). This one appends and keeps the
  header's columns.
- ``BatchStatsLogger``: the data module's per-epoch batch statistics (``batching/*``) to the loggers.
- ``RankLogFile``: spawned ranks start a fresh interpreter without Hydra's logging setup, so their log
  lines (epoch batches, best checkpoint, ...) never reached ``run.log``. This callback attaches the
  run's log file in such processes (rank 0 only, so that lines are not doubled).
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _PytorchWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's default job format


class _AppendingWriter(_PytorchWriter):
    """Lightning's writer without the deletion of an existing file; resumes the header's columns."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))


class CSVLogger(_LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` that appends to ``metrics.csv`` instead of replacing it."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class RankLogFile(L.Callback):
    """Send rank 0's log lines to ``path`` in processes where nobody configured logging."""

    def __init__(self, path: str | Path, level: int = logging.INFO) -> None:
        self.path, self.level = Path(path), level

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        root = logging.getLogger()
        if root.handlers or trainer.global_rank != 0:
            return  # the main process: Hydra (or the caller) set up logging already
        handler = logging.FileHandler(self.path, mode="a")
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
        root.setLevel(min(root.level, self.level) if root.level else self.level)

    def state_dict(self) -> dict[str, Any]:
        return {}


class BatchStatsLogger(L.Callback):
    """Log the data module's ``epoch_stats`` (built when the epoch's first batch is drawn) once per epoch.

    A callback rather than the data module writing to the loggers itself: the data module knows how
    batches are built, not where metrics go. After a resume inside an epoch nothing is pending (the
    epoch's order comes from the checkpoint and was logged by the interrupted attempt).
    """

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        dm = trainer.datamodule
        stats = getattr(dm, "epoch_stats", None)
        if not stats:
            return
        dm.epoch_stats = None
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(stats, step=trainer.global_step)
