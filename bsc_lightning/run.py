"""Entry point: `python -m bsc_lightning.run task=stsb loss=symmetric` (Hydra, configs in conf/).

Wires the data module, the module and the trainer from the config; fits (one stage, or two for
sequential training such as BSC then MSE); tests the best checkpoint; writes `metrics.json` and
exports the encoder. No method logic lives here.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from bsc_lightning.data.datamodule import PairDataModule
from bsc_lightning.data.tasks import Task, require_positives
from bsc_lightning.encoder import Encoder, load_tokenizer
from bsc_lightning.export import export_encoder
from bsc_lightning.loggers import RankLogFile
from bsc_lightning.module import BSCModule

log = logging.getLogger(__name__)
# The checkout's conf/ (source or editable install); a wheel carries the same files as bsc_lightning/conf.
_HERE = Path(__file__).resolve().parent
CONF_DIR = str(next((d for d in (_HERE.parent / "conf", _HERE / "conf") if (d / "config.yaml").is_file()),
                    _HERE.parent / "conf"))
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
    ckpt_dir = out / "checkpoints"
    best = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=ckpt_dir, filename=f"{stage}-best", monitor=f"val/{task.main_metric}",
        mode="max", save_top_k=1, save_weights_only=cfg.checkpoint.weights_only, enable_version_counter=False)
    # last.ckpt: the full state (optimiser, scheduler, RNG, position in the epoch) that `resume` continues
    # from; listed after `best` so that it holds the best callback's updated state.
    # Lightning takes epoch and step intervals only one per callback: a second one for the steps.
    last = [L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                                enable_version_counter=False, **every)
            for every in ({"every_n_epochs": 1}, {"every_n_train_steps": cfg.checkpoint.get("every_n_steps")})
            if all(every.values())]
    callbacks: list[Any] = [best, *last, RankLogFile(out / "run.log")]
    callbacks += [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
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


class RunDirError(RuntimeError):
    """The run directory holds an earlier run that this one would overwrite."""


def check_run_dir(out: Path, resume: Any) -> Path | None:
    """The checkpoint to resume from (None: a fresh run); refuses to overwrite an earlier run.

    ``resume``: null/false (fresh run: the folder must hold no checkpoint, log or metrics), true
    (continue from ``<out>/checkpoints/last.ckpt``) or a checkpoint path.
    """
    last = out / "checkpoints" / "last.ckpt"
    if resume in (None, False):
        earlier = [p.name for p in (out / "metrics.json", out / "checkpoints", out / "logs", out / "wandb")
                   if p.exists() and (p.is_file() or any(p.iterdir()))]
        if earlier:
            raise RunDirError(f"{out} already holds a run ({', '.join(earlier)}): continue it with resume=true, "
                              "or start a new one in another folder (hydra.run.dir=...)")
        return None
    path = last if resume is True else Path(str(resume)).expanduser()
    if not path.is_file():
        raise RunDirError(f"resume={resume}: no checkpoint at {path} (a run saves checkpoints/last.ckpt at "
                          "every epoch end and every checkpoint.every_n_steps steps)")
    return path


def _stage_of(ckpt: Path) -> str:
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    return (state.get("bsc") or {}).get("stage", "stage1")


def _best_score(callback: L.pytorch.callbacks.ModelCheckpoint) -> float | None:
    """The best dev score; read back from the checkpoint when spawned ranks kept it to themselves."""
    score = callback.best_model_score
    if score is None and callback.best_model_path:
        states = torch.load(callback.best_model_path, map_location="cpu", weights_only=True)["callbacks"]
        score = next((s.get("best_model_score") for k, s in states.items()
                      if k.startswith("ModelCheckpoint") and s.get("best_model_score") is not None), None)
    return None if score is None else float(score)


def _write_atomic(path: Path, text: str) -> None:
    """Write then rename: a killed run never leaves a half-written metrics.json or config.yaml."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_positives(module: BSCModule, dm: PairDataModule, task: Task) -> None:
    """A contrastive loss with no positive pair trains at loss 0 all run: stop before training."""
    losses = [module.loss, getattr(module.loss, "bsc", None)]
    if any(getattr(m, "needs_positives", False) for m in losses):
        require_positives(dm.train_table, task.positive_threshold, type(module.loss).__name__)


def train(cfg: DictConfig, out: Path) -> dict[str, float]:
    """Fit (and optionally a second stage), test the best checkpoint, write metrics and the encoder.

    ``cfg.resume`` continues an interrupted run from its last checkpoint, in the stage it stopped in.
    """
    out.mkdir(parents=True, exist_ok=True)
    resume_from = check_run_dir(out, cfg.get("resume"))
    if resume_from is not None and (out / "metrics.json").is_file():
        log.info("%s is finished; its metrics.json is kept", out)
        return json.loads((out / "metrics.json").read_text())
    L.seed_everything(cfg.seed, workers=True)
    tokenizer = load_tokenizer(cfg.encoder.name_or_path)
    dm = build_datamodule(cfg, tokenizer)
    dm.setup("fit")  # read and validate the data before any model is built
    task = dm.task
    enc = cfg.encoder
    encoder = Encoder(enc.name_or_path, pooling=enc.pooling, gradient_checkpointing=enc.gradient_checkpointing,
                      attn_implementation=enc.get("attn_implementation"), compile=enc.get("compile", False))
    stages = [("stage1", cfg.loss, cfg.trainer.max_epochs)]
    if cfg.get("stage2"):
        stages.append(("stage2", cfg.stage2.loss, cfg.stage2.max_epochs))
    names = [s[0] for s in stages]
    resume_stage = _stage_of(resume_from) if resume_from is not None else None
    if resume_stage is not None and resume_stage not in names:
        raise RunDirError(f"resume: the checkpoint {resume_from} is of {resume_stage}, which this config lacks")
    module = build_module(cfg, cfg.loss, task, encoder)
    check_positives(module, dm, task)
    best = None
    for i, (stage, loss_cfg, epochs) in enumerate(stages):
        resuming = stage == resume_stage
        if resume_stage is not None and i < names.index(resume_stage):  # finished before the interruption
            best = str(out / "checkpoints" / f"{stage}-best.ckpt")
            continue
        if i > 0:
            module = build_module(cfg, loss_cfg, task, module.encoder)
            check_positives(module, dm, task)
            if not resuming:  # the next stage starts from the previous stage's best weights, fresh optimiser
                state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
                module.encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items()
                                                if k.startswith("encoder.")})
        module.stage = stage
        trainer = build_trainer(cfg, out, task, stage, epochs)
        dm.check_batch_size(trainer.world_size)
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from if resuming else None, weights_only=True)
        best = trainer.checkpoint_callback.best_model_path or None
        log.info("%s best checkpoint: %s (%s)", stage, best, _best_score(trainer.checkpoint_callback))
    trainer.test(module, datamodule=dm, ckpt_path=best, weights_only=True)
    metrics = dict(module.test_results) or {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("dev/", "test/"))}
    if trainer.is_global_zero:
        _write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        if cfg.export:
            export_encoder(module.encoder, tokenizer, out / "encoder", cfg.encoder.max_length)
        # last: a metrics.json marks a finished run
        _write_atomic(out / "metrics.json", json.dumps(dict(sorted(metrics.items())), indent=2))
        log.info("metrics: %s", json.dumps(metrics))
    return metrics


def quiet_third_party() -> None:
    """Keep the console to the progress bar, our per-epoch summaries and real problems: no transformers
    load report (the missing pooler is expected) or weight-loading bar, no Lightning device banner or
    advertisement, no deprecation warnings from inside libraries."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_third_party()
    metrics = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    return metrics.get(f"test/{cfg.get('optimize_metric') or ''}")


if __name__ == "__main__":
    main()
