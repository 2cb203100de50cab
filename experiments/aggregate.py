"""Turn a sweep (or any folder of runs) into a results table: mean ± std over seeds per setting.

    python experiments/aggregate.py multirun/stsb/2026-11-27_12-00-00 [--metrics test/spearman dev/spearman]
        [--plot results.png] [--markdown results.md]

A run is a folder holding metrics.json and config.yaml (what bsc_lightning.run writes). Runs are grouped
by the command-line overrides that differ between runs (Hydra's .hydra/overrides.yaml), except the seed;
without those files, by every config value that differs.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

IGNORED = {"seed"}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_runs(root: Path) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """(setting, metrics) per run; the setting is the run's overrides when Hydra recorded them."""
    runs = []
    for m in sorted(root.rglob("metrics.json")):
        overrides = m.parent / ".hydra" / "overrides.yaml"
        cfg_file = m.parent / "config.yaml"
        if overrides.is_file():
            cfg = dict(o.split("=", 1) for o in yaml.safe_load(overrides.read_text()) if "=" in o)
        else:
            cfg = _flatten(yaml.safe_load(cfg_file.read_text())) if cfg_file.is_file() else {}
        runs.append((cfg, json.loads(m.read_text())))
    return runs


def setting_keys(runs: list[tuple[dict[str, Any], dict[str, float]]]) -> list[str]:
    """Config keys whose values differ between runs (the sweep's axes), seed excluded."""
    keys = set().union(*(cfg.keys() for cfg, _ in runs)) if runs else set()
    varying = [k for k in sorted(keys) if len({repr(cfg.get(k)) for cfg, _ in runs}) > 1]
    return [k for k in varying if k not in IGNORED and not k.startswith("hydra")]


def mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, s


def table(runs, metrics: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
    axes = setting_keys(runs)
    groups: dict[tuple, list[dict[str, float]]] = defaultdict(list)
    for cfg, met in runs:
        groups[tuple(cfg.get(k) for k in axes)].append(met)
    if metrics is None:
        found = sorted({k for _, met in runs for k in met if k.startswith("test/") and k != "test/threshold"})
        metrics = found[:4]
    header = axes + ["runs"] + [f"{m} (×100)" for m in metrics]
    rows = []
    for key, mets in sorted(groups.items(), key=lambda kv: [str(x) for x in kv[0]]):
        row = [str(v) for v in key] + [str(len(mets))]
        for m in metrics:
            xs = [100 * r[m] for r in mets if m in r and math.isfinite(r[m])]
            row.append("—" if not xs else (f"{mean_std(xs)[0]:.2f} ± {mean_std(xs)[1]:.2f}" if len(xs) > 1
                                             else f"{xs[0]:.2f}"))
        rows.append(row)
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot(header: list[str], rows: list[list[str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_axes = header.index("runs")
    labels = [" ".join(r[:n_axes]) or "run" for r in rows]
    metric_cols = list(range(n_axes + 1, len(header)))
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) * len(metric_cols)), 3.5))
    width = 0.8 / max(1, len(metric_cols))
    for j, c in enumerate(metric_cols):
        vals = [float(r[c].split(" ± ")[0]) if r[c] != "—" else float("nan") for r in rows]
        errs = [float(r[c].split(" ± ")[1]) if " ± " in r[c] else 0.0 for r in rows]
        ax.bar([i + j * width for i in range(len(rows))], vals, width, yerr=errs, label=header[c], capsize=3)
    ax.set_xticks([i + width * (len(metric_cols) - 1) / 2 for i in range(len(rows))], labels, rotation=20)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--metrics", nargs="*")
    p.add_argument("--plot", type=Path)
    p.add_argument("--markdown", type=Path)
    a = p.parse_args()
    runs = load_runs(a.root)
    if not runs:
        raise SystemExit(f"no metrics.json under {a.root}: is it a sweep folder of bsc_lightning.run?")
    header, rows = table(runs, a.metrics)
    text = markdown(header, rows)
    print(text)
    if a.markdown:
        a.markdown.write_text(text + "\n")
    if a.plot:
        plot(header, rows, a.plot)
        print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
