"""Logging that survives resumes and spawned ranks.

- ``CSVLogger``: Lightning's CSV logger deletes an existing ``metrics.csv`` whenever a new writer is
  created, which happens on ``resume`` and, under ``ddp_spawn``, again in every spawned ``fit``/``test``
  (the training and validation rows written by the ranks were lost). This one appends and keeps the
  header's columns.
- ``BatchStatsLogger``: the data module's per-epoch batch statistics (``batching/*``) to the loggers.
- ``RankLogFile``: spawned ranks start a fresh interpreter without Hydra's logging setup, so their log
  lines (epoch batches, best checkpoint, ...) never reached ``run.log``. This callback attaches the
  run's log file in such processes (rank 0 only, so that lines are not doubled).
- ``WandbLogger``: one W&B run per job and stage, offline by default, ended at the end of the stage
  (``finish_loggers``); rank 0 only.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _PytorchWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

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


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` for runs and sweeps: one W&B run per job and stage.

    - ``offline: true`` becomes ``wandb.init(mode="offline")`` instead of Lightning's process-wide
      ``WANDB_MODE=dryrun``, and ``WANDB_MODE=disabled`` (the tests) stays disabled.
    - validation metrics (``val/*``) keep their maximum in the run summary.
    - ``finish(summary, encoder_dir)`` (called by the run at the end of each stage, rank 0 only):
      writes the summary (``metrics.json`` on the last stage's run), optionally uploads the exported
      encoder as a ``model`` artifact (``log_encoder: true``), and ends the W&B run, so that the next
      stage, or the next job of a Hydra multirun in the same process, starts a new one.

    The run passes ``name`` / ``group`` / ``job_type`` / ``tags`` / ``config`` (from the job's Hydra
    overrides and choices, see ``bsc_lightning.run.wandb_run_args``) unless the config sets them.
    """

    def __init__(self, name: str | None = None, save_dir: str | Path = ".", project: str | None = None,
                 offline: bool = False, entity: str | None = None, group: str | None = None,
                 job_type: str | None = None, tags: list[str] | None = None, notes: str | None = None,
                 config: dict[str, Any] | None = None, log_model: bool | str = False, prefix: str = "",
                 checkpoint_name: str | None = None, log_encoder: bool = False, **kwargs: Any) -> None:
        init = {k: v for k, v in {"entity": entity, "group": group, "job_type": job_type, "notes": notes,
                                      "config": config}.items() if v is not None}
        if tags:
            init["tags"] = [str(t)[:64] for t in tags]  # W&B's limit
        super().__init__(name=name, save_dir=save_dir, project=project, offline=offline, log_model=log_model,
                         prefix=prefix, checkpoint_name=checkpoint_name, **init, **kwargs)
        self.log_encoder = log_encoder

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        offline, self._offline = self._offline, False  # no process-wide WANDB_MODE=dryrun
        if offline:
            disabled = os.environ.get("WANDB_MODE", "").lower() == "disabled"
            self._wandb_init.setdefault("mode", "disabled" if disabled else "offline")
        try:
            run = _LightningWandbLogger.experiment.fget(self)
        finally:
            self._offline = offline
        if getattr(run, "define_metric", None) is not None:
            run.define_metric("val/*", step_metric="trainer/global_step", step_sync=True, summary="max")
        return run

    @rank_zero_only
    def finish(self, summary: dict[str, float] | None = None, encoder_dir: str | Path | None = None,
               exit_code: int = 0) -> None:
        """End this stage's W&B run (nothing happens where no run was started)."""
        run = self._experiment
        if run is None:
            return
        try:
            if summary:
                run.summary.update({k: v for k, v in summary.items() if math.isfinite(v)})
            if self.log_encoder and encoder_dir is not None and Path(encoder_dir).is_dir():
                import wandb

                artifact = wandb.Artifact(f"encoder-{run.id}", type="model")
                artifact.add_dir(str(encoder_dir))
                run.log_artifact(artifact)
        finally:
            run.finish(exit_code=exit_code)
            self._experiment = None


def finish_loggers(trainer: L.Trainer | None, summary: dict[str, float] | None = None,
                   encoder_dir: str | Path | None = None, exit_code: int = 0) -> None:
    """End the trainer's W&B runs (ours, or Lightning's logger named directly in the config)."""
    if trainer is None or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.finish(summary, encoder_dir, exit_code)
        elif isinstance(logger, _LightningWandbLogger) and logger._experiment is not None:
            if summary:
                logger.experiment.summary.update({k: v for k, v in summary.items() if math.isfinite(v)})
            logger.experiment.finish(exit_code=exit_code)
            logger._experiment = None
