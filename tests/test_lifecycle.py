"""The run lifecycle through real fits: batches rebuilt every epoch, resume after a crash or `kill -9`,
no overwriting of an earlier run, logs kept under spawned DDP ranks, data checked before training."""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from test_run import make_cfg

from bsc_lightning.data.datamodule import PairDataModule
from bsc_lightning.data.tasks import DataError
from bsc_lightning.run import RunDirError, train

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["cat", "dog", "bird", "fish", "tree", "car", "road", "house", "river", "stone", "cloud", "rain", "sun",
         "moon", "star", "light"]


def write_pairs(folder: Path, n_train: int = 40, n_eval: int = 24, positives: bool = True,
                repeat_first: int = 1) -> Path:
    """custom-task CSVs: odd rows share three words across sides (label 1), even rows none (label 0);
    with ``repeat_first`` > 1, each first side comes with that many second sides (ranking-like)."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        rows, a = ["text_a,text_b,label"], ""
        for i in range(n):
            if i % repeat_first == 0:
                a = " ".join(rng.sample(WORDS, 5)) + f" {split}{i}"
            pos = positives and i % 2 == 1
            b = " ".join(a.split()[:3] + rng.sample(WORDS, 2)) if pos else " ".join(rng.sample(WORDS, 5))
            rows.append(f"{a},{b} {i},{int(pos)}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def pairs(tmp_path) -> Path:
    return write_pairs(tmp_path / "data")


def overrides(tiny_bert: str, data: Path, tmp: Path, *extra: str) -> list[str]:
    return [f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=cpu", "data.batch_size=8",
            "trainer.log_every_n_steps=1", "logger=csv", f"data.cache_dir={tmp / 'cache'}",
            "task=custom", f"task.data_dir={data}", "export=false", *extra]


def csv_rows(out: Path, stage: str = "stage1") -> list[dict[str, str]]:
    with open(out / "logs" / stage / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


class EpochRecorder(L.Callback):
    """Records the rows of every training batch, per epoch."""

    def __init__(self) -> None:
        self.epochs: dict[int, list[list[int]]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.epochs.setdefault(trainer.current_epoch, []).append(batch["index"].tolist())


class CrashError(RuntimeError):
    pass


class Crash(L.Callback):
    """Stops the run after a given optimiser step: SIGKILL (no cleanup at all) or an exception."""

    def __init__(self, step: int, kill: bool = False) -> None:
        self.step, self.kill = step, kill

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise CrashError(f"crash at step {self.step}")


def with_callback(monkeypatch, callback: L.Callback, stage: str | None = None) -> None:
    """Make train() add ``callback`` (first) to the trainer of ``stage`` (every stage when None)."""
    from bsc_lightning import run

    build = run.build_trainer

    def wrapped(cfg, out, stage_, epochs):
        trainer = build(cfg, out, stage_, epochs)
        if stage in (None, stage_):
            trainer.callbacks.insert(0, callback)
        return trainer

    monkeypatch.setattr(run, "build_trainer", wrapped)


# ------------------------------------------------------------------------------------------ epochs
@pytest.mark.parametrize("shuffle", ["random", "words", "example", "clusters"])
def test_every_epoch_builds_new_batches(tiny_bert, pairs, tmp_path, monkeypatch, shuffle):
    embedded: list[torch.Tensor] = []
    original = PairDataModule.embed_first_sides

    def spy(self):
        emb = original(self)
        embedded.append(emb.detach().cpu().clone())
        return emb

    monkeypatch.setattr(PairDataModule, "embed_first_sides", spy)
    rec = EpochRecorder()
    extra = [f"shuffle={shuffle}", "trainer.max_epochs=3", "model.optimizer.lr=1e-3"]
    if shuffle == "clusters":
        extra.append("shuffle.n_clusters=4")
    cfg = make_cfg(overrides(tiny_bert, pairs, tmp_path, *extra))
    out = tmp_path / "run"
    with_callback(monkeypatch, rec)
    train(cfg, out)
    assert sorted(rec.epochs) == [0, 1, 2]
    orders = [tuple(i for b in rec.epochs[e] for i in b) for e in range(3)]
    for order in orders:
        assert sorted(order) == list(range(40))  # every pair once per epoch
    assert len(set(orders)) == 3, "the epoch order was replayed"
    if shuffle in ("example", "clusters"):
        # re-embedded once per epoch with the weights of that moment
        assert len(embedded) == 3
        assert not torch.allclose(embedded[0], embedded[1]) and not torch.allclose(embedded[1], embedded[2])
    else:
        assert embedded == []
    rows = csv_rows(out)
    assert sum(1 for r in rows if r.get("batching/n_batches")) == 3  # batch statistics once per epoch


# ------------------------------------------------------------------------------------------ resume
def test_killed_run_resumes_to_the_same_result(tiny_bert, pairs, tmp_path):
    """kill -9 in the middle of epoch 2 of 3, resume=true: the same metrics.json as without the kill.

    Exact equality up to float32 printing: on CPU with `deterministic` the resumed run replays the same
    operations on the same batches, weights, optimiser moments, LR and RNG stream, so any difference is
    a lost piece of state, not noise."""
    common = overrides(tiny_bert, pairs, tmp_path, "trainer.max_epochs=3", "checkpoint.every_n_steps=2",
                       "model.optimizer.lr=1e-3")
    ref = train(make_cfg(common), tmp_path / "ref")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "bsc_lightning.run", *common, f"hydra.run.dir={out}"]

    def sh(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300,
                              check=False)

    # 5 batches per epoch: step 7 is the 2nd batch of epoch 2; last.ckpt was saved at step 6
    killed = sh("+callbacks.crash._target_=test_lifecycle.Crash", "+callbacks.crash.step=7",
                "+callbacks.crash.kill=true")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "metrics.json").exists()
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6 and last["epoch"] == 1
    # a plain re-run into the folder is refused, with the way out in the message
    refused = sh()
    assert refused.returncode != 0 and "resume=true" in refused.stderr and "hydra.run.dir" in refused.stderr
    resumed = sh("resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # quiet console: no transformers load report, no Lightning advert, no library deprecation warnings
    for noise in ("LOAD REPORT", "Tip:", "litmodels", "DeprecationWarning", "FutureWarning"):
        assert noise not in resumed.stderr + resumed.stdout, noise
    got = json.loads((out / "metrics.json").read_text())
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-7)
    # the logs of the first attempt are kept: epoch 0's rows are still there after the resume
    rows = csv_rows(out)
    assert any(r.get("epoch") == "0" and r.get("val/f1") for r in rows)
    assert sum(1 for r in rows if r.get("batching/n_batches")) == 3


def test_sequential_run_resumes_in_stage_two(tiny_bert, pairs, tmp_path, monkeypatch):
    common = overrides(tiny_bert, pairs, tmp_path, "trainer.max_epochs=1", "+stage2.max_epochs=2",
                       "+loss@stage2.loss=mse", "checkpoint.every_n_steps=2", "model.optimizer.lr=1e-3")
    ref = train(make_cfg(common), tmp_path / "ref")
    out = tmp_path / "run"
    # stage 1: steps 1-5; stage 2 counts its own steps: crash at its step 3 (last.ckpt at its step 2)
    with monkeypatch.context() as m:
        with_callback(m, Crash(3), stage="stage2")
        with pytest.raises(CrashError):
            train(make_cfg(common), out)
    assert (out / "checkpoints" / "stage1-best.ckpt").is_file() and not (out / "metrics.json").exists()
    got = train(make_cfg(common + ["resume=true"]), out)
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-7)
    assert (out / "checkpoints" / "stage2-best.ckpt").is_file()


@pytest.mark.parametrize("keep,extra", [(True, []), (False, []), (False, ["interpolate=[0.5,1]"])],
                         ids=["keep", "delete", "delete-interpolated"])
def test_resume_of_a_finished_run_keeps_its_metrics(tiny_bert, pairs, tmp_path, keep, extra):
    """checkpoint.keep=false: the checkpoints are gone once metrics.json is written (also when the tested weights
    were interpolated, not a checkpoint's); the run stays finished."""
    keep_it = f"checkpoint.keep={str(keep).lower()}"
    cfg = make_cfg(overrides(tiny_bert, pairs, tmp_path, "data.limit_train=16", keep_it, *extra))
    out = tmp_path / "run"
    first = train(cfg, out)
    assert sorted(p.name for p in (out / "checkpoints").glob("*")) == (
        ["last.ckpt", "stage1-best.ckpt"] if keep else [])
    assert (out / "checkpoints").exists() is keep
    before = (out / "metrics.json").read_text()
    with pytest.raises(RunDirError, match=r"resume=true.*hydra\.run\.dir"):
        train(cfg, out)
    assert (out / "metrics.json").read_text() == before
    assert train(make_cfg(overrides(tiny_bert, pairs, tmp_path, "data.limit_train=16", keep_it, *extra,
                                    "resume=true")), out) == first
    with pytest.raises(RunDirError, match="no checkpoint"):
        train(make_cfg(overrides(tiny_bert, pairs, tmp_path, f"resume={tmp_path / 'nope.ckpt'}")),
              tmp_path / "other")


# --------------------------------------------------------------------------------- data checks
@pytest.mark.parametrize("loss,fails", [("symmetric", True), ("combo", True), ("triplet", True), ("mse", False)])
def test_no_positive_pair_stops_a_contrastive_loss(tiny_bert, tmp_path, loss, fails):
    data = write_pairs(tmp_path / "neg", positives=False)
    cfg = make_cfg(overrides(tiny_bert, data, tmp_path, f"loss={loss}", "data.limit_train=16"))
    if fails:
        with pytest.raises(DataError, match="no positive pair"):
            train(cfg, tmp_path / "run")
        assert not (tmp_path / "run" / "checkpoints").exists()
    else:
        assert "test/f1" in train(cfg, tmp_path / "run")


# ------------------------------------------------------------------------------------ DDP spawn
def test_ddp_spawn_keeps_logs_and_rebuilds_batches(tiny_bert, tmp_path):
    data = write_pairs(tmp_path / "data", n_train=32, n_eval=16)
    out = tmp_path / "run"
    cfg = make_cfg(overrides(tiny_bert, data, tmp_path, "trainer=ddp_sim", "data.batch_size=4",
                             "trainer.max_epochs=2", "shuffle=random",
                             "+callbacks.rec._target_=test_ddp_run.BatchRecorder",
                             f"+callbacks.rec.path={tmp_path / 'batches'}"))
    (out).mkdir()
    (out / "run.log").write_text("")
    metrics = train(cfg, out)
    rows = csv_rows(out)
    assert sum(1 for r in rows if r.get("train/loss")) == 8  # 4 steps × 2 epochs, logged every step
    assert sorted(r["epoch"] for r in rows if r.get("val/f1")) == ["0", "1"]
    assert sum(1 for r in rows if r.get("batching/n_batches")) == 2
    assert any(r.get("test/f1") for r in rows) and metrics["test/f1"] == pytest.approx(
        float(next(r["test/f1"] for r in rows if r.get("test/f1"))))
    log_text = (out / "run.log").read_text()
    assert log_text.count("epoch batches") == 2  # rank 0's lines reach the run's log file
    r0, r1 = (json.loads((tmp_path / "batches" / f"rank{r}.json").read_text()) for r in (0, 1))
    epoch0, epoch1 = r0[:4] + r1[:4], r0[4:] + r1[4:]
    assert sorted(i for b in epoch0 for i in b) == sorted(i for b in epoch1 for i in b) == list(range(32))
    assert r0[:4] != r0[4:]  # a new order in epoch 2, built identically on both ranks (checked in run)
