"""Sweeps: flat job folders named by the settings, the DEV objective returned to sweepers, the Optuna example.

The multirun runs `python -m bsc_lightning.run -m` in a subprocess (Hydra's launcher, folders and all) on
the fixture data with the tiny BERT; `multirun()` is shared with tests/test_wandb.py (it logs offline).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from fixtures import make_cfg
from omegaconf import OmegaConf, open_dict

from bsc_lightning import CONF_DIR
from bsc_lightning.run import ConfigError, objective_key, settings_name

ROOT = Path(__file__).resolve().parents[1]
EXCLUDE = list(OmegaConf.load(Path(CONF_DIR) / "config.yaml").hydra.job.config.override_dirname.exclude_keys)
SETTINGS = "data.batch_size=8,encoder.max_length=32,task=stsb"  # what the multirun's fixed overrides leave


def tiny_overrides(tiny_bert: str, data_root: Path, cache: Path) -> list[str]:
    return [f"task.data_dir={data_root / 'stsb'}", f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32",
            "trainer=cpu", "trainer.log_every_n_steps=1", "data.batch_size=8", "data.limit_train=48",
            "data.limit_eval=40", f"data.cache_dir={cache}", "data.chunk_tokens=128", "export=false"]


_SWEEPS: dict[tuple[str, str], Path] = {}


def multirun(tiny_bert: str, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two jobs (seed=1,2) of one Hydra multirun with logger=wandb (offline): the sweep folder (run once)."""
    key = (tiny_bert, str(data_root))
    if key not in _SWEEPS:
        _SWEEPS[key] = _multirun(tiny_bert, data_root, tmp_path_factory.mktemp("multirun"))
    return _SWEEPS[key]


def _multirun(tiny_bert: str, data_root: Path, tmp: Path) -> Path:
    sweep = tmp / "sweep"
    cmd = [sys.executable, "-m", "bsc_lightning.run", "-m", "task=stsb", *tiny_overrides(tiny_bert, data_root,
           tmp / "cache"), "logger=wandb", "seed=1,2", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return sweep


@pytest.fixture(scope="session")
def sweep_dir(tiny_bert, data_root, tmp_path_factory) -> Path:
    return multirun(tiny_bert, data_root, tmp_path_factory)


def test_multirun_job_folders_are_flat_and_named_by_the_settings(sweep_dir):
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert jobs == [f"0_{SETTINGS.replace('encoder.max_length=32', 'encoder.max_length=32,seed=1')}",
                    f"1_{SETTINGS.replace('encoder.max_length=32', 'encoder.max_length=32,seed=2')}"], jobs
    for job in jobs:
        folder = sweep_dir / job
        for word in ("data_dir", "cache_dir", "name_or_path", "trainer", "limit", "logger", "export", "/"):
            assert word not in job, (word, job)
        assert (folder / "metrics.json").is_file() and (folder / "config.yaml").is_file()
        # flat: nothing below the job folder is another job folder
        assert not [p for p in folder.iterdir() if p.is_dir() and "=" in p.name]
        cfg = OmegaConf.load(folder / "config.yaml")
        assert cfg.seed == int(job.split("seed=")[1].split(",")[0])


@pytest.mark.parametrize("overrides,expected", [
    (["task.data_dir=/a/b", "seed=1", "loss=combo"], "loss=combo,seed=1"),
    (["+callbacks.es._target_=x.Y", "trainer=gpu", "trainer.devices=4", "data.limit_train=10", "logger=wandb",
      "hydra.verbose=true", "resume=true", "encoder.name_or_path=org/model", "data.cache_dir=/c"], ""),
    (["experiment=paper/stsb", "optimize_metric=dev/spearman", "trainer.max_epochs=3"],
     "experiment=paper-stsb,trainer.max_epochs=3"),
    (["loss@stage2.loss=mse", "model.optimizer.lr=3e-05", "loss.bsc.row_block=8"],
     "loss@stage2.loss=mse,model.optimizer.lr=3e-05"),
])
def test_settings_name_leaves_out_paths_and_never_nests(overrides, expected):
    name = settings_name(overrides, EXCLUDE)
    assert name == expected and "/" not in name


def test_settings_name_of_a_long_job_is_cut_with_a_hash():
    overrides = [f"+k{i}=value_number_{i}" for i in range(40)]
    a, b = settings_name(overrides), settings_name(overrides[:-1] + ["+k39=other"])
    assert len(a) == 200 and a != b and a[:150] == b[:150]


@pytest.mark.parametrize("overrides,key", [([], "dev/spearman"), (["task=wikiqa"], "dev/map"),
                                           (["task=mrpc"], "dev/f1"), (["optimize_metric=pearson"], "dev/pearson"),
                                           (["optimize_metric=dev/pearson"], "dev/pearson")])
def test_sweepers_get_a_dev_metric(overrides, key):
    assert objective_key(make_cfg(overrides)) == key


def test_a_test_metric_is_refused_as_objective():
    with pytest.raises(ConfigError, match="optimize_metric=test/spearman: .*dev/spearman"):
        objective_key(make_cfg(["optimize_metric=test/spearman"]))


def test_main_returns_the_dev_metric_of_metrics_json(tiny_bert, data_root, tmp_path):
    """`main` as Hydra calls it (HydraConfig set), on a zero-shot job: the return value is dev/spearman."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from bsc_lightning.run import main

    out = tmp_path / "job"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*tiny_overrides(tiny_bert, data_root, tmp_path / "cache"), "train=false",
                                           "logger=none"], return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(out)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):  # as Hydra does: the job's config without the hydra node
        del cfg["hydra"]
    try:
        value = main.__wrapped__(cfg)
    finally:
        HydraConfig.instance().cfg = None
    metrics = json.loads((out / "metrics.json").read_text())
    assert value == metrics["dev/spearman"] != metrics["test/spearman"]


# -------------------------------------------------------------------------------------------- Optuna
def plugin_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # no hydra_plugins namespace at all
        return False


OPTUNA = Path(CONF_DIR) / "sweep" / "optuna" / "stsb.yaml"
SPACE = {"model.optimizer.lr", "loss.bsc.temperature", "loss.mu"}


def test_optuna_example_searches_lr_tau_mu_on_dev():
    """The YAML always; composed with the plugin when hydra-optuna-sweeper is installed (extra [sweep])."""
    raw = OmegaConf.load(OPTUNA)
    assert {"override /hydra/sweeper": "optuna"} in OmegaConf.to_container(raw.defaults)
    assert {"override /loss": "combo"} in OmegaConf.to_container(raw.defaults)
    assert raw.optimize_metric == "spearman" and raw.hydra.sweeper.direction == "maximize"
    params = raw.hydra.sweeper.params
    assert set(params) == SPACE
    assert "interval(" in params["model.optimizer.lr"] and params["model.optimizer.lr"].startswith("tag(log")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("hydra-optuna-sweeper") for d in extras["optional-dependencies"]["sweep"])
    assert not any("optuna" in d for d in extras["dependencies"])
    if not plugin_installed("hydra_plugins.hydra_optuna_sweeper"):
        return  # the plugin is optional: the YAML above is the contract
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["sweep=optuna/stsb"], return_hydra_config=True)
    assert "optuna" in cfg.hydra.sweeper._target_.lower()
    assert cfg.hydra.sweeper.direction == "maximize" and set(cfg.hydra.sweeper.params) == SPACE
    assert cfg.task.name == "stsb" and cfg.loss._target_.endswith("ComboLoss")
    for key in SPACE:  # every searched key exists in the composed config
        assert OmegaConf.select(cfg, key) is not None, key
    assert objective_key(cfg) == "dev/spearman"
