"""Dev (and test) metrics of finished runs after weight interpolation θ0 + α(θ − θ0) with the pretrained encoder,
for a grid of α, without training again: what chose the ranking recipe's `interpolate` (docs/results.md, "Recipes").

    python experiments/interpolate.py RUN_OR_SWEEP_DIR ... [--alphas 0,0.3,0.5,0.7,0.85,1] [--choose 0.5,0.7,0.85,1] [--test]

Each run folder needs its config.yaml and checkpoints/stage1-best.ckpt (a one-stage run). Per run it writes
interpolation.json ({α: metrics}, dev and test; reused when present) and prints, per task (and training cut),
the mean ± std over the runs of the main metric on dev for each α, and the row "dev-chosen": each run at the
α of ``--choose`` with its best dev score (ties: the larger α), what ``interpolate=[...]`` in a run does;
``--test`` adds the test column (read it after choosing).
The metrics are those a run with ``interpolate=[α]`` tests: the same weights, the same test loop.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import lightning as L
from omegaconf import OmegaConf

from bsc_lightning.encoder import load_tokenizer
from bsc_lightning.interpolation import best_alpha, interpolate, snapshot
from bsc_lightning.run import build, build_module, build_trainer, quiet_third_party
from bsc_lightning.rundir import encoder_state


def run_dirs(paths: list[str]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        out += [p] if (p / "config.yaml").is_file() else sorted(d.parent for d in p.glob("*/config.yaml"))
    return out


def evaluate_alphas(run: Path, alphas: list[float]) -> dict[str, dict[str, float]]:
    """{str(α): dev and test metrics} of one finished run (cached in run/interpolation.json)."""
    cache = run / "interpolation.json"
    done = json.loads(cache.read_text()) if cache.is_file() else {}
    todo = [a for a in alphas if str(a) not in done]
    if todo:
        cfg = OmegaConf.load(run / "config.yaml")
        # one process on this machine's device: a DDP run's trainer would keep the results in its workers
        cfg.trainer.update(accelerator="auto", devices=1, num_nodes=1, strategy="auto")
        if cfg.get("stage2"):
            raise SystemExit(f"{run}: a two-stage run; interpolation is evaluated for one-stage runs only")
        L.seed_everything(cfg.seed)
        dm = build(cfg.data, "data", task=build(cfg.task, "task"), tokenizer=load_tokenizer(cfg.encoder.name_or_path),
                   strategy=build(cfg.shuffle, "shuffle"))
        dm.setup("fit")
        module = build_module(cfg, "loss", build(cfg.encoder, "encoder"))
        base = snapshot(module.encoder)  # the pretrained encoder
        trained = encoder_state(run / "checkpoints" / "stage1-best.ckpt")
        module.stage = "zero_shot"
        for a in todo:
            module.encoder.load_state_dict(interpolate(base, trained, a))
            trainer = build_trainer(cfg, run / "interpolation", "zero_shot", 0, fit=False)
            trainer.test(module, datamodule=dm, verbose=False)
            done[str(a)] = dict(module.test_results)
        cache.write_text(json.dumps(done, indent=1))
    return {str(a): done[str(a)] for a in alphas}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--alphas", default="0,0.3,0.5,0.7,0.85,1")
    ap.add_argument("--choose", default="0.5,0.7,0.85,1", help="the α a run chooses from on dev")
    ap.add_argument("--test", action="store_true", help="also print test (after the choice on dev)")
    args = ap.parse_args()
    quiet_third_party()
    choose = [float(a) for a in args.choose.split(",")]
    alphas = sorted({float(a) for a in args.alphas.split(",")} | set(choose))
    table: dict[tuple[str, str], dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for run in run_dirs(args.paths):
        cfg = OmegaConf.load(run / "config.yaml")
        cut = cfg.data.get("limit_train")  # a CPU cut is another data set than the full split
        task = cfg.task.name if cut is None else f"{cfg.task.name} (first {cut} training pairs)"
        rows = table[(task, cfg.task.main_metric)]
        by_alpha = evaluate_alphas(run, alphas)
        for a, m in by_alpha.items():
            rows[f"α {float(a):g}"].append(m)
        best = best_alpha({a: by_alpha[str(a)][f"dev/{cfg.task.main_metric}"] for a in choose})
        rows["dev-chosen"].append({**by_alpha[str(best)], "alpha": best})
    for (task, metric), rows in table.items():
        print(f"{task}: {metric} × 100, mean ± std over runs")
        for name, ms in rows.items():
            cols = []
            for split in ("dev", "test") if args.test else ("dev",):
                v = [100 * m[f"{split}/{metric}"] for m in ms]
                cols.append(f"{split} {statistics.mean(v):6.2f} ± {statistics.stdev(v) if len(v) > 1 else 0:.2f}")
            picked = ", ".join(f"{m['alpha']:g}" for m in ms) if name == "dev-chosen" else ""
            chosen = f"  (α {picked})" if picked else ""
            print(f"  {name:<10} n={len(ms)}  " + "  ".join(cols) + chosen)


if __name__ == "__main__":
    main()
