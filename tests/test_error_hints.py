"""Every config key that the package's messages and docstrings name exists in the shipped configs."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from fixtures import make_cfg
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("task", "loss", "shuffle", "encoder", "trainer", "logger")
KEY = re.compile(r"(?<![\w.`/])(task|loss|shuffle|data|model|trainer|encoder|checkpoint|stage2)"
                 r"\.([a-z_]+(?:\.[a-z_]+)*)(?=[=\s:`'\",;)<]|$)")


def _strings(path: Path) -> list[str]:
    """String literals of a module, with the literal parts of f-strings."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
    return out


def _named_keys() -> set[str]:
    keys = set()
    for path in (ROOT / "bsc_lightning").rglob("*.py"):
        for text in _strings(path):
            keys.update(f"{m.group(1)}.{m.group(2)}" for m in KEY.finditer(text))
    return keys


def _all_keys() -> set[str]:
    """Dotted keys of the config composed with every option of every group (union)."""
    keys: set[str] = set()

    def walk(node, prefix: str) -> None:
        for k, v in node.items():
            keys.add(f"{prefix}{k}")
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")

    runs = [[]] + [[f"{g}={p.stem}"] for g in GROUPS for p in sorted((ROOT / "conf" / g).glob("*.yaml"))]
    runs += [["experiment=" + p.stem] for p in (ROOT / "conf" / "experiment").glob("*.yaml")]
    for overrides in runs:
        cfg = make_cfg(overrides)
        walk(OmegaConf.to_container(cfg, resolve=False), "")
    return keys


def test_messages_name_keys_that_exist():
    named, existing = _named_keys(), _all_keys()
    assert len(named) >= 15  # the scan finds the hints (data.batch_size, task.options.train_file, ...)
    missing = sorted(k for k in named if k not in existing)
    assert not missing, f"messages or docstrings name config keys that no config has: {missing}"


@pytest.mark.parametrize("key", ["data.batch_size", "task.options.columns", "task.label_scale",
                                 "model.cache_chunk_size", "encoder.name_or_path", "task.positive_threshold"])
def test_scan_sees_the_known_hints(key):
    assert key in _named_keys()
