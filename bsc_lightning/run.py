"""Entry point: `python -m bsc_lightning.run task=stsb loss=symmetric` (Hydra, configs in conf/).

Orchestration only: every object is instantiated from the config node that names it (`_target_`),
with the runtime objects passed in; fits (one stage, or two for sequential training such as BSC then
MSE); tests the best checkpoint; writes `metrics.json` and exports the encoder. With ``train=false`` it
only evaluates the encoder as it is (zero-shot) on dev and test. Under a sweeper (``-m``, Optuna) the
job returns a DEV metric (``optimize_metric``, default ``dev/<task.main_metric>``).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Iterable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from bsc_lightning import CONF_DIR
from bsc_lightning.choose import run_variants
from bsc_lightning.data.datamodule import PairDataModule
from bsc_lightning.data.tasks import DataError, require_positives
from bsc_lightning.encoder import load_tokenizer
from bsc_lightning.export import export_encoder
from bsc_lightning.interpolation import check_alphas, choose_alpha, snapshot
from bsc_lightning.loggers import BatchStatsLogger, RankLogFile, finish_loggers
from bsc_lightning.module import BSCModule
from bsc_lightning.rundir import RunDirError, best_score, check_run_dir, encoder_state, stage_of, write_atomic
from bsc_lightning.significance import write_scores
from bsc_lightning.soup import average, greedy, load_weights

log = logging.getLogger(__name__)
__all__ = ["CONF_DIR", "ConfigError", "RunDirError", "build", "main", "objective_key", "settings_name", "train"]


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


def build_trainer(cfg: DictConfig, out: Path, stage: str, max_epochs: int, fit: bool = True) -> L.Trainer:
    """The stage's trainer; ``fit=False`` (``train=false``): no checkpoints, only evaluation."""
    callbacks: list[Any] = []
    if fit:
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
        callbacks += [best, *last, BatchStatsLogger()]
    callbacks.append(RankLogFile(out / "run.log"))
    callbacks += [build(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items()]
    loggers: list[Any] = []
    if cfg.get("logger"):
        target = cfg.logger.get("_target_", "")
        if "CSVLogger" in target:  # CSV: one folder per stage
            extra: dict[str, Any] = {"version": stage}
        elif "Wandb" in target:  # W&B: one run per job and stage, named by the job's settings
            extra = {k: v for k, v in wandb_run_args(cfg, out, stage).items() if cfg.logger.get(k) is None}
        else:
            extra = {"name": stage}
        loggers.append(build(cfg.logger, "logger", save_dir=str(out), **extra))
        if fit:
            callbacks.append(L.pytorch.callbacks.LearningRateMonitor(logging_interval="step"))
    return build(cfg.trainer, "trainer", max_epochs=max_epochs, callbacks=callbacks, logger=loggers or False,
                 default_root_dir=str(out))


# ------------------------------------------------------------------------------ sweeps: names, objective
def settings_name(overrides: Iterable[str], exclude: Iterable[str] = (), max_chars: int = 200) -> str:
    """A job's settings as one flat folder / run name: ``loss=combo,seed=1``.

    ``overrides`` are the job's command-line overrides (``hydra.overrides.task``); a key that matches a
    pattern of ``exclude`` (``fnmatch``: ``trainer``, ``trainer.*``, ``data.limit_*``) is left out: paths,
    hardware, logging. Sorted; every character outside ``[A-Za-z0-9._=,+@~%-]`` (``/`` above all, which
    would nest folders) becomes ``-``; a long name is cut and ends with a hash of the full one.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    patterns = [str(p) for p in exclude]
    items = []
    for o in OverridesParser.create().parse_overrides([str(x) for x in overrides]):
        key = o.key_or_group if o.package is None else f"{o.key_or_group}@{o.package}"
        if any(fnmatch(key, p) or fnmatch(o.key_or_group, p) for p in patterns):
            continue
        value = "" if o.is_delete() and o.value() is None else o.get_value_element_as_str()
        items.append(f"{'~' if o.is_delete() else ''}{key}={value}")
    name = re.sub(r"[^A-Za-z0-9._=,+@~%-]", "-", ",".join(sorted(items)))
    if len(name) > max_chars:
        name = f"{name[:max_chars - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def _sweep_subdir(num: Any, overrides: Any, exclude: Any) -> str:
    """``hydra.sweep.subdir``: ``<job number>_<settings>`` (``<job number>`` alone without settings)."""
    name = settings_name(overrides or [], exclude or [])
    return f"{num}_{name}" if name else str(num)


OmegaConf.register_new_resolver("bsc_sweep_subdir", _sweep_subdir, replace=True)


def _hydra() -> Any:
    """The job's HydraConfig, or None outside ``@hydra.main`` (tests, notebooks)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def wandb_run_args(cfg: DictConfig, out: Path, stage: str) -> dict[str, Any]:
    """W&B ``name`` / ``group`` / ``job_type`` / ``tags`` / ``config`` of one job's stage.

    name: the job's settings (its overrides as in the sweep folder's name), else ``task-loss-seed``, with
    ``/<stage>`` for a sequential run; group: the sweep folder's name under ``-m``, else the experiment,
    else the run folder's name; job_type: the stage; tags: ``task=``, ``loss=``, ``shuffle=``,
    ``encoder=`` (Hydra's choices where known); config: the resolved run config plus ``setting`` (the name
    without the seed: the key a dashboard groups seeds by)."""
    from hydra.types import RunMode

    hc = _hydra()
    choices = dict(hc.runtime.choices) if hc is not None else {}

    def choice(group: str, fallback: Any) -> str:
        value = choices.get(group)
        return str(value) if value is not None else str(fallback)

    loss = choice("loss", str(cfg.loss.get("_target_", "loss")).rsplit(".", 1)[-1])
    task = choice("task", cfg.task.name)
    name = setting = ""
    if hc is not None:
        exclude = list(hc.job.config.override_dirname.exclude_keys)
        name = settings_name(hc.overrides.task, exclude)
        setting = settings_name(hc.overrides.task, [*exclude, "seed"])
    name = name or f"{task}-{loss}-seed{cfg.seed}"
    setting = setting or f"{task}-{loss}"
    if cfg.get("stage2") and stage != "zero_shot":  # sequential: one run per stage
        name = f"{name}/{stage}"
    if out.parent.name == "choose":  # a variant of a `choose` run (bsc_lightning.choose): one run per variant
        name, setting = f"{name}/{out.name}", f"{setting}/{out.name}"
    if hc is not None and hc.mode == RunMode.MULTIRUN:
        group = Path(hc.sweep.dir).name
    elif choices.get("experiment"):
        group = str(choices["experiment"])
    else:
        group = out.resolve().name
    tags = [f"task={task}", f"loss={loss}",
            f"shuffle={choice('shuffle', str(cfg.shuffle.get('_target_', '')).rsplit('.', 1)[-1])}",
            f"encoder={choice('encoder', Path(str(cfg.encoder.name_or_path)).name)}"]
    if cfg.get("stage2"):
        tags.append(f"stage2.loss={choice('loss@stage2.loss', str(cfg.stage2.loss.get('_target_', '')).rsplit('.', 1)[-1])}")
    if choices.get("experiment"):
        tags.append(f"experiment={choices['experiment']}")
    # ``setting``: the job's settings without the seed, what a dashboard groups seeds by (bsc_lightning.dashboard)
    config = {**OmegaConf.to_container(cfg, resolve=True), "setting": setting}
    return {"name": name, "group": group, "job_type": stage, "tags": tags, "config": config}


def objective_key(cfg: DictConfig) -> str:
    """The metrics.json key a sweeper optimises: ``optimize_metric`` (``spearman`` or ``dev/spearman``),
    default ``dev/<task.main_metric>``. Never a test metric: choosing settings on test leaks it."""
    name = str(cfg.get("optimize_metric") or cfg.task.main_metric)
    if name.startswith(("test/", "val/")):
        raise ConfigError(f"optimize_metric={name}: sweepers get a dev metric (settings chosen on the test "
                          f"split overfit it): use dev/{name.split('/', 1)[1]} or {name.split('/', 1)[1]}")
    return name if name.startswith("dev/") else f"dev/{name}"


def check_recipe(cfg: DictConfig) -> None:
    """A recipe (experiment=recipe_*) was chosen for one task type; on another it is untested: say which fits."""
    kind = OmegaConf.select(cfg, "recipe.task_type")
    if kind is not None and kind != cfg.task.type:
        raise ConfigError(f"experiment=recipe_{kind} is the recipe for {kind} tasks, but task={cfg.task.name} is "
                          f"{cfg.task.type}: use experiment=recipe_{cfg.task.type} (or set task.type if the task "
                          "config is wrong)")


def check_positives(module: BSCModule, dm: PairDataModule) -> None:
    """A contrastive loss with no positive pair trains at loss 0 all run: stop before training."""
    losses = [module.loss, getattr(module.loss, "bsc", None)]
    if any(getattr(m, "needs_positives", False) for m in losses):
        require_positives(dm.train_table, dm.task.positive_threshold, type(module.loss).__name__)


def train(cfg: DictConfig, out: Path) -> dict[str, float]:
    """Fit (and optionally a second stage), test the best checkpoint, write metrics and the encoder.

    ``cfg.resume`` continues an interrupted run from its last checkpoint, in the stage it stopped in.
    ``cfg.train=false`` evaluates the encoder as it is (see ``evaluate``). ``cfg.choose`` trains variants
    of the run and keeps the best on dev (bsc_lightning.choose).
    """
    check_recipe(cfg)
    alphas = check_alphas(cfg.interpolate) if cfg.get("interpolate") is not None else None
    if cfg.get("choose"):  # each variant is a run of its own in out/choose/<name>; the best on dev is kept
        return run_variants(cfg, out, train, soup)
    if cfg.get("soup"):
        raise ConfigError("soup=true averages the variants of `choose` (bsc_lightning.soup); this run has none")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("resume") and (out / "metrics.json").is_file():  # also when checkpoint.keep=false removed them
        log.info("%s is finished; its metrics.json is kept", out)
        return json.loads((out / "metrics.json").read_text())
    resume_from = check_run_dir(out, cfg.get("resume"))
    tokenizer, dm = prepare(cfg)
    encoder = build(cfg.encoder, "encoder")
    if not cfg.get("train", True):
        return evaluate(cfg, out, dm, build_module(cfg, "loss", encoder))
    stages = [("stage1", "loss", cfg.trainer.max_epochs)]
    if cfg.get("stage2"):
        stages.append(("stage2", "stage2.loss", cfg.stage2.max_epochs))
    names = [s[0] for s in stages]
    resume_stage = stage_of(resume_from) if resume_from is not None else None
    if resume_stage is not None and resume_stage not in names:
        raise RunDirError(f"resume: the checkpoint {resume_from} is of {resume_stage}, which this config lacks")
    module = build_module(cfg, "loss", encoder)
    check_positives(module, dm)
    base = snapshot(module.encoder) if alphas else None  # θ0 of `interpolate`: the pretrained encoder
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
                module.encoder.load_state_dict(encoder_state(best))
        module.stage = stage
        dm.embedder = module.encoder.encode_ids  # example / clusters embed with the weights being trained
        trainer = build_trainer(cfg, out, stage, epochs)
        try:
            dm.check_batch_size(trainer.world_size)
            trainer.fit(module, datamodule=dm, ckpt_path=resume_from if resuming else None, weights_only=True)
            best = trainer.checkpoint_callback.best_model_path or None
            log.info("%s best checkpoint: %s (%s)", stage, best, best_score(trainer.checkpoint_callback))
            if i == len(stages) - 1:
                return finish(cfg, out, trainer, module, dm, tokenizer, ckpt_path=best, base=base, alphas=alphas)
        except BaseException:
            finish_loggers(trainer, exit_code=1)  # the next stage or sweep job starts a new W&B run
            raise
        finish_loggers(trainer)  # one W&B run per stage
    raise AssertionError("unreachable: the last stage returns")


def prepare(cfg: DictConfig) -> tuple[Any, PairDataModule]:
    """Seed, then the tokenizer and the data module, set up: the data is read and checked before any model."""
    L.seed_everything(cfg.seed, workers=True)
    tokenizer = load_tokenizer(cfg.encoder.name_or_path)
    dm = build(cfg.data, "data", task=build(cfg.task, "task"), tokenizer=tokenizer,
               strategy=build(cfg.shuffle, "shuffle"))
    dm.setup("fit")
    return tokenizer, dm


def soup(cfg: DictConfig, out: Path, ingredients: dict[str, Path]) -> tuple[dict[str, float] | None,
                                                                         dict[str, float]]:
    """The greedy soup of ``ingredients`` (variant → its exported encoder, best dev score first;
    bsc_lightning.soup), tested in ``out`` when two or more join it (None: the best variant alone stays).
    Returns that and the dev score of every soup tried; only dev is read until the members are fixed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # rank 0 wrote the variants' encoders
    tokenizer, dm = prepare(cfg)
    module = build_module(cfg, "loss", build(cfg.encoder, "encoder"))
    module.stage = "soup"
    states = {name: load_weights(path) for name, path in ingredients.items()}
    trainer = build_trainer(cfg, out, "soup", 0, fit=False)

    def dev(members: list[str]) -> float:
        module.encoder.model.load_state_dict(average([states[m] for m in members]))
        trainer.validate(module, datamodule=dm, verbose=False)
        return float(trainer.callback_metrics[f"val/{cfg.task.main_metric}"])

    try:
        members, tried = greedy(list(states), dev)
        if len(members) < 2:
            finish_loggers(trainer)
            return None, tried
        module.encoder.model.load_state_dict(average([states[m] for m in members]))
        extra = {f"soup/{name}": float(name in members) for name in states}
        return finish(cfg, out, trainer, module, dm, tokenizer, ckpt_path=None, extra=extra), tried
    except BaseException:
        finish_loggers(trainer, exit_code=1)
        raise


def evaluate(cfg: DictConfig, out: Path, dm: PairDataModule, module: BSCModule) -> dict[str, float]:
    """``train=false``: the encoder as it is (zero-shot) on dev and test, the same metrics.json keys as a
    trained run (classification: threshold chosen on dev, applied to test); no checkpoint, no export."""
    module.stage = "zero_shot"
    trainer = build_trainer(cfg, out, "zero_shot", 0, fit=False)
    try:
        return finish(cfg, out, trainer, module, dm, None, ckpt_path=None)
    except BaseException:
        finish_loggers(trainer, exit_code=1)
        raise


def finish(cfg: DictConfig, out: Path, trainer: L.Trainer, module: BSCModule, dm: PairDataModule,
           tokenizer: Any, ckpt_path: str | None, base: dict[str, torch.Tensor] | None = None,
           alphas: list[float] | None = None, extra: dict[str, float] | None = None) -> dict[str, float]:
    """Test (dev and test splits), write config.yaml, the encoder (when trained) and metrics.json, end
    the loggers' runs with metrics.json as their summary. With ``base`` (θ0) and ``alphas``, the best
    checkpoint is first interpolated with θ0 at the α chosen on dev (bsc_lightning.interpolation). ``extra``: more
    keys for metrics.json (a soup's members)."""
    chosen: dict[str, float] = {}
    trained = ckpt_path is not None  # not zero-shot: there are checkpoints (which checkpoint.keep=false deletes)
    if base is not None and alphas:
        if ckpt_path:
            module.encoder.load_state_dict(encoder_state(ckpt_path))
        alpha, scores = choose_alpha(trainer, module, dm, base, alphas, cfg.task.main_metric)
        ckpt_path = None  # test these weights, not the checkpoint's
        chosen = {"interpolate/alpha": alpha,
                  **{f"interpolate/dev_{cfg.task.main_metric}@{a:g}": v for a, v in scores.items()}}
    trainer.test(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    metrics = dict(module.test_results) or {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("dev/", "test/"))}
    metrics.update(chosen)
    metrics.update(extra or {})
    encoder_dir = None
    if trainer.is_global_zero:
        write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        if cfg.export and tokenizer is not None:
            encoder_dir = out / "encoder"
            export_encoder(module.encoder, tokenizer, encoder_dir, module.encoder.max_length)
        for split, scored in zip(("dev", "test"), module.eval_scores):  # for bsc_lightning.significance
            if scored is not None:
                write_scores(out / "scores", split, *scored)
        # last: a metrics.json marks a finished run
        write_atomic(out / "metrics.json", json.dumps(dict(sorted(metrics.items())), indent=2))
        log.info("metrics: %s", json.dumps(metrics))
        if not cfg.checkpoint.get("keep", True) and trained:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
    finish_loggers(trainer, summary=metrics, encoder_dir=encoder_dir)
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
    key = objective_key(cfg)  # a bad optimize_metric stops before training
    metrics = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    if key not in metrics:
        raise ConfigError(f"optimize_metric: {key} is not in metrics.json (it has {', '.join(sorted(metrics))})")
    return metrics[key]  # to the sweeper (Optuna maximises it: conf/sweep/optuna/stsb.yaml)


if __name__ == "__main__":
    main()
