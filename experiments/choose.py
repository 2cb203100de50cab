"""Which variant `choose` keeps, from finished runs of each variant: per task and seed, the variant with the best
dev score; what chose round six of the ranking recipe (docs/results.md, "Recipes").

    python experiments/choose.py NAME=SWEEP_DIR NAME=SWEEP_DIR ... [--test]

Runs of the variants are matched by task, training cut and seed; listed first wins a tie, as in a run. A run's
metrics are its metrics.json when it ran with `interpolate`; otherwise those at the α of ``--alphas`` with its
best dev score (experiments/interpolate.py: the weights and test loop of a run with ``interpolate=[...]``;
``--alphas 1`` for the trained weights). Prints, per task, the dev mean ± std of each variant and of the choice,
the variant each seed kept, and with ``--test`` the test column (read it after choosing).
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from interpolate import evaluate_alphas, run_dirs
from omegaconf import OmegaConf

from bsc_lightning.choose import best_variant
from bsc_lightning.interpolation import best_alpha
from bsc_lightning.run import quiet_third_party


def run_metrics(run: Path, alphas: list[float]) -> dict[str, float]:
    metrics = json.loads((run / "metrics.json").read_text())
    if "interpolate/alpha" in metrics or alphas == [1.0]:
        return metrics
    metric = OmegaConf.load(run / "config.yaml").task.main_metric
    by_alpha = evaluate_alphas(run, alphas)
    return by_alpha[str(best_alpha({a: by_alpha[str(a)][f"dev/{metric}"] for a in alphas}))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+", help="NAME=SWEEP_DIR, one per variant, in the order of `choose`")
    ap.add_argument("--alphas", default="0.5,0.7,0.85,1", help="the α a run without `interpolate` chooses from")
    ap.add_argument("--test", action="store_true", help="also print test (after the choice on dev)")
    args = ap.parse_args()
    quiet_third_party()
    alphas = [float(a) for a in args.alphas.split(",")]
    # (task, metric) -> seed -> variant -> metrics
    table: dict[tuple[str, str], dict[int, dict[str, dict[str, float]]]] = defaultdict(lambda: defaultdict(dict))
    names = []
    for spec in args.variants:
        name, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"{spec}: give NAME=SWEEP_DIR")
        names.append(name)
        for run in run_dirs([folder]):
            if not (run / "metrics.json").is_file():
                continue
            cfg = OmegaConf.load(run / "config.yaml")
            cut = cfg.data.get("limit_train")
            task = cfg.task.name if cut is None else f"{cfg.task.name} (first {cut} training pairs)"
            table[(task, cfg.task.main_metric)][int(cfg.seed)][name] = run_metrics(run, alphas)
    splits = ("dev", "test") if args.test else ("dev",)
    for (task, metric), seeds in sorted(table.items()):
        seeds = {s: v for s, v in sorted(seeds.items()) if all(n in v for n in names)}  # seeds every variant ran
        print(f"{task}: {metric} × 100, mean ± std over seeds {', '.join(map(str, seeds))}")
        rows = {n: [v[n] for v in seeds.values()] for n in names}
        kept = [best_variant({n: v[n][f"dev/{metric}"] for n in names}) for v in seeds.values()]
        rows["dev-chosen"] = [v[k] for v, k in zip(seeds.values(), kept)]
        for name, ms in rows.items():
            cols = []
            for split in splits:
                x = [100 * m[f"{split}/{metric}"] for m in ms]
                cols.append(f"{split} {statistics.mean(x):6.2f} ± {statistics.stdev(x) if len(x) > 1 else 0:.2f}")
            which = f"  ({', '.join(kept)})" if name == "dev-chosen" else ""
            print(f"  {name:<16} n={len(ms)}  " + "  ".join(cols) + which)


if __name__ == "__main__":
    main()
