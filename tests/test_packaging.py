"""A non-editable install runs without the checkout: the wheel carries every package and every config."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bsc_lightning").rglob("__init__.py")}
    assert on_disk | {"bsc_lightning.conf"} == listed


def test_wheel_ships_the_configs_and_composes_them_outside_the_checkout(tmp_path):
    src = tmp_path / "src"  # build from a copy: setuptools writes build/ next to pyproject.toml
    for name in ("bsc_lightning", "conf"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"bsc_lightning/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert configs and configs <= names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import bsc_lightning.run as r; from hydra import compose, initialize_config_dir\n"
            "with initialize_config_dir(config_dir=r.CONF_DIR, version_base='1.3'):\n"
            "    cfg = compose('config', overrides=['loss=combo', 'shuffle=example'])\n"
            "print(r.CONF_DIR); print(cfg.loss._target_.split('.')[-1], cfg.shuffle._target_.split('.')[-1])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""},
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    conf_dir, names_line = out.stdout.strip().splitlines()[-2:]
    assert Path(conf_dir) == site / "bsc_lightning" / "conf"
    assert names_line == "ComboLoss ExampleShuffle"
