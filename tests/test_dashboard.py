"""The W&B dashboard of a sweep (bsc_lightning.dashboard), offline: the view's spec is built without a network
call, so what it filters, groups and plots is checked here against what the runs write."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fixtures import make_cfg

from bsc_lightning import dashboard
from bsc_lightning.run import wandb_run_args


def fake_sweep(root: Path, metric: str = "map", metrics: tuple[str, ...] | None = None) -> Path:
    sweep = root / "2026-11-28_10-00-00"
    for i, m in enumerate(metrics or (metric, metric)):
        job = sweep / f"{i}_loss=combo,seed={i}"
        job.mkdir(parents=True)
        (job / "config.yaml").write_text(yaml.safe_dump({"task": {"name": "wikiqa", "main_metric": m}, "seed": i}))
    return sweep


def panels(spec: dict) -> dict[str, list[dict]]:
    sections = spec["spec"]["section"]["panelBankConfig"]["sections"]
    return {s["name"]: [p["config"] for p in s["panels"]] for s in sections}


def test_sweep_folder_gives_group_metric_and_grouped_panels(tmp_path, capsys):
    sweep = fake_sweep(tmp_path)
    out = dashboard.main([str(sweep), "--project", "proj"])
    spec = json.loads(capsys.readouterr().out)
    assert out["group"] == sweep.name and out["metric"] == "map"
    assert spec["project"] == "proj" and spec["displayName"] == f"{sweep.name}: map"
    (runset,) = spec["spec"]["section"]["runSets"]
    (flt,) = runset["filters"]["filters"]
    assert flt["key"] == {"section": "run", "name": "group"} and flt["value"] == sweep.name
    assert runset["grouping"] == [{"section": "config", "name": "setting.value"}]
    assert {"config:setting", "summary:test/map", "summary:dev/map"} <= set(runset["runFeed"]["columnOrder"])
    got = panels(spec)
    lines = got["dev metric and loss"]
    assert [c["metrics"] for c in lines] == [["val/map"], ["train/loss"]]
    assert all(c["xAxis"] == "trainer/global_step" and c["groupAgg"] == "mean" and c["groupArea"] == "stddev"
               for c in lines)
    assert [c["metrics"] for c in got["results"]] == [["test/map"], ["dev/map"]]
    assert [c["metrics"] for c in got["temperature"]] == [["train/temperature"]]


def test_metric_flag_and_group_name(capsys):
    out = dashboard.main(["my-group", "--metric", "dev/spearman", "--name", "v"])
    spec = json.loads(capsys.readouterr().out)
    assert out["metric"] == "spearman" and spec["displayName"] == "v"
    assert panels(spec)["results"][0]["metrics"] == ["test/spearman"]


def test_bad_input_errors(tmp_path):
    with pytest.raises(SystemExit, match="different main metrics"):
        dashboard.main([str(fake_sweep(tmp_path / "a", metrics=("map", "f1")))])
    with pytest.raises(SystemExit, match="give --metric"):
        dashboard.main(["some-group"])
    with pytest.raises(SystemExit, match="needs --entity"):
        dashboard.main([str(fake_sweep(tmp_path / "b")), "--save"])


def test_runs_carry_the_keys_the_view_reads(tmp_path):
    """The view groups by config.setting and plots trainer/global_step: the run's W&B arguments must carry
    that config key, and it must not depend on the seed (else every seed is its own group)."""
    args = [wandb_run_args(make_cfg([f"seed={s}", "task=wikiqa"]), tmp_path / "run", "stage1") for s in (1, 2)]
    settings = {a["config"][dashboard.SETTING_KEY] for a in args}
    assert len(settings) == 1 and "seed" not in settings.pop()
    assert args[0]["name"] != args[1]["name"]
    # the variants of a `choose` run: a run and a setting each
    variants = [wandb_run_args(make_cfg(["task=wikiqa"]), tmp_path / "run" / "choose" / v, "stage1") for v in "ab"]
    assert [a["name"] for a in variants] == ["wikiqa-BSCLoss-seed0/a", "wikiqa-BSCLoss-seed0/b"]
    assert [a["config"][dashboard.SETTING_KEY] for a in variants] == ["wikiqa-BSCLoss/a", "wikiqa-BSCLoss/b"]
