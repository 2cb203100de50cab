"""Every config under conf/ fits the class it names: a drifted or misspelled key fails here, not mid-run.

1. every option file of every group (globbed) and experiment: each ``_target_`` node binds to its target's
   signature, runtime objects as placeholders (GPU trainers and hub encoders are checked unbuilt);
2. what is cheap offline is built through ``run.build`` and its values checked; 3. a misspelled key is a
   one-line ``ConfigError`` starting with the key; 4. task facts agree between task_facts, config and model.
"""
from __future__ import annotations

import functools
import inspect
import os
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures import make_cfg as _make_cfg
from hydra.utils import get_object
from omegaconf import OmegaConf
from test_run import task_overrides

from bsc_lightning import CONF_DIR
from bsc_lightning.data.batching import Strategy
from bsc_lightning.data.tasks import FACTS, Task, task_facts
from bsc_lightning.run import ConfigError, build

OPTIONS = sorted(f"{p.parent.name}={p.stem}" for p in Path(CONF_DIR).glob("*/*.yaml"))
GROUPS = {o.split("=")[0] for o in OPTIONS}
assert {"task", "loss", "shuffle", "encoder", "trainer", "logger", "experiment"} <= GROUPS, GROUPS


@functools.cache
def _compose(overrides: tuple[str, ...]):
    cfg = _make_cfg(list(overrides))
    OmegaConf.set_readonly(cfg, True)  # shared between tests: nobody may change it
    return cfg


def make_cfg(overrides: list[str]):
    """tests/fixtures.make_cfg, composed once per override list (a compose takes ≈0.2 s)."""
    return _compose(tuple(overrides))


def stems(group: str) -> list[str]:
    return [o.split("=")[1] for o in OPTIONS if o.startswith(f"{group}=")]


# What run.py passes in at build time, by node (run.train / build_trainer / build_module).
RUNTIME = {"data": ("task", "tokenizer", "strategy"), "model": ("encoder", "loss"),
           "trainer": ("max_epochs", "callbacks", "logger", "default_root_dir"), "logger": ("save_dir",)}
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
THRESHOLD = {"stsb": 0.6, "mrpc": 0.5, "quora": 0.5, "wikiqa": 0.5, "custom": 0.5, "cqa_a": 0.5, "cqa_b": 0.5,
             "pfcc_s": 0.5}


def target_nodes(node: Any, path: str = "") -> list[tuple[str, dict]]:
    """(dotted path, node) of every ``_target_`` node in a resolved container, nested ones included."""
    found = [(path, node)] if isinstance(node, dict) and "_target_" in node else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in children:
        found += target_nodes(v, f"{path}.{k}" if path else str(k))
    return found


def check_signature(path: str, node: dict) -> None:
    """Bind the node's keys (and the run's runtime arguments) to its target; no key may hide in **kwargs."""
    sig = inspect.signature(get_object(node["_target_"]))
    runtime = dict.fromkeys(RUNTIME.get(path, ()))
    if path == "logger":  # build_trainer: CSV loggers get a version, the others a name
        runtime["version" if "CSVLogger" in node["_target_"] else "name"] = None
    keys = {k: v for k, v in node.items() if k not in HYDRA_KEYS}
    bind = sig.bind_partial if node.get("_partial_") else sig.bind
    try:
        bound = bind(**{**keys, **runtime})
    except TypeError as e:
        raise TypeError(f"{path}: {node['_target_']}: {e}") from None
    var_kw = [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    hidden = sorted(bound.arguments.get(var_kw[0], {})) if var_kw else []
    assert not hidden, f"{path}.{hidden[0]}: not a named parameter of {node['_target_']}"


def resolved(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


# ------------------------------------------------------------------------------------------ 1. signatures
@pytest.mark.parametrize("option", ["<defaults>", *OPTIONS])
def test_every_target_node_binds_to_its_signature(option):
    cfg = make_cfg([] if option == "<defaults>" else [option])
    nodes = target_nodes(resolved(cfg))
    paths = {p for p, _ in nodes}
    assert {"task", "loss", "shuffle", "encoder", "trainer", "data", "model", "model.optimizer"} <= paths
    if option.startswith("loss=combo"):
        assert "loss.bsc" in paths
    group = option.split("=")[0]
    if group in GROUPS - {"experiment", "size"}:  # the chosen file names its class (logger=none: no logger at all)
        node = OmegaConf.select(cfg, group)
        assert "_target_" in node or (group == "logger" and not node), (option, node)
    for path, node in nodes:
        check_signature(path, node)


@pytest.mark.parametrize("override,bad", [
    ("+model.optimizer.betas2=3", "betas2"),   # a _partial_ node: run.build would not see it until fit
    ("+task.main_metrc=f1", "main_metrc"),     # load_task takes **options: caught by the no-**kwargs rule
    ("+trainer.max_epoch=2", "max_epoch"), ("+loss.temprature=1", "temprature"),
])
def test_signature_check_catches_drift(override, bad):
    with pytest.raises((TypeError, AssertionError), match=bad):
        for path, node in target_nodes(resolved(make_cfg([override]))):
            check_signature(path, node)


# ------------------------------------------------------------------------------------------ 2. construction
TH = object()  # stands for the task's positive threshold
EXPECT = {"bsc": {"symmetric": True, "positive_threshold": TH},
          "symmetric": {"symmetric": True, "positive_threshold": TH},
          "oneway": {"symmetric": False, "positive_threshold": TH},
          "combo": {"mu": 0.1, "bsc.symmetric": True, "bsc.positive_threshold": TH},
          "triplet": {"margin": 0.5, "positive_threshold": TH}, "cosent": {"scale": 20.0}}


def check_values(obj: Any, node: dict) -> None:
    """Every scalar key the object exposes under the same name holds the config's value."""
    for k, v in node.items():
        if k not in HYDRA_KEYS and not isinstance(v, (dict, list)) and hasattr(obj, k):
            assert getattr(obj, k) == (pytest.approx(v) if isinstance(v, float) else v), (k, v)


@pytest.mark.parametrize("task", ["stsb", "mrpc"])
@pytest.mark.parametrize("loss", stems("loss"))
def test_every_loss_builds(loss, task):
    cfg = make_cfg([f"task={task}", f"loss={loss}"])
    obj = build(cfg.loss, "loss")
    for path, node in target_nodes(resolved(cfg.loss)):  # the loss and its parts (combo: loss.bsc)
        part = attrgetter(path)(obj) if path else obj
        assert isinstance(part, get_object(node["_target_"])), path
        check_values(part, node)
    for attr, value in EXPECT.get(loss, {}).items():
        assert attrgetter(attr)(obj) == (THRESHOLD[task] if value is TH else value), attr


@pytest.mark.parametrize("experiment", stems("experiment"))
def test_every_experiment_builds_its_losses(experiment):
    cfg = make_cfg([f"experiment={experiment}"])
    losses = {k: build(OmegaConf.select(cfg, k), k) for k in ("loss", "stage2.loss")
              if OmegaConf.select(cfg, k) is not None}
    for key, obj in losses.items():
        assert isinstance(obj, get_object(OmegaConf.select(cfg, key)._target_)), key
    if experiment == "stsb_bsc_then_mse":
        assert (cfg.task.name, cfg.stage2.max_epochs, cfg.trainer.max_epochs) == ("stsb", 1, 1)
        assert type(losses["stage2.loss"]).__name__ == "MSELoss" and losses["loss"].symmetric is True


@pytest.mark.parametrize("shuffle", stems("shuffle"))
def test_every_shuffle_builds(shuffle):
    cfg = make_cfg([f"shuffle={shuffle}"])
    s = build(cfg.shuffle, "shuffle")
    # a variant config (example_grouped: example with its pairs together) names its base strategy
    assert isinstance(s, Strategy) and type(s).name == {"example_grouped": "example"}.get(shuffle, shuffle)
    if shuffle == "example_grouped":
        assert s.keep_identical_apart is False
    for k, v in resolved(cfg.shuffle).items():
        if k not in HYDRA_KEYS:
            assert getattr(s, k) == v, k


@pytest.mark.parametrize("task", stems("task"))
def test_every_task_loads_with_its_facts(task, data_root, tmp_path):
    if task not in THRESHOLD:
        pytest.fail(f"conf/task/{task}.yaml is new: add its fixture data to task_overrides and THRESHOLD")
    cfg = make_cfg(task_overrides(task, data_root, tmp_path))
    t = build(cfg.task, "task")
    assert isinstance(t, Task)
    assert (t.name, t.type, t.main_metric) == (cfg.task.name, cfg.task.type, cfg.task.main_metric) == (
        task, task_facts(task)["type"], task_facts(task)["main_metric"])
    assert t.positive_threshold == cfg.task.positive_threshold == THRESHOLD[task]
    assert set(t.splits) == {"train", "dev", "test"} and all(len(s) > 0 for s in t.splits.values())
    if task == "quora":  # the options reach the reader
        assert (len(t.splits["train"]), len(t.splits["dev"])) == (100, 50)


# name: (accelerator class or None for "auto", strategy class, world size, deterministic)
TRAINERS = {"cpu": ("CPUAccelerator", "SingleDeviceStrategy", 1, True),
            "default": (None, "SingleDeviceStrategy", 1, False),
            "ddp_sim": ("CPUAccelerator", "DDPStrategy", 2, False)}


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_cpu_trainers_build(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8"))
    deterministic = torch.are_deterministic_algorithms_enabled()
    cfg = make_cfg([f"trainer={name}"])
    try:
        trainer = build(cfg.trainer, "trainer", max_epochs=3, callbacks=[], logger=False,
                        default_root_dir=str(tmp_path))
        assert torch.are_deterministic_algorithms_enabled() is cfg.trainer.deterministic is TRAINERS[name][3]
    finally:
        torch.use_deterministic_algorithms(deterministic)
    accelerator, strategy, world, _ = TRAINERS[name]
    assert accelerator in (None, type(trainer.accelerator).__name__)
    assert type(trainer.strategy).__name__ == strategy
    assert trainer.world_size == trainer.num_devices == world and trainer.max_epochs == 3
    assert (trainer.log_every_n_steps, trainer.num_sanity_val_steps) == (10, 0)
    if name == "ddp_sim":
        assert trainer.strategy._start_method == "spawn"


@pytest.mark.parametrize("name", stems("logger"))
def test_every_logger_builds(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = make_cfg([f"logger={name}"])
    if name == "none":
        assert not cfg.get("logger")  # run.build_trainer adds no logger
        return
    csv = "CSVLogger" in cfg.logger._target_
    extra = {"version": "stage1"} if csv else {"name": "s"}  # as run.build_trainer passes them
    logger = build(cfg.logger, "logger", save_dir=str(tmp_path), **extra)
    assert isinstance(logger, get_object(cfg.logger._target_))
    if name == "csv":
        assert type(logger).__module__ == "bsc_lightning.loggers" and logger.name == "logs"
        assert Path(logger.log_dir) == tmp_path / "logs" / "stage1"
    if name == "wandb":  # built without a run: wandb.init waits for the first log
        assert (logger.name, logger._offline, logger._experiment) == ("bsc_lightning", True, None)
        assert logger.save_dir == str(tmp_path)


@pytest.mark.parametrize("name", stems("encoder"))
def test_every_encoder_builds_on_the_tiny_bert(name, tiny_bert):
    cfg = make_cfg([f"encoder={name}", f"encoder.name_or_path={tiny_bert}"])
    enc = build(cfg.encoder, "encoder")
    assert type(enc).__name__ == "Encoder"
    expected = {"minilm": 128, "bert_base": 90, "roberta_base": 90}.get(name, cfg.encoder.max_length)
    assert enc.max_length == cfg.encoder.max_length == cfg.data.max_length == expected
    assert (enc.pooling, enc.name_or_path) == (cfg.encoder.pooling, tiny_bert)


def test_model_and_data_module_build():
    cfg = make_cfg(["task=wikiqa", "shuffle=example", "model.cache_chunk_size=16"])
    module = build(cfg.model, "model", encoder=torch.nn.Identity(), loss=torch.nn.Identity())
    assert (module.task_type, module.main_metric, module.positive_threshold) == ("ranking", "map", 0.5)
    opt = module.optimizer_factory([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, torch.optim.AdamW)
    assert (opt.defaults["lr"], opt.defaults["weight_decay"]) == (2e-5, 0.01)
    dm = build(cfg.data, "data", task="wikiqa", tokenizer=None, strategy=build(cfg.shuffle, "shuffle"))
    assert (dm.batch_size, dm.max_length, dm.chunk_rows, dm.seed) == (32, 128, 16, 0)
    assert dm.strategy.name == "example"


# ------------------------------------------------------------------------------------- 3. misspelled keys
# misspelled key (set with +key=3): (node that run.py builds, other overrides)
MISSPELLED = {"loss.bsc.temprature": ("loss", "loss=combo"), "data.batchsize": ("data",),
              "shuffle.group_sise": ("shuffle", "shuffle=example"), "model.lr": ("model",),
              "trainer.max_epoch": ("trainer",), "encoder.poolng": ("encoder",),
              "stage2.loss.temprature": ("stage2.loss", "experiment=stsb_bsc_then_mse")}


@pytest.mark.parametrize("key", sorted(MISSPELLED))
def test_misspelled_key_is_one_line_naming_it(key):
    node, *overrides = MISSPELLED[key]
    cfg = make_cfg([*overrides, f"+{key}=3"])
    with pytest.raises(ConfigError) as e:
        build(OmegaConf.select(cfg, node), node, **dict.fromkeys(RUNTIME.get(node, ())))
    assert str(e.value).startswith(f"{key}: ") and "\n" not in str(e.value), str(e.value)


# ----------------------------------------------------------------------------------------- 4. task facts
@pytest.mark.parametrize("task", stems("task"))
def test_task_facts_match_the_composed_config(task):
    cfg = make_cfg([f"task={task}"])
    assert cfg.task.name == task
    assert task_facts(task) == {k: cfg.task[k] for k in FACTS}
    assert task_facts(task)["positive_threshold"] == THRESHOLD.get(task, cfg.task.positive_threshold)
    model = resolved(cfg)["model"]
    assert (model["main_metric"], model["positive_threshold"], model["task_type"]) == (
        cfg.task.main_metric, cfg.task.positive_threshold, cfg.task.type)
    if "positive_threshold" in cfg.loss:
        assert resolved(cfg)["loss"]["positive_threshold"] == cfg.task.positive_threshold
