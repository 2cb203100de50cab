"""Entry point: `python -m bsc_lightning.run task=stsb loss=symmetric` (Hydra, configs in conf/).

Orchestration only: every object is instantiated from the config node that names it (`_target_`),
with the runtime objects passed in; fits (one stage, or two for sequential training such as BSC then
MSE); tests the best checkpoint; writes `metrics.json` and exports the encoder.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from bsc_lightning import CONF_DIR
from bsc_lightning.data.datamodule import PairDataModule
from bsc_lightning.data.tasks import DataError, require_positives
from bsc_lightning.encoder import load_tokenizer
from bsc_lightning.export import export_encoder
from bsc_lightning.loggers import BatchStatsLogger, RankLogFile
from bsc_lightning.module import BSCModule
from bsc_lightning.rundir import RunDirError, best_score, check_run_dir, stage_of, write_atomic

log = logging.getLogger(__name__)
__all__ = ["CONF_DIR", "ConfigError", "RunDirError", "build", "main", "train"]


class ConfigError(ValueError):
    """A config node that does not fit the class it names; the message names the key."""


def build(node: DictConfig, key: str, **runtime: Any) -> Any:
    """``hydra.utils.instantiate(node)`` called with the runtime objects (data, models), which stay out of
    OmegaConf. A key the class does not take becomes one line that names it (``loss.bsc.temprature:
    not an option of ...``), also inside nodes built later (``_partial_``, e.g. the optimiser); the
    classes' own value checks get the node's key in front (``loss.bsc: temperature must be > 0``)."""
    _check_partial_nodes(node, key)
    try:
        factory = hydra.utils.instantiate(node, _partial_=True)
    except InstantiationException as e:
        raise _config_error(e, key) from None
    try:
        return factory(**runtime)
    except TypeError as e:
        raise _config_error(e, key, getattr(factory, "func", factory)) from None


def _check_partial_nodes(node: Any, key: str) -> None:
    """Nested ``_partial_`` nodes are only called at fit time: check their keys against the target now."""
    if not isinstance(node, DictConfig):
        return
    for k, child in node.items_ex(resolve=False):
        if isinstance(child, DictConfig):
            _check_partial_nodes(child, f"{key}.{k}")
    if node.get("_partial_") and "_target_" in node and key.count(".") > 0:
        target = hydra.utils.get_method(node._target_) if "." in node._target_ else None
        params = inspect.signature(target).parameters if target is not None else {}
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        for k in node:
            if not str(k).startswith("_") and k not in params:
                raise ConfigError(f"{key}.{k}: not an option of {node._target_}; check the spelling in conf/")


def _config_error(e: Exception, key: str, target: Any = None) -> ValueError:
    cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ is not None else e
    sub = re.search(r"full_key: (\S+)", str(e))
    where = key if not sub else sub.group(1) if sub.group(1).startswith(key) else f"{key}.{sub.group(1)}"
    text = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    if isinstance(cause, DataError):  # the task readers' errors name the file or key themselves
        return cause
    if isinstance(cause, ValueError):  # a class's own check on a value: say which node it is
        return type(cause)(text if text.startswith(where) else f"{where}: {text}")
    name = getattr(target, "__qualname__", None) or (re.search(r"target '([^']+)'", str(e)) or [None, "?"])[1]
    bad = re.search(r"unexpected keyword argument '(\w+)'", text)
    if bad:
        return ConfigError(f"{where}.{bad.group(1)}: not an option of {name}; check the spelling in conf/")
    return ConfigError(f"{where}: {text}")


def build_module(cfg: DictConfig, loss_key: str, encoder: torch.nn.Module) -> BSCModule:
    loss = build(OmegaConf.select(cfg, loss_key), loss_key)
    return build(cfg.model, "model", encoder=encoder, loss=loss)


def build_trainer(cfg: DictConfig, out: Path, stage: str, max_epochs: int) -> L.Trainer:
    ckpt_dir = out / "checkpoints"
    best = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=ckpt_dir, filename=f"{stage}-best", monitor=f"val/{cfg.task.main_metric}",
        mode="max", save_top_k=1, save_weights_only=cfg.checkpoint.weights_only, enable_version_counter=False)
    # last.ckpt: the full state (optimiser, scheduler, RNG, position in the epoch) that `resume` continues
    # from; listed after `best` so that it holds the best callback's updated state.
    # Lightning takes epoch and step intervals only one per callback: a second one for the steps.
    last = [L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                                enable_version_counter=False, **every)
            for every in ({"every_n_epochs": 1}, {"every_n_train_steps": cfg.checkpoint.get("every_n_steps")})
            if all(every.values())]
    callbacks: list[Any] = [best, *last, BatchStatsLogger(), RankLogFile(out / "run.log")]
    callbacks += [build(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items()]
    loggers: list[Any] = []
    if cfg.get("logger"):
        # CSV: one folder per stage; W&B names its runs itself (a fixed version would be a run id).
        extra = {"version": stage} if "CSVLogger" in cfg.logger.get("_target_", "") else {"name": stage}
        loggers.append(build(cfg.logger, "logger", save_dir=str(out), **extra))
        callbacks.append(L.pytorch.callbacks.LearningRateMonitor(logging_interval="step"))
    return build(cfg.trainer, "trainer", max_epochs=max_epochs, callbacks=callbacks, logger=loggers or False,
                 default_root_dir=str(out))


def check_positives(module: BSCModule, dm: PairDataModule) -> None:
    """A contrastive loss with no positive pair trains at loss 0 all run: stop before training."""
    losses = [module.loss, getattr(module.loss, "bsc", None)]
    if any(getattr(m, "needs_positives", False) for m in losses):
        require_positives(dm.train_table, dm.task.positive_threshold, type(module.loss).__name__)


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
    dm = build(cfg.data, "data", task=build(cfg.task, "task"), tokenizer=tokenizer,
               strategy=build(cfg.shuffle, "shuffle"))
    dm.setup("fit")  # read and validate the data before any model is built
    encoder = build(cfg.encoder, "encoder")
    stages = [("stage1", "loss", cfg.trainer.max_epochs)]
    if cfg.get("stage2"):
        stages.append(("stage2", "stage2.loss", cfg.stage2.max_epochs))
    names = [s[0] for s in stages]
    resume_stage = stage_of(resume_from) if resume_from is not None else None
    if resume_stage is not None and resume_stage not in names:
        raise RunDirError(f"resume: the checkpoint {resume_from} is of {resume_stage}, which this config lacks")
    module = build_module(cfg, "loss", encoder)
    check_positives(module, dm)
    best = None
    for i, (stage, loss_key, epochs) in enumerate(stages):
        resuming = stage == resume_stage
        if resume_stage is not None and i < names.index(resume_stage):  # finished before the interruption
            best = str(out / "checkpoints" / f"{stage}-best.ckpt")
            continue
        if i > 0:
            module = build_module(cfg, loss_key, module.encoder)
            check_positives(module, dm)
            if not resuming:  # the next stage starts from the previous stage's best weights, fresh optimiser
                state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
                module.encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items()
                                                if k.startswith("encoder.")})
        module.stage = stage
        dm.embedder = module.encoder.encode_ids  # example / clusters embed with the weights being trained
        trainer = build_trainer(cfg, out, stage, epochs)
        dm.check_batch_size(trainer.world_size)
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from if resuming else None, weights_only=True)
        best = trainer.checkpoint_callback.best_model_path or None
        log.info("%s best checkpoint: %s (%s)", stage, best, best_score(trainer.checkpoint_callback))
    trainer.test(module, datamodule=dm, ckpt_path=best, weights_only=True)
    metrics = dict(module.test_results) or {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("dev/", "test/"))}
    if trainer.is_global_zero:
        write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        if cfg.export:
            export_encoder(module.encoder, tokenizer, out / "encoder", module.encoder.max_length)
        # last: a metrics.json marks a finished run
        write_atomic(out / "metrics.json", json.dumps(dict(sorted(metrics.items())), indent=2))
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
