"""Entry point: `python -m bsc_lightning.run task=stsb loss=symmetric` (Hydra, configs in conf/).

Wires the data module, the module and the trainer from the config; fits (one stage, or two for
sequential training such as BSC then MSE); tests the best checkpoint; writes `metrics.json` and
exports the encoder. No method logic lives here.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from bsc_lightning.data.datamodule import PairDataModule
from bsc_lightning.data.tasks import Task
from bsc_lightning.encoder import Encoder, load_tokenizer
from bsc_lightning.export import export_encoder
from bsc_lightning.module import BSCModule

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
_NOT_LOSS_ARGS = ("name", "cache_chunk_size")


def build_loss(loss_cfg: DictConfig, task: Task) -> tuple[torch.nn.Module, int | None]:
    """Instantiate the loss; a null `positive_threshold` anywhere inside takes the task's."""
    spec = OmegaConf.to_container(loss_cfg, resolve=True)
    cache = spec.get("cache_chunk_size")

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: fill(v) for k, v in node.items() if k not in _NOT_LOSS_ARGS}
            if "positive_threshold" in node and node["positive_threshold"] is None:
                node["positive_threshold"] = task.positive_threshold
        return node

    return hydra.utils.instantiate(fill(spec)), cache


def build_datamodule(cfg: DictConfig, tokenizer) -> PairDataModule:
    d = cfg.data
    return PairDataModule(
        cfg.task.name, tokenizer,
        task_options={"data_dir": cfg.task.get("data_dir"), **OmegaConf.to_container(cfg.task.options)},
        max_length=cfg.encoder.max_length, batch_size=d.batch_size, eval_batch_size=d.eval_batch_size,
        shuffle=cfg.shuffle.name, shuffle_options=OmegaConf.to_container(cfg.shuffle.options),
        seed=cfg.seed, chunk_tokens=d.chunk_tokens, chunk_rows=cfg.loss.get("cache_chunk_size"),
        length_aware=d.length_aware, num_workers=d.num_workers, pin_memory=d.pin_memory,
        limit_train=d.limit_train, limit_eval=d.limit_eval, train_positives_only=d.train_positives_only,
        drop_last=d.drop_last, cache_dir=d.cache_dir)


def build_module(cfg: DictConfig, loss_cfg: DictConfig, task: Task, encoder: Encoder) -> BSCModule:
    loss, cache = build_loss(loss_cfg, task)
    o = cfg.optim
    return BSCModule(encoder, loss, task_type=task.type, positive_threshold=task.positive_threshold,
                     main_metric=task.main_metric, optimizer=hydra.utils.instantiate(o.optimizer),
                     warmup_ratio=o.warmup_ratio, temperature_lr=o.temperature_lr, grad_clip=o.grad_clip,
                     cache_chunk_size=cache, nan_check_every=o.nan_check_every)


def build_trainer(cfg: DictConfig, out: Path, task: Task, stage: str, max_epochs: int) -> L.Trainer:
    ckpt = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=out / "checkpoints", filename=f"{stage}-best", monitor=f"val/{task.main_metric}",
        mode="max", save_top_k=1, save_weights_only=cfg.checkpoint.weights_only, enable_version_counter=False)
    callbacks: list[Any] = [ckpt] + [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers: list[Any] = []
    if cfg.get("logger"):
        # CSV: one folder per stage; W&B names its runs itself (a fixed version would be a run id).
        extra = {"version": stage} if "CSVLogger" in cfg.logger.get("_target_", "") else {"name": stage}
        loggers.append(hydra.utils.instantiate(cfg.logger, save_dir=str(out), **extra))
        callbacks.append(L.pytorch.callbacks.LearningRateMonitor(logging_interval="step"))
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs.pop("_target_", None)
    kwargs["max_epochs"] = max_epochs
    return L.Trainer(**kwargs, callbacks=callbacks, logger=loggers or False, default_root_dir=str(out))


def train(cfg: DictConfig, out: Path) -> dict[str, float]:
    """Fit (and optionally a second stage), test the best checkpoint, write metrics and the encoder."""
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    tokenizer = load_tokenizer(cfg.encoder.name_or_path)
    dm = build_datamodule(cfg, tokenizer)
    dm.setup("fit")  # read and validate the data before any model is built
    task = dm.task
    enc = cfg.encoder
    encoder = Encoder(enc.name_or_path, pooling=enc.pooling, gradient_checkpointing=enc.gradient_checkpointing,
                      attn_implementation=enc.get("attn_implementation"), compile=enc.get("compile", False))
    module = build_module(cfg, cfg.loss, task, encoder)
    stages = [("stage1", cfg.loss, cfg.trainer.max_epochs)]
    if cfg.get("stage2"):
        stages.append(("stage2", cfg.stage2.loss, cfg.stage2.max_epochs))
    best = None
    for i, (stage, loss_cfg, epochs) in enumerate(stages):
        if i > 0:  # the next stage starts from the previous stage's best weights, with a fresh optimiser
            module.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"],
                                   strict=False)
            module = build_module(cfg, loss_cfg, task, module.encoder)
        trainer = build_trainer(cfg, out, task, stage, epochs)
        dm.check_batch_size(trainer.world_size)
        trainer.fit(module, datamodule=dm)
        best = trainer.checkpoint_callback.best_model_path or None
        log.info("%s best checkpoint: %s (%s)", stage, best, trainer.checkpoint_callback.best_model_score)
    trainer.test(module, datamodule=dm, ckpt_path=best)
    metrics = dict(module.test_results) or {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("dev/", "test/"))}
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(dict(sorted(metrics.items())), indent=2))
        OmegaConf.save(cfg, out / "config.yaml", resolve=True)
        if cfg.export:
            export_encoder(module.encoder, tokenizer, out / "encoder", cfg.encoder.max_length)
        log.info("metrics: %s", json.dumps(metrics))
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    metrics = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    return metrics.get(f"test/{cfg.get('optimize_metric') or ''}")


if __name__ == "__main__":
    main()
