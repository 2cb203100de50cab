"""W&B for sweeps and sequential runs, offline: one run per job and per stage, named by the job's settings,
grouped by the sweep, job_type = stage, tags from the choices, the resolved config as the run config and
metrics.json as the last stage's summary. Read back from the offline `.wandb` files (their records are
protobufs in a LevelDB-style log; offline runs write no wandb-summary.json).

Also the sequential experiments for any task: experiment=bsc_then_mse / mse_then_bsc.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from fixtures import make_cfg
from test_run import task_overrides
from test_sweep import SETTINGS, multirun

from bsc_lightning.run import train


def records(path: Path):
    """The protobuf records of a `.wandb` file: 7-byte header, 32 KiB blocks of (crc, length, type) chunks."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:  # block padding
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def read_run(run_dir: Path) -> dict[str, Any]:
    """name, group, job_type, tags, config, summary (last values) and metric definitions of an offline run."""
    (path,) = run_dir.glob("*.wandb")
    run: dict[str, Any] = {"config": {}, "summary": {}, "metrics": [], "exit": None}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.update(id=r.run.run_id, name=r.run.display_name, group=r.run.run_group, job_type=r.run.job_type,
                       tags=list(r.run.tags))
            run["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "summary":
            for i in r.summary.update:
                key = i.key or (i.nested_key[0] if len(i.nested_key) == 1 else None)
                if key is not None:
                    run["summary"][key] = json.loads(i.value_json)
        elif kind == "metric":
            run["metrics"].append(r.metric)
        elif kind == "exit":
            run["exit"] = r.exit.exit_code
    return run


def runs_under(folder: Path) -> list[dict[str, Any]]:
    # run.finish() can return before W&B's service has written the run's last records (one CI run, on loaded
    # cores, read a stage's file without its run record); teardown waits for the service to flush and stop.
    import wandb
    wandb.teardown()
    return [read_run(d) for d in sorted((folder / "wandb").glob("offline-run-*"))]


def check_val_max(run: dict[str, Any]) -> None:
    assert any(m.glob_name == "val/*" and m.summary.max for m in run["metrics"]), run["metrics"]


# ------------------------------------------------------------------------------------------ multirun
def test_multirun_gives_one_wandb_run_per_job(tiny_bert, data_root, tmp_path_factory):
    sweep = multirun(tiny_bert, data_root, tmp_path_factory)  # shared with test_sweep (one subprocess)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    ids = set()
    for seed, job in zip((1, 2), jobs):
        (run,) = runs_under(job)  # one stage, one run, in the job's own folder
        ids.add(run["id"])
        assert run["name"] == SETTINGS.replace("encoder.max_length=32", f"encoder.max_length=32,seed={seed}")
        assert run["group"] == sweep.name and run["job_type"] == "stage1" and run["exit"] == 0
        assert {"task=stsb", "loss=symmetric", "shuffle=random", "encoder=minilm"} <= set(run["tags"])
        assert run["config"]["seed"] == seed and run["config"]["data"]["batch_size"] == 8
        assert run["config"]["setting"] == SETTINGS  # seeds of one setting share it (the dashboard's groups)
        assert run["config"]["task"]["data_dir"] == str(data_root / "stsb")  # resolved values
        metrics = json.loads((job / "metrics.json").read_text())
        for k, v in metrics.items():
            assert run["summary"][k] == pytest.approx(v), k
        check_val_max(run)
    assert len(ids) == 2


# ----------------------------------------------------------------------------------- sequential runs
@pytest.fixture
def base(tiny_bert, tmp_path) -> list[str]:
    return [f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=cpu", "data.batch_size=8",
            "data.limit_train=48", "data.limit_eval=40", "trainer.log_every_n_steps=1", "export=false",
            f"data.cache_dir={tmp_path / 'cache'}", "data.chunk_tokens=128"]


@pytest.mark.parametrize("experiment,first,second", [("bsc_then_mse", "BSCLoss", "MSELoss"),
                                                      ("mse_then_bsc", "MSELoss", "BSCLoss"),
                                                      ("stsb_bsc_then_mse", "BSCLoss", "MSELoss")])
@pytest.mark.parametrize("task", ["mrpc", "wikiqa"])
def test_sequential_experiments_compose_for_any_task(experiment, first, second, task):
    cfg = make_cfg([f"experiment={experiment}", f"task={task}", "trainer.max_epochs=2"])
    assert cfg.loss._target_.endswith(first) and cfg.stage2.loss._target_.endswith(second)
    assert cfg.stage2.max_epochs == 2
    bsc = cfg.loss if first == "BSCLoss" else cfg.stage2.loss
    assert bsc.symmetric is True and bsc.positive_threshold == 0.5  # the task's, wherever BSC is mounted
    assert cfg.task.name == task  # the command line's task (the generic experiments override none)
    assert make_cfg([f"experiment={experiment}"]).task.name == "stsb"


def test_two_stage_run_gives_one_wandb_run_per_stage(base, data_root, tmp_path, monkeypatch):
    """experiment=bsc_then_mse on MRPC (any task), logger=wandb offline: stage1 and stage2 are two runs."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    cfg = make_cfg(base + task_overrides("mrpc", data_root, tmp_path) + ["experiment=bsc_then_mse", "logger=wandb"])
    metrics = train(cfg, out)
    assert (out / "checkpoints" / "stage1-best.ckpt").is_file() and (out / "checkpoints" / "stage2-best.ckpt").is_file()
    runs = {r["job_type"]: r for r in runs_under(out)}
    assert set(runs) == {"stage1", "stage2"} and runs["stage1"]["id"] != runs["stage2"]["id"]
    for stage, run in runs.items():
        assert run["name"] == f"mrpc-BSCLoss-seed0/{stage}" and run["group"] == "run" and run["exit"] == 0
        assert run["config"]["setting"] == "mrpc-BSCLoss"
        assert {"task=mrpc", "stage2.loss=MSELoss"} <= set(run["tags"])
        assert run["config"]["stage2"]["loss"]["_target_"].endswith("MSELoss")
        assert run["config"]["loss"]["positive_threshold"] == 0.5  # resolved
        check_val_max(run)
    assert not any(k.startswith("test/") for k in runs["stage1"]["summary"])
    for k, v in metrics.items():  # metrics.json is the last stage's summary
        assert runs["stage2"]["summary"][k] == pytest.approx(v), k
    assert runs["stage2"]["summary"]["test/threshold"] == pytest.approx(metrics["dev/threshold"])


def test_mse_then_bsc_tiny_run(base, data_root, tmp_path):
    out = tmp_path / "run"
    cfg = make_cfg(base + task_overrides("wikiqa", data_root, tmp_path) + ["experiment=mse_then_bsc", "logger=csv"])
    metrics = train(cfg, out)
    assert (out / "checkpoints" / "stage1-best.ckpt").is_file() and (out / "checkpoints" / "stage2-best.ckpt").is_file()
    assert {"dev/map", "test/map"} <= set(metrics)
    assert {p.name for p in (out / "logs").iterdir()} == {"stage1", "stage2"}
