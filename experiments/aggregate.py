"""Turn a sweep (or any folder of runs) into a results table: mean ± std over seeds per setting.

    python experiments/aggregate.py multirun/paper/losses/cpu/<time> --out results/losses_cpu
    python experiments/aggregate.py multirun/stsb/<time> [--metrics test/spearman dev/spearman]
        [--plot results.png] [--markdown results.md] [--csv results.csv]

A job is a folder holding ``.hydra/overrides.yaml`` or ``config.yaml`` (what ``bsc_lightning.run`` writes);
a finished job also holds ``metrics.json``, a job without it is listed as failed. Jobs are grouped by the
command-line overrides that differ between them (Hydra's ``.hydra/overrides.yaml``), except the seed;
without those files, by every config value that differs. Never by folder names.

Per setting: the number of runs, mean ± std over seeds of the reported metric on test and dev (the paper's
column metric for the task where the jobs have it, e.g. PFCC-S hp@1, else ``task.main_metric``), the paper's
selection (the test score of the seed with the best dev ``task.main_metric``, the model-selection metric)
and the published number where the paper has one (``experiments/paper_numbers.yaml``, matched on the
settings read from config.yaml). ``--metrics`` adds mean ± std columns of any metrics.json key.

``--out DIR`` writes ``results.md``, ``results.csv`` and PNG plots: ``bars.png`` (main metric per setting
with std error bars and the published numbers), ``curves_<setting>.png`` (dev metric and training loss over
steps, one line per seed, from ``logs/stage*/metrics.csv``) and ``temperature_<setting>.png`` when τ was
learned.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

IGNORED = {"seed"}
PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.yaml")
LOSS_NAMES = {"MSELoss": "mse", "ComboLoss": "combo", "TripletLoss": "triplet", "CoSENTLoss": "cosent"}
SHUFFLE_NAMES = {"NoShuffle": "none", "RandomShuffle": "random", "ExampleShuffle": "example",
                 "WordsShuffle": "words", "ClustersShuffle": "clusters", "NoDuplicates": "no_duplicates"}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ----------------------------------------------------------------------------------------------- jobs
@dataclass
class Job:
    path: Path
    overrides: dict[str, str] | None      # key=value of .hydra/overrides.yaml; None without that file
    config: dict[str, Any]                 # config.yaml (resolved), else .hydra/config.yaml as far as it resolves
    metrics: dict[str, float] | None       # None: the job did not finish (no metrics.json)
    setting: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.metrics is None

    @property
    def seed(self) -> Any:
        if self.overrides and "seed" in self.overrides:
            return self.overrides["seed"]
        return self.config.get("seed")


def _read_config(folder: Path) -> dict[str, Any]:
    """The job's resolved config.yaml; a failed job has only Hydra's unresolved copy: resolve what can be."""
    if (folder / "config.yaml").is_file():
        return yaml.safe_load((folder / "config.yaml").read_text()) or {}
    hydra_cfg = folder / ".hydra" / "config.yaml"
    if not hydra_cfg.is_file():
        return {}
    raw = yaml.safe_load(hydra_cfg.read_text()) or {}
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(OmegaConf.create(raw), resolve=True, throw_on_missing=False)
    except (OmegaConfBaseException, ValueError):  # an interpolation of the hydra: resolver or a missing key: keep the raw values
        return raw


def _is_job(folder: Path) -> bool:
    return ((folder / "metrics.json").is_file() or (folder / ".hydra" / "overrides.yaml").is_file()
            or (folder / "config.yaml").is_file())


def load_jobs(root: Path) -> list[Job]:
    """Every job folder under ``root`` (itself included), finished or not, in path order."""
    root = Path(root)
    folders = {p.parent for name in ("metrics.json", "config.yaml") for p in root.rglob(name)}
    folders |= {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    jobs = []
    for folder in sorted(f for f in folders if _is_job(f)):
        if any(part in {"encoder", "checkpoints", "logs", ".hydra", "choose"} for part in folder.relative_to(root).parts):
            continue  # an exported encoder, a logger's folder or a `choose` variant inside a job
        ov_file = folder / ".hydra" / "overrides.yaml"
        overrides = None
        if ov_file.is_file():
            overrides = dict(o.split("=", 1) for o in (yaml.safe_load(ov_file.read_text()) or []) if "=" in o)
        m = folder / "metrics.json"
        metrics = json.loads(m.read_text()) if m.is_file() else None
        jobs.append(Job(folder, overrides, _read_config(folder), metrics))
    axes = setting_axes(jobs)
    for j in jobs:
        source = j.overrides if j.overrides is not None else _flatten(j.config)
        j.setting = {k: source.get(k) for k in axes}
    return jobs


def setting_axes(jobs: list[Job]) -> list[str]:
    """The sweep's axes: override keys (else config keys) whose values differ between jobs, seed excluded."""
    if not jobs:
        return []
    use_overrides = all(j.overrides is not None for j in jobs)
    sources = [j.overrides if use_overrides else _flatten(j.config) for j in jobs]
    keys = set().union(*(s.keys() for s in sources))
    varying = [k for k in sorted(keys) if len({repr(s.get(k)) for s in sources}) > 1]
    return [k for k in varying if k not in IGNORED and not k.startswith("hydra")]


def load_runs(root: Path) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """(setting, metrics) per finished run; the setting is the run's overrides when Hydra recorded them."""
    runs = []
    for j in load_jobs(root):
        if j.failed:
            continue
        cfg = j.overrides if j.overrides is not None else _flatten(j.config)
        runs.append((cfg, j.metrics))
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


def _fmt(xs: list[float]) -> str:
    if not xs:
        return "—"
    m, s = mean_std(xs)
    return f"{m:.2f} ± {s:.2f}" if len(xs) > 1 else f"{m:.2f}"


def table(runs, metrics: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """The plain table of finished runs: axes, runs, mean ± std (×100) of ``metrics`` (first 4 test/ ones)."""
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
            row.append(_fmt([100 * r[m] for r in mets if m in r and math.isfinite(r[m])]))
        rows.append(row)
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ paper's numbers
def describe(config: dict[str, Any]) -> dict[str, Any]:
    """What the paper's tables name, read from a job's config: task, loss, shuffle, normalisation, τ, ..."""
    loss = config.get("loss") or {}
    bsc = loss.get("bsc") if isinstance(loss.get("bsc"), dict) else loss

    def loss_name(node: dict) -> str | None:
        cls = str(node.get("_target_", "")).rsplit(".", 1)[-1]
        if cls == "BSCLoss":
            return "bsc" if node.get("symmetric", True) else "oneway"
        return LOSS_NAMES.get(cls, cls.lower() or None)

    name = loss_name(loss)
    stage2 = config.get("stage2")
    if isinstance(stage2, dict) and isinstance(stage2.get("loss"), dict):
        name = f"{name}_then_{loss_name(stage2['loss'])}"
    shuffle_cls = str((config.get("shuffle") or {}).get("_target_", "")).rsplit(".", 1)[-1]
    task = config.get("task") or {}
    data = config.get("data") or {}
    return {"task": task.get("name"), "main_metric": task.get("main_metric"), "loss": name,
            "shuffle": SHUFFLE_NAMES.get(shuffle_cls, shuffle_cls.lower() or None),
            "normalization": bsc.get("normalization"), "temperature": bsc.get("temperature"),
            "positives_only": bool(data.get("train_positives_only", False)),
            "learn_temperature": bool(bsc.get("learn_temperature", False)),
            "trained": str(config.get("train", True)).lower() != "false"}  # zero-shot rows have no published twin


def load_paper_numbers(path: Path = PAPER_NUMBERS) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else {"numbers": []}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a).lower() == str(b).lower()


def published(desc: dict[str, Any], paper: dict[str, Any]) -> dict[str, Any] | None:
    """The most specific published entry whose task and ``when`` (plus the file's defaults) match ``desc``."""
    best, best_n = None, -1
    for entry in paper.get("numbers", []):
        if entry.get("task") != desc.get("task"):
            continue
        when = {**paper.get("defaults", {}), **entry.get("when", {})}
        if all(_same(desc.get(k), v) for k, v in when.items()) and len(when) > best_n:
            best, best_n = entry, len(when)
    if best is None:
        return None
    return {**best, "metric": paper.get("metrics", {}).get(desc.get("task"))}


# ----------------------------------------------------------------------------------------- summary
def _group(jobs: list[Job]) -> dict[tuple, list[Job]]:
    axes = list(jobs[0].setting) if jobs else []
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for j in jobs:
        groups[tuple(j.setting.get(k) for k in axes)].append(j)
    return dict(sorted(groups.items(), key=lambda kv: [str(x) for x in kv[0]]))


def _value(metrics: dict[str, float], key: str) -> float | None:
    v = metrics.get(key)
    return 100 * float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def summarize(jobs: list[Job], metrics: list[str] | None = None,
              paper: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One dict per setting: axes, runs, failed, main metric mean/std on test and dev, the best-dev seed's
    test score, the published number, and mean/std of ``metrics``. Scores ×100."""
    paper = load_paper_numbers() if paper is None else paper
    rows = []
    for key, group in _group(jobs).items():
        done = [j for j in group if not j.failed]
        desc = describe((done or group)[0].config)
        select = desc.get("main_metric")  # the model-selection metric: it ranks the seeds
        pub = published(desc, paper)
        paper_metric = (pub or {}).get("metric") or paper.get("metrics", {}).get(desc.get("task"))
        # the reported metric: the paper's column (PFCC-S: hp@1) where the jobs have it, else the task's main
        main = paper_metric if paper_metric and any(f"test/{paper_metric}" in j.metrics for j in done) else select
        row: dict[str, Any] = dict(zip(list(group[0].setting), key))
        row.update({"task": desc.get("task"), "metric": main, "runs": len(done),
                    "failed": len(group) - len(done)})
        test_xs = [v for j in done if (v := _value(j.metrics, f"test/{main}")) is not None]
        dev_xs = [v for j in done if (v := _value(j.metrics, f"dev/{main}")) is not None]
        row["test_mean"], row["test_std"] = mean_std(test_xs) if test_xs else (None, None)
        row["dev_mean"], row["dev_std"] = mean_std(dev_xs) if dev_xs else (None, None)
        ranked = [(d, j) for j in done if (d := _value(j.metrics, f"dev/{select}")) is not None]
        if ranked:  # the paper's selection: the run with the best dev score, its test score
            _, best = max(ranked, key=lambda dj: dj[0])
            row["best_dev_seed"], row["best_dev_test"] = best.seed, _value(best.metrics, f"test/{main}")
        else:
            row["best_dev_seed"], row["best_dev_test"] = None, None
        comparable = pub is not None and pub.get("metric") in (None, main)
        row["paper"] = pub["value"] if comparable else None
        row["paper_approach"] = pub["approach"] if comparable else None
        for m in metrics or []:
            xs = [v for j in done if (v := _value(j.metrics, m)) is not None]
            row[f"{m} mean"], row[f"{m} std"] = mean_std(xs) if xs else (None, None)
        row["_jobs"] = group
        rows.append(row)
    return rows


def _num(x: Any, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def summary_markdown(rows: list[dict[str, Any]], axes: list[str], metrics: list[str] | None = None) -> str:
    task_col = [] if "task" in axes else ["task"]  # a sweep over task= shows it once
    header = axes + task_col + ["metric", "runs", "test (mean ± std)", "dev (mean ± std)", "best dev → test",
                                "paper"] + [f"{m} (mean ± std)" for m in metrics or []]
    body = []
    for r in rows:
        cells = [str(r.get(a)) for a in axes] + [str(r["task"]) for _ in task_col] + [str(r["metric"]),
                                                                                      str(r["runs"])]
        for split in ("test", "dev"):
            m, s = r[f"{split}_mean"], r[f"{split}_std"]
            cells.append("—" if m is None else f"{m:.2f} ± {s:.2f}")
        cells.append("—" if r["best_dev_test"] is None else f"{r['best_dev_test']:.2f} (seed {r['best_dev_seed']})")
        cells.append("—" if r["paper"] is None else f"{r['paper']:.2f} ({r['paper_approach']})")
        for m in metrics or []:
            mu, s = r[f"{m} mean"], r[f"{m} std"]
            cells.append("—" if mu is None else f"{mu:.2f} ± {s:.2f}")
        body.append(cells)
    return markdown(header, body)


def failed_markdown(jobs: list[Job], root: Path) -> str:
    failed = [j for j in jobs if j.failed]
    if not failed:
        return "Failed jobs: none."
    lines = [f"Failed jobs ({len(failed)}, no metrics.json):"]
    for j in failed:
        ov = " ".join(f"{k}={v}" for k, v in (j.overrides or {}).items())
        lines.append(f"- `{j.path.relative_to(root) if j.path != root else '.'}`" + (f": {ov}" if ov else ""))
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], axes: list[str], path: Path, metrics: list[str] | None = None) -> None:
    cols = axes + ["task", "metric", "runs", "failed", "test_mean", "test_std", "dev_mean", "dev_std",
                   "best_dev_seed", "best_dev_test", "paper", "paper_approach"]
    for m in metrics or []:
        cols += [f"{m} mean", f"{m} std"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else r[c])
                        for c in cols])


# ------------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(r: dict[str, Any], axes: list[str]) -> str:
    return " ".join(str(r.get(a)).split("/")[-1] for a in axes) or str(r.get("task"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:120] or "run"


def plot(header: list[str], rows: list[list[str]], path: Path) -> None:
    """Bars of the plain table (``table``): one group per setting, one bar per metric, std error bars."""
    plt = _pyplot()
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
    plt.close(fig)


def plot_bars(rows: list[dict[str, Any]], axes: list[str], path: Path) -> None:
    """Main test metric per setting: mean with std error bars, the best-dev seed's score and the paper's."""
    plt = _pyplot()
    labels = [_label(r, axes) for r in rows]
    x = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 4))
    means = [r["test_mean"] if r["test_mean"] is not None else float("nan") for r in rows]
    ax.bar(x, means, 0.6, yerr=[r["test_std"] or 0.0 for r in rows], capsize=3, label="test mean ± std")
    best = [(i, r["best_dev_test"]) for i, r in enumerate(rows) if r["best_dev_test"] is not None]
    if best:
        ax.scatter(*zip(*best), marker="o", color="k", zorder=3, s=18, label="best-dev seed")
    pub = [(i, r["paper"]) for i, r in enumerate(rows) if r["paper"] is not None]
    if pub:
        ax.scatter(*zip(*pub), marker="x", color="red", zorder=3, s=40, label="paper")
    metrics = sorted({str(r["metric"]) for r in rows})
    ax.set_ylabel(f"test {'/'.join(metrics)} ×100")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_log(job: Job) -> dict[str, list[tuple[float, float]]]:
    """Series (step, value) of every column of ``logs/stage*/metrics.csv``; later stages continue the steps."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    offset = 0.0
    for stage_dir in sorted((job.path / "logs").glob("stage*")):
        f = stage_dir / "metrics.csv"
        if not f.is_file():
            continue
        last = 0.0
        with open(f, newline="") as fh:
            for rec in csv.DictReader(fh):
                try:
                    step = float(rec.get("step") or "nan")
                except ValueError:
                    continue
                if not math.isfinite(step):
                    continue
                last = max(last, step)
                for k, v in rec.items():
                    if k in ("step", "epoch") or v in (None, ""):
                        continue
                    try:
                        series[k].append((offset + step, float(v)))
                    except ValueError:
                        pass
        offset += last + 1
    return series


def plot_curves(row: dict[str, Any], axes: list[str], out: Path) -> list[Path]:
    """curves_<setting>.png (dev metric and training loss per seed) and temperature_<setting>.png when τ
    moved (a learned temperature)."""
    plt = _pyplot()
    main = row["metric"]
    logs = [(j, read_log(j)) for j in row["_jobs"]]
    logs = [(j, s) for j, s in logs if s]
    if not logs:
        return []
    slug = _slug(_label(row, axes))
    written = []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for j, s in logs:
        name = f"seed {j.seed}" + (" (failed)" if j.failed else "")
        dev = s.get(f"val/{main}", [])
        if dev:
            ax1.plot(*zip(*dev), marker="o", label=name)
        loss = s.get("train/loss", [])
        if loss:
            ax2.plot(*zip(*loss), label=name)
    ax1.set(title=f"dev {main}", xlabel="step")
    ax2.set(title="training loss", xlabel="step")
    ax1.legend(fontsize=7)
    fig.suptitle(_label(row, axes), fontsize=9)
    fig.tight_layout()
    path = out / f"curves_{slug}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    taus = [(j, s["train/temperature"]) for j, s in logs if len({v for _, v in s.get("train/temperature", [])}) > 1]
    if taus:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for j, t in taus:
            ax.plot(*zip(*t), label=f"seed {j.seed}")
        ax.set(title=f"learned τ: {_label(row, axes)}", xlabel="step", ylabel="τ")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"temperature_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(root: Path, out: Path, metrics: list[str] | None = None,
                 paper: dict[str, Any] | None = None, plots: bool = True) -> dict[str, Any]:
    """results.md, results.csv and the PNGs of the sweep ``root`` into ``out``; returns what was written."""
    jobs = load_jobs(root)
    if not jobs:
        raise SystemExit(f"no job folder under {root}: is it a sweep folder of bsc_lightning.run?")
    out.mkdir(parents=True, exist_ok=True)
    axes = list(jobs[0].setting)
    rows = summarize(jobs, metrics, paper)
    text = (f"# {root}\n\nScores ×100; mean ± std over seeds; best dev → test: the paper's selection (the test "
            f"score of the seed with the best dev score); paper: the published number (BERT-base).\n\n"
            + summary_markdown(rows, axes, metrics) + "\n\n" + failed_markdown(jobs, root) + "\n")
    (out / "results.md").write_text(text)
    write_csv(rows, axes, out / "results.csv", metrics)
    pngs: list[Path] = []
    if plots and any(r["runs"] for r in rows):
        plot_bars(rows, axes, out / "bars.png")
        pngs.append(out / "bars.png")
        for r in rows:
            pngs += plot_curves(r, axes, out)
    return {"rows": rows, "jobs": jobs, "markdown": text, "pngs": pngs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--metrics", nargs="*", help="metrics.json keys for mean ± std columns")
    p.add_argument("--plot", type=Path, help="bar plot of the plain table")
    p.add_argument("--markdown", type=Path, help="the plain table as markdown")
    p.add_argument("--csv", type=Path, help="the summary (main metric, best-dev, paper) as CSV")
    p.add_argument("--out", type=Path, help="folder for results.md, results.csv and every PNG")
    p.add_argument("--paper", type=Path, default=PAPER_NUMBERS, help="published numbers (YAML)")
    a = p.parse_args()
    jobs = load_jobs(a.root)
    if not jobs:
        raise SystemExit(f"no job folder under {a.root}: is it a sweep folder of bsc_lightning.run?")
    paper = load_paper_numbers(a.paper)
    runs = load_runs(a.root)
    if runs:
        header, rows = table(runs, a.metrics)
        text = markdown(header, rows)
        print(text)
        if a.markdown:
            a.markdown.write_text(text + "\n")
        if a.plot:
            plot(header, rows, a.plot)
            print(f"plot: {a.plot}")
    axes = list(jobs[0].setting)
    summary = summarize(jobs, a.metrics, paper)
    print()
    print(summary_markdown(summary, axes, a.metrics))
    print()
    print(failed_markdown(jobs, a.root))
    if a.csv:
        write_csv(summary, axes, a.csv, a.metrics)
    if a.out:
        report = write_report(a.root, a.out, a.metrics, paper)
        print(f"wrote {a.out}/results.md, results.csv and {len(report['pngs'])} PNG(s)")


if __name__ == "__main__":
    main()
