"""A W&B dashboard for a sweep: a saved workspace view of one sweep's runs, seeds grouped by setting.

    python -m bsc_lightning.dashboard multirun/paper/losses/cpu/<time> --entity ME [--project bsc_lightning]
        [--metric map] [--name VIEW] [--save]

Without ``--save`` (offline) it prints the view's JSON spec and saves nothing; with ``--save`` (online, logged
in) it creates the view and prints its URL. Needs ``wandb-workspaces`` (the ``dashboard`` extra).

What the view holds, for the runs of one W&B group (``group`` = the sweep folder's name, as
``bsc_lightning.run.wandb_run_args`` names it; a group name works too):

- runs grouped by ``config.setting`` (the job's settings without the seed, written by the run), so every
  panel shows one line / bar per setting: the mean over seeds with a ± std band;
- "dev metric and loss": ``val/<metric>`` and ``train/loss`` over ``trainer/global_step``;
- "results": bars of ``test/<metric>`` and ``dev/<metric>`` (the ``metrics.json`` summary);
- "temperature": ``train/temperature`` (τ, constant unless ``loss.learn_temperature=true``);
- the runs table with the setting, the seed, the stage and the dev / test metric pinned.

The metric defaults to the sweep's ``task.main_metric`` (read from a job's ``config.yaml``). The table with the
paper's selection (best-dev seed) and published numbers stays ``experiments/aggregate.py``'s job.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

SETTING_KEY = "setting"  # the run config key that groups seeds (bsc_lightning.run.wandb_run_args)
STEP = "trainer/global_step"


def sweep_facts(folder: Path) -> tuple[str, str | None]:
    """(W&B group, main metric) of a sweep folder: the folder's name and its jobs' ``task.main_metric``."""
    metrics = set()
    for cfg_path in sorted(folder.glob("*/config.yaml")):
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        metric = (cfg.get("task") or {}).get("main_metric")
        if metric:
            metrics.add(str(metric))
    if len(metrics) > 1:
        raise SystemExit(f"{folder}: its jobs have different main metrics {sorted(metrics)}; pick one with --metric")
    return folder.name, (metrics.pop() if metrics else None)


def build_workspace(entity: str, project: str, group: str, metric: str, name: str | None = None) -> Any:
    """The view (a ``wandb_workspaces.workspaces.Workspace``) of W&B group ``group``, ``metric`` without its
    ``dev/`` / ``test/`` / ``val/`` prefix (``map``, ``spearman``, ``f1``)."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    def line(key: str) -> Any:
        return wr.LinePlot(title=f"{key} (mean ± std over seeds)", x=STEP, y=[key], groupby_aggfunc="mean",
                           groupby_rangefunc="stddev")

    def bars(key: str) -> Any:
        return wr.BarPlot(title=f"{key} (mean ± std over seeds)", metrics=[key], groupby_aggfunc="mean",
                          groupby_rangefunc="stddev", orientation="h")

    sections = [
        ws.Section(name="dev metric and loss", is_open=True, panels=[line(f"val/{metric}"), line("train/loss")]),
        ws.Section(name="results", is_open=True, panels=[bars(f"test/{metric}"), bars(f"dev/{metric}")]),
        ws.Section(name="temperature", is_open=False, panels=[line("train/temperature")]),
    ]
    runset = ws.RunsetSettings(
        filters=[expr.Metric("Group") == group],
        groupby=[expr.Config(SETTING_KEY)],
        pinned_columns=[f"config:{SETTING_KEY}", "config:seed", "run:jobType", f"summary:dev/{metric}",
                        f"summary:test/{metric}"],
    )
    return ws.Workspace(entity=entity, project=project, name=name or f"{group}: {metric}", sections=sections,
                        runset_settings=runset)


def spec(workspace: Any) -> dict[str, Any]:
    """The view as W&B stores it (JSON-ready), built without a network call."""
    return json.loads(workspace._to_model().model_dump_json(by_alias=True, exclude_none=True))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", help="a sweep folder (multirun/...) or a W&B group name")
    p.add_argument("--entity", default=None, help="W&B entity (user or team); required with --save")
    p.add_argument("--project", default="bsc_lightning", help="W&B project (conf/logger/wandb.yaml's default)")
    p.add_argument("--metric", default=None, help="main metric without prefix (default: the sweep's "
                   "task.main_metric)")
    p.add_argument("--name", default=None, help="the view's name (default: '<group>: <metric>')")
    p.add_argument("--save", action="store_true", help="create the view on W&B (online) and print its URL")
    args = p.parse_args(argv)
    folder = Path(args.sweep)
    group, metric = sweep_facts(folder) if folder.is_dir() else (args.sweep, None)
    metric = args.metric or metric
    if metric is None:
        raise SystemExit(f"{args.sweep}: no main metric found (not a sweep folder with config.yaml files); "
                         "give --metric, e.g. --metric map")
    metric = metric.split("/")[-1]
    if args.save and not args.entity:
        raise SystemExit("--save needs --entity (your W&B user or team)")
    workspace = build_workspace(args.entity or "<entity>", args.project, group, metric, args.name)
    if args.save:
        workspace.save()
        print(workspace.url)
    else:
        print(json.dumps(spec(workspace), indent=1))
    return {"group": group, "metric": metric, "workspace": workspace}


if __name__ == "__main__":
    main()
