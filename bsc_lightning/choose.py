"""Train variants of one run and keep the one with the best dev score.

``choose: {name: {overrides}, ...}`` in the run config (the ranking recipe: its labelled hard negatives, or
positives only in random batches, docs/results.md). Each variant is the run's config merged with its
overrides (a nested mapping; ``{}``: the config as it is; a node whose ``_target_`` the overrides change is
replaced, not merged, as a config group would be: ``shuffle: {_target_: ...RandomShuffle}``), trained, tested
and exported as a run of its own in ``<run dir>/choose/<name>``. The run's metrics.json is that of the variant
with the best ``dev/<task.main_metric>`` (the dev score of the weights it tested; ties: the first listed), plus
``choose/dev_<metric>@<name>`` of every variant and ``choose/<name>`` (1 for the chosen one, else 0: its mean
over seeds is how often it was chosen); the chosen variant's encoder and pair scores are copied to
``<run dir>/encoder`` and ``<run dir>/scores``.
Only dev scores are compared; each variant's own metrics.json holds its test scores, as any run's does.
``soup: true`` adds one more candidate once the variants are done: the greedy soup of their tested weights
(bsc_lightning.soup), kept when two or more variants join it, with ``soup/dev_<metric>@<a+b>`` of every soup tried.
``resume=true`` keeps the variants that finished and continues the one that was interrupted.
"""
from __future__ import annotations

import copy
import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from bsc_lightning.rundir import RunDirError, check_run_dir, write_atomic

log = logging.getLogger(__name__)
Train = Callable[[DictConfig, Path], dict[str, Any]]
Soup = Callable[[DictConfig, Path, dict[str, Path]], tuple[dict[str, Any] | None, dict[str, float]]]


def variant_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """Each variant's full run config (``choose`` removed); ValueError, naming the key, on a bad ``choose``."""
    choose = cfg.choose
    if not isinstance(choose, DictConfig) or len(choose) == 0:
        raise ValueError(f"choose: a mapping of variant names to config overrides ({{name: {{data: ...}}}}), "
                         f"got {OmegaConf.to_container(choose) if isinstance(choose, DictConfig) else choose!r}")
    variants = {}
    for name, overrides in choose.items_ex(resolve=False):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
            raise ValueError(f"choose.{name}: a variant's name is a folder name (letters, digits, _ . -)")
        if overrides is None:
            overrides = OmegaConf.create({})
        if not isinstance(overrides, DictConfig):  # a config error (ValueError), as the run's others
            raise ValueError(f"choose.{name}: a mapping of config overrides ({{}} for the config as it is), "  # noqa: TRY004
                             f"got {overrides!r}")
        if "choose" in overrides or "soup" in overrides:
            raise ValueError(f"choose.{name}: variants do not nest (it sets choose or soup)")
        if name == "soup" and cfg.get("soup"):
            raise ValueError("choose.soup: with soup=true that name is the soup's folder; rename the variant")
        variant = copy.deepcopy(cfg)
        OmegaConf.set_struct(variant, True)  # a key the run config lacks is a typo, not a new setting
        variant.choose = None
        if "soup" in variant:
            variant.soup = False
        _merge(variant, overrides, f"choose.{name}")
        variants[str(name)] = variant
    return variants


def _merge(node: DictConfig, overrides: DictConfig, where: str) -> None:
    for key, value in overrides.items_ex(resolve=False):
        if key not in node.keys():  # `in node` is False for a ??? (missing) value  # noqa: SIM118
            raise ValueError(f"{where}.{key}: not a key of the run config; check the spelling")
        old = node[key]
        if isinstance(value, DictConfig) and isinstance(old, DictConfig) and (
                "_target_" not in value or value.get("_target_") == old.get("_target_")):
            _merge(old, value, f"{where}.{key}")
            continue
        try:
            with open_dict(node):  # a replaced object node brings its own keys
                node[key] = value
        except OmegaConfBaseException as e:
            raise ValueError(f"{where}.{key}: {str(e).splitlines()[0]}") from None


def best_variant(dev_scores: dict[str, float]) -> str:
    """The variant with the best dev score; of tied ones the first listed."""
    return max(dev_scores, key=lambda name: (dev_scores[name], -list(dev_scores).index(name)))


def run_variants(cfg: DictConfig, out: Path, train: Train, soup: Soup | None = None) -> dict[str, Any]:
    """Train every variant of ``cfg.choose`` with ``train`` in ``out/choose/<name>``; keep the best on dev
    (with ``cfg.soup``: of the variants and their greedy soup, made by ``soup``)."""
    variants = variant_configs(cfg)
    souped = bool(cfg.get("soup"))
    if souped and soup is None:
        raise ValueError("soup=true: this caller of run_variants makes no soup")
    resume = cfg.get("resume")
    if resume not in (None, False, True):
        raise RunDirError(f"resume={resume}: a run with choose continues as a whole (resume=true), not from a "
                          "checkpoint path")
    if resume and (out / "metrics.json").is_file():
        log.info("%s is finished; its metrics.json is kept", out)
        return json.loads((out / "metrics.json").read_text())
    if not resume:
        check_run_dir(out, None)  # never overwrite an earlier run
    key = f"dev/{cfg.task.main_metric}"
    results: dict[str, dict[str, Any]] = {}
    for name, sub in variants.items():
        folder = out / "choose" / name
        started = (folder / "metrics.json").is_file() or (folder / "checkpoints" / "last.ckpt").is_file()
        sub.resume = True if resume and started else None  # a variant not yet started starts afresh
        if souped:
            sub.export = True  # the soup averages the variants' exported encoders
        log.info("choose: training variant %s (%d of %d) in %s", name, len(results) + 1, len(variants), folder)
        results[name] = train(sub, folder)
    scores = {name: float(m[key]) for name, m in results.items()}
    chosen = best_variant(scores)
    tried: dict[str, float] = {}
    if souped and soup is not None:
        ranked = sorted(scores, key=lambda n: -scores[n])  # stable: ties in the order listed
        shutil.rmtree(out / "choose" / "soup", ignore_errors=True)  # an interrupted soup's evaluation
        souped_metrics, tried = soup(variants[ranked[0]], out / "choose" / "soup",
                                     {n: out / "choose" / n / "encoder" for n in ranked})
        if souped_metrics is not None:
            results["soup"], chosen = souped_metrics, "soup"
            scores["soup"] = float(souped_metrics[key])
    log.info("choose: %s (dev %s by variant: %s)", chosen, cfg.task.main_metric, scores)
    candidates = [*variants, *(["soup"] if souped else [])]
    metrics = {**results[chosen], **{f"choose/{n}": float(n == chosen) for n in candidates},
               **{f"choose/dev_{cfg.task.main_metric}@{n}": v for n, v in scores.items()},
               **{f"soup/dev_{cfg.task.main_metric}@{n}": v for n, v in tried.items()}}
    if rank_zero_only.rank == 0:
        write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        if souped and not cfg.export:  # exported for the soup only
            for folder in (out / "choose").glob("*/encoder"):
                shutil.rmtree(folder, ignore_errors=True)
        for kept in ("encoder", "scores"):
            if (out / "choose" / chosen / kept).is_dir():
                shutil.rmtree(out / kept, ignore_errors=True)
                shutil.copytree(out / "choose" / chosen / kept, out / kept)
        write_atomic(out / "metrics.json", json.dumps(dict(sorted(metrics.items())), indent=2))  # last: finished
    return metrics
