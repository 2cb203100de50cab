"""Wiring between the Hydra entry point, the module, the optimiser, the loss and the data, checked by
values recorded from inside real fits (`bsc_lightning.run.train` on configs composed from conf/).

The recorders below are Lightning callbacks added with ``+callbacks.NAME._target_=test_wiring.X`` (the
way a user adds one); they write what they saw to JSON / torch files, so they also work in the
processes that ``ddp_spawn`` starts.

1. the gradient-cache step under DDP averages gradients over ranks: a 2-process fit takes the same
   optimiser step (parameter update) as one process on the global batch;
2. a learnable temperature sits in its own optimiser group (own LR, no weight decay) and moves;
3. the task's positive threshold reaches the loss the entry point builds (also inside combo, triplet);
4. the training step hands each side's duplicate ids (and the labels) to the right loss argument.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from fixtures import make_cfg

from bsc_lightning.run import train


def _wrap_loss(pl_module: L.LightningModule, calls: list[dict[str, Any]]) -> None:
    """Record the arguments and the value of every call of the module's loss."""
    loss = pl_module.loss
    inner = loss.forward

    def forward(q, a, labels=None, q_ids=None, a_ids=None):
        out = inner(q, a, labels, q_ids, a_ids)
        calls.append({
            "labels": None if labels is None else labels.tolist(),
            "q_ids": None if q_ids is None else q_ids.tolist(),
            "a_ids": None if a_ids is None else a_ids.tolist(),
            "rows": int(q.shape[0]),
            "loss": float(out.loss.detach()),
        })
        return out

    loss.forward = forward  # nn.Module.__call__ looks forward up on the instance first


# ------------------------------------------------------------------------------------------ recorders
class FirstStepDone(Exception):
    """Raised by StepRecorder(stop=True) once the first step is recorded: ends the run there."""


class StepRecorder(L.Callback):
    """Per rank, of the first training step: the batch rows, the loss value and the update of every
    parameter (after − before), saved to ``<path>/rank<r>.pt``.

    ``stop``: then end the run (FirstStepDone, after a barrier so that every rank has saved): under
    ddp_spawn, validation, checkpoints and the test phase's second spawn would double the test's time.
    """

    def __init__(self, path: str, stop: bool = False) -> None:
        self.path, self.stop = Path(path), stop
        self.calls: list[dict[str, Any]] = []
        self.before: dict[str, torch.Tensor] = {}
        self.rows: list[int] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        _wrap_loss(pl_module, self.calls)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0:
            self.rows = batch["index"].tolist()
            self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != 1 or not self.before:
            return
        delta = {n: p.detach() - self.before[n] for n, p in pl_module.named_parameters()}
        dtypes = {str(p.dtype) for p in pl_module.parameters()}
        self.path.mkdir(parents=True, exist_ok=True)
        torch.save({"rows": self.rows, "loss": self.calls[0]["loss"], "delta": delta, "dtypes": sorted(dtypes),
                    "world": trainer.world_size},
                   self.path / f"rank{trainer.global_rank}.pt")
        self.before = {}
        if self.stop:
            trainer.strategy.barrier("first-step-recorded")
            raise FirstStepDone(f"rank {trainer.global_rank}: first step recorded")


class OptimizerRecorder(L.Callback):
    """The optimiser's parameter groups at the start of training (what holds the loss's parameters,
    with which LR and weight decay) and the loss parameters' values before and after the fit."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.record: dict[str, Any] = {}

    def _loss_params(self, pl_module) -> dict[str, float]:
        return {n: float(p.detach()) for n, p in pl_module.loss.named_parameters()}

    def on_train_start(self, trainer, pl_module) -> None:
        loss_ids = {id(p): n for n, p in pl_module.loss.named_parameters()}
        groups = []
        for g in trainer.optimizers[0].param_groups:
            groups.append({"loss_params": sorted(loss_ids[id(p)] for p in g["params"] if id(p) in loss_ids),
                           "n_params": len(g["params"]), "lr": g["lr"], "initial_lr": g.get("initial_lr"),
                           "weight_decay": g["weight_decay"]})
        n_encoder = sum(1 for p in pl_module.encoder.parameters() if p.requires_grad)
        self.record = {"groups": groups, "n_encoder_params": n_encoder, "before": self._loss_params(pl_module),
                       "optimizer": type(trainer.optimizers[0]).__name__}

    def on_train_end(self, trainer, pl_module) -> None:
        self.record["after"] = self._loss_params(pl_module)
        self.record["steps"] = trainer.global_step
        self.path.write_text(json.dumps(self.record))


class ThresholdRecorder(L.Callback):
    """The positive threshold of the loss (and of a combo's BSC part) and of the module, at fit start."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_fit_start(self, trainer, pl_module) -> None:
        loss = pl_module.loss
        bsc = getattr(loss, "bsc", None)
        self.path.write_text(json.dumps({
            "loss": type(loss).__name__,
            "loss_threshold": getattr(loss, "positive_threshold", None),
            "bsc": None if bsc is None else type(bsc).__name__,
            "bsc_threshold": getattr(bsc, "positive_threshold", None),
            "module_threshold": pl_module.positive_threshold,
        }))


class LossArgsRecorder(L.Callback):
    """Every training batch's rows, what the data module's table holds for them, and what the loss got
    (its id arguments also turned back into texts)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.calls: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        _wrap_loss(pl_module, self.calls)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        table = trainer.datamodule.train_table
        idx = batch["index"].numpy()
        self.batches.append({"index": idx.tolist(), "table_a": table.a[idx].tolist(),
                             "table_b": table.b[idx].tolist(), "table_label": table.label[idx].tolist()})

    def on_train_end(self, trainer, pl_module) -> None:
        texts = trainer.datamodule.train_table.texts
        for call in self.calls:
            for side in ("q_ids", "a_ids"):
                call[f"texts_of_{side}"] = None if call[side] is None else [texts[i] for i in call[side]]
        self.path.write_text(json.dumps({"calls": self.calls, "batches": self.batches}))


# ------------------------------------------------------------------------------------------- helpers
@pytest.fixture
def base(tiny_bert, tmp_path) -> list[str]:
    return [f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=cpu", "data.batch_size=8",
            "data.limit_train=16", "data.limit_eval=16", "logger=none", "export=false",
            f"data.cache_dir={tmp_path / 'cache'}", "data.chunk_tokens=128"]


def stsb(data_root: Path) -> list[str]:
    return ["task=stsb", f"task.data_dir={data_root / 'stsb'}"]


def recorder(name: str, cls: str, path: Path) -> list[str]:
    return [f"+callbacks.{name}._target_=test_wiring.{cls}", f"+callbacks.{name}.path={path}"]


def stsb_train_rows(data_root: Path) -> list[tuple[str, str, float]]:
    """(s1, s2, score / 5) of the fixture's sts-train.csv, read here independently of the task reader."""
    with open(data_root / "stsb" / "sts-train.csv", newline="", encoding="utf-8") as f:
        return [(r[5].strip(), r[6].strip(), float(r[4]) / 5) for r in csv.reader(f, delimiter="\t",
                                                                                    quoting=csv.QUOTE_NONE)]


# ------------------------------------------------------------------------ 1. DDP gradient-cache step
# float64 end to end (Lightning's 64-true) and no dropout: the 2-process run differs from the
# one-process run only in summation order (~1e-16 relative); a gradient summed instead of averaged,
# or left un-reduced (each rank stepping on its own share of the loss), is off by O(1) of the update.
UPDATE_TOL = 1e-9
ONE_STEP = ["trainer.precision=64-true", "trainer.limit_train_batches=1", "data.limit_train=16",
            "data.limit_eval=8", "shuffle=random", "loss=symmetric", "loss.learn_temperature=true",
            # SGD: the update is -lr × gradient, so any error in the gradient's scale shows (Adam's first
            # step, lr × g/|g|, would hide a factor 2); no clipping, no warm-up for the same reason
            "model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=0.5",
            "model.optimizer.weight_decay=0.0", "model.temperature_lr=0.25", "model.warmup_ratio=0.0",
            "model.grad_clip=null"]


def _one_step(tiny_bert_no_dropout: str, data_root: Path, tmp: Path, name: str, devices: int,
              extra: list[str]) -> list[dict[str, Any]]:
    rec = tmp / f"{name}-steps"
    trainer = ["trainer=ddp_sim", "data.batch_size=4"] if devices == 2 else ["trainer=cpu", "data.batch_size=8"]
    cfg = make_cfg([f"encoder.name_or_path={tiny_bert_no_dropout}", "encoder.max_length=32", "logger=none",
                    "export=false", f"data.cache_dir={tmp / 'cache'}", *stsb(data_root), *ONE_STEP, *trainer,
                    *extra, *recorder("steps", "StepRecorder", rec), "+callbacks.steps.stop=true"])
    assert cfg.trainer.devices == devices
    with pytest.raises(BaseException) as stopped:  # spawned ranks' errors arrive wrapped
        train(cfg, tmp / name)
    assert "FirstStepDone" in f"{type(stopped.value).__name__}: {stopped.value}", stopped.value
    return [torch.load(rec / f"rank{r}.pt", weights_only=False) for r in range(devices)]


def _assert_same_update(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], what: str) -> None:
    assert got.keys() == want.keys()
    scale = max(float(w.abs().max()) for w in want.values())
    for n, w in want.items():
        err = float((got[n] - w).abs().max()) if w.numel() else 0.0
        assert err <= UPDATE_TOL * scale, f"{what}: parameter {n} update differs by {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("extra", [["model.cache_chunk_size=4"],
                                   pytest.param([], marks=pytest.mark.slow)], ids=["cached", "plain"])
def test_ddp_step_equals_one_process_on_the_global_batch(tiny_bert_no_dropout, data_root, tmp_path, extra):
    """trainer=ddp_sim (2 gloo processes, ddp_spawn) with the gradient cache takes the same optimiser step
    as one process on the concatenated global batch: the cached step's own all-reduce averages (not sums)
    the gradients of every parameter, the learnable temperature included, exactly once."""
    ddp = _one_step(tiny_bert_no_dropout, data_root, tmp_path, "ddp", 2, extra)
    one = _one_step(tiny_bert_no_dropout, data_root, tmp_path, "one", 1, extra)[0]
    assert [r["world"] for r in ddp] == [2, 2] and one["world"] == 1
    assert ddp[0]["dtypes"] == ddp[1]["dtypes"] == one["dtypes"] == ["torch.float64"]
    # the two ranks trained on the two halves of the one process's batch
    assert len(ddp[0]["rows"]) == len(ddp[1]["rows"]) == 4
    assert ddp[0]["rows"] + ddp[1]["rows"] == one["rows"]
    # local_loss: each rank holds its share of the global loss; their mean is the global loss
    assert (ddp[0]["loss"] + ddp[1]["loss"]) / 2 == pytest.approx(one["loss"], rel=1e-12, abs=1e-12)
    # a real step: the encoder and the temperature moved
    want = one["delta"]
    assert float(want["loss.alpha"].abs()) > 1e-6
    assert max(float(d.abs().max()) for n, d in want.items() if n.startswith("encoder.")) > 1e-6
    for r in (0, 1):
        _assert_same_update(ddp[r]["delta"], want, f"rank {r} vs one process")


# --------------------------------------------------------------------------- 2. learnable temperature
@pytest.mark.parametrize("extra", [["loss=symmetric", "loss.learn_temperature=true"],
                                   ["loss=symmetric", "loss.learn_temperature=true", "model.cache_chunk_size=4"],
                                   ["loss=combo", "loss.bsc.learn_temperature=true"]],
                         ids=["symmetric", "symmetric-cached", "combo"])
def test_learnable_temperature_has_its_own_group_and_moves(base, data_root, tmp_path, extra):
    out = tmp_path / "model.json"
    lr, temperature_lr, decay = 1e-5, 0.05, 0.01
    cfg = make_cfg(base + stsb(data_root) + extra + [
        "data.limit_train=48", f"model.optimizer.lr={lr}", f"model.optimizer.weight_decay={decay}",
        f"model.temperature_lr={temperature_lr}", "model.warmup_ratio=0.0", *recorder("opt", "OptimizerRecorder", out)])
    train(cfg, tmp_path / "run")
    rec = json.loads(out.read_text())
    name = "alpha" if "loss=symmetric" in extra else "bsc.alpha"
    assert list(rec["before"]) == [name]  # the loss's only trainable parameter: α = 1/τ
    assert rec["before"][name] == pytest.approx(1 / 0.1)
    holding = [g for g in rec["groups"] if g["loss_params"]]
    assert len(holding) == 1, rec["groups"]  # in the optimiser, exactly once
    group = holding[0]
    assert group["loss_params"] == [name] and group["n_params"] == 1  # in a group of its own
    assert group["initial_lr"] == pytest.approx(temperature_lr) and group["lr"] == pytest.approx(temperature_lr)
    assert group["weight_decay"] == 0.0
    others = [g for g in rec["groups"] if not g["loss_params"]]
    assert sum(g["n_params"] for g in others) == rec["n_encoder_params"]  # every encoder parameter, once
    assert all(g["initial_lr"] == pytest.approx(lr) for g in others)
    assert sorted(g["weight_decay"] for g in others) == [0.0, decay]  # no decay on biases / LayerNorm
    # it moved, by far more than the encoder's LR could move it in these steps (Adam steps ≲ 3 × lr)
    assert rec["steps"] == 6
    moved = abs(rec["after"][name] - rec["before"][name])
    assert moved > 1e-3 > 3 * lr * rec["steps"], rec


# ------------------------------------------------------------------------ 3. the task's positive cut
@pytest.mark.parametrize("loss,extra,field,want", [
    ("symmetric", [], "loss_threshold", 0.6),
    ("oneway", [], "loss_threshold", 0.6),
    ("combo", [], "bsc_threshold", 0.6),
    ("triplet", [], "loss_threshold", 0.6),
    ("symmetric", ["loss.positive_threshold=0.8"], "loss_threshold", 0.8),  # an explicit value wins
    ("combo", ["loss.bsc.positive_threshold=0.8"], "bsc_threshold", 0.8),
], ids=["symmetric", "oneway", "combo", "triplet", "symmetric-explicit", "combo-explicit"])
def test_task_positive_threshold_reaches_the_loss(base, data_root, tmp_path, loss, extra, field, want):
    """STS-B's cut (0.6, not any loss default 0.5) is what the loss built by the entry point uses."""
    out = tmp_path / "threshold.json"
    cfg = make_cfg(base + stsb(data_root) + [f"loss={loss}", *extra, *recorder("thr", "ThresholdRecorder", out)])
    train(cfg, tmp_path / "run")
    rec = json.loads(out.read_text())
    assert rec[field] == pytest.approx(want), rec
    assert rec["module_threshold"] == pytest.approx(0.6)  # the metrics keep the task's own cut


def test_custom_task_threshold_reaches_the_loss(base, tmp_path):
    """A task's own cut (here a custom task's option 0.3) reaches the BSC part of combo."""
    rows = ["text_a,text_b,label"] + [f"question number {i} here,answer {i % 7} there,{(i % 10) / 10}"
                                      for i in range(40)]
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "threshold.json"
    cfg = make_cfg(base + ["task=custom", f"task.data_dir={tmp_path}", "task.type=regression",
                           "task.main_metric=spearman",
                           "task.positive_threshold=0.3", "loss=combo",
                           *recorder("thr", "ThresholdRecorder", out)])
    train(cfg, tmp_path / "run")
    rec = json.loads(out.read_text())
    assert rec["bsc_threshold"] == pytest.approx(0.3) and rec["module_threshold"] == pytest.approx(0.3), rec


# ---------------------------------------------------------------------- 4. duplicate ids to the loss
@pytest.mark.parametrize("extra", [[], ["model.cache_chunk_size=4"]], ids=["plain", "cached"])
def test_training_step_passes_each_sides_ids_to_the_loss(base, data_root, tmp_path, extra):
    """The loss gets (labels, q_ids, a_ids) of the batch rows: q_ids = the rows' first-side text ids,
    a_ids = the second-side ones (distinct id ranges here: no text is on both sides)."""
    out = tmp_path / "args.json"
    # shuffle=none: batches are file rows 0-15, 16-31, 32-47, and the fixture repeats a first side of
    # rows 0-5 in row 6, so equal ids inside a batch are exercised too
    cfg = make_cfg(base + stsb(data_root) + ["loss=symmetric", "data.limit_train=48", "data.batch_size=16",
                                             "shuffle=none", *extra, *recorder("args", "LossArgsRecorder", out)])
    train(cfg, tmp_path / "run")
    rec = json.loads(out.read_text())
    calls, batches = rec["calls"], rec["batches"]
    assert len(batches) == 3 and len(calls) == len(batches)  # one loss call per training step
    file_rows = stsb_train_rows(data_root)
    seen: list[int] = []
    for call, batch in zip(calls, batches):
        assert call["rows"] == len(batch["index"])
        assert call["q_ids"] == batch["table_a"], "q_ids is not the first side's text ids"
        assert call["a_ids"] == batch["table_b"], "a_ids is not the second side's text ids"
        assert call["labels"] == pytest.approx(batch["table_label"])
        assert set(call["q_ids"]).isdisjoint(call["a_ids"])  # a swap or a repeat of one side would show
        # and the ids name the texts of the file's rows (train rows keep the file order)
        assert call["texts_of_q_ids"] == [file_rows[i][0] for i in batch["index"]]
        assert call["texts_of_a_ids"] == [file_rows[i][1] for i in batch["index"]]
        assert call["labels"] == pytest.approx([file_rows[i][2] for i in batch["index"]], abs=1e-6)
        seen += batch["index"]
    assert seen == list(range(48))
    assert any(len(set(c["q_ids"])) < len(c["q_ids"]) for c in calls)
