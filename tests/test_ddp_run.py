"""A 2-process DDP fit through Hydra's configs (trainer=ddp_sim: gloo on CPU, spawn)."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
from test_run import make_cfg

from bsc_lightning.run import train


class BatchRecorder(L.Callback):
    """Writes the training rows each rank saw, step by step, to <path>/rank<r>.json."""

    def __init__(self, path: str) -> None:
        self.path, self.steps = Path(path), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append(batch["index"].tolist())

    def on_train_end(self, trainer, pl_module) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.steps))


@pytest.mark.parametrize("extra", [[], pytest.param(["model.cache_chunk_size=4"], marks=pytest.mark.slow)],
                         ids=["plain", "cached"])
def test_ddp_sim_fit_end_to_end(tiny_bert, data_root, tmp_path, extra):
    rec = tmp_path / "batches"
    cfg = make_cfg([f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=ddp_sim",
                    "data.batch_size=4", "data.limit_train=42", "data.limit_eval=24", "logger=csv",
                    f"data.cache_dir={tmp_path / 'cache'}", "task=stsb", f"task.data_dir={data_root / 'stsb'}",
                    "shuffle=example", "export=false", "+callbacks.rec._target_=test_ddp_run.BatchRecorder",
                    f"+callbacks.rec.path={rec}"] + extra)
    out = tmp_path / "run"
    metrics = train(cfg, out)
    saved = json.loads((out / "metrics.json").read_text())
    assert "test/spearman" in saved and saved == pytest.approx(metrics)
    # one output folder for the run: child ranks wrote nothing of their own (no second logs/ or
    # lightning_logs/, no rank folders); run.log is the run's text log when run.py writes one; no scores/:
    # under ddp_spawn the pair scores stay in the spawned ranks (README, "Choosing what to run")
    names = {p.name for p in out.iterdir()}
    assert {"checkpoints", "config.yaml", "logs", "metrics.json"} <= names <= {
        "checkpoints", "config.yaml", "logs", "metrics.json", "run.log"}, sorted(names)
    assert [p.name for p in (out / "logs").iterdir()] == ["stage1"], list((out / "logs").iterdir())
    # each step: both ranks got equal, disjoint slices of one global batch; over the epoch every
    # pair was seen once (42 pairs, global batch 8: 5 full batches + 2 of the last 2 kept, split 1 + 1)
    r0, r1 = (json.loads((rec / f"rank{r}.json").read_text()) for r in (0, 1))
    assert [len(s) for s in r0] == [len(s) for s in r1] == [4, 4, 4, 4, 4, 1]
    seen = [i for s in r0 + r1 for i in s]
    assert sorted(seen) == list(range(42))


@pytest.mark.slow  # ~2 min: three spawned passes after the fit
def test_ddp_sim_interpolation_matches_one_process(tiny_bert, data_root, tmp_path):
    """interpolate=[0.5, 1] under 2 spawned ranks: each α's dev score and the chosen α's test score are those
    experiments/interpolate.py computes in one process from the same checkpoint."""
    import importlib.util

    cfg = make_cfg([f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=ddp_sim",
                    "data.batch_size=4", "data.limit_train=42", "data.limit_eval=24", "logger=csv",
                    f"data.cache_dir={tmp_path / 'cache'}", "task=stsb", f"task.data_dir={data_root / 'stsb'}",
                    "export=false", "model.optimizer.lr=1e-3", "interpolate=[0.5,1]"])
    out = tmp_path / "run"
    metrics = train(cfg, out)
    spec = importlib.util.spec_from_file_location("interpolate_script",
                                                  Path(__file__).resolve().parents[1] / "experiments" / "interpolate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    offline = script.evaluate_alphas(out, [0.5, 1.0])
    for a in ("0.5", "1.0"):
        assert metrics[f"interpolate/dev_spearman@{float(a):g}"] == pytest.approx(offline[a]["dev/spearman"], abs=1e-5)
    chosen = str(metrics["interpolate/alpha"])
    assert metrics["test/spearman"] == pytest.approx(offline[chosen]["test/spearman"], abs=1e-5)
    assert metrics["dev/spearman"] == pytest.approx(offline[chosen]["dev/spearman"], abs=1e-5)


@pytest.mark.slow  # ~2 min: two spawned fits
def test_ddp_sim_choose_trains_each_variant_under_two_ranks(tiny_bert, data_root, tmp_path):
    """choose={...} under 2 spawned ranks: each variant is a DDP run of its own with its overrides, and the run's
    metrics.json is the variant with the better dev score, written once."""
    cfg = make_cfg([f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=ddp_sim",
                    "data.batch_size=4", "data.limit_train=42", "data.limit_eval=24", "logger=csv",
                    f"data.cache_dir={tmp_path / 'cache'}", "task=stsb", f"task.data_dir={data_root / 'stsb'}",
                    "export=false", ("choose={slow: {model: {optimizer: {lr: 1e-6}}}, fast: {model: {optimizer: "
                                     "{lr: 1e-3}}}}")])
    out = tmp_path / "run"
    metrics = train(cfg, out)
    runs = {n: json.loads((out / "choose" / n / "metrics.json").read_text()) for n in ("slow", "fast")}
    assert runs["slow"]["dev/spearman"] != runs["fast"]["dev/spearman"]  # the lr reached each variant
    chosen = max(runs, key=lambda n: runs[n]["dev/spearman"])
    assert metrics[f"choose/{chosen}"] == 1.0
    assert {k: v for k, v in metrics.items() if not k.startswith("choose/")} == pytest.approx(runs[chosen])
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    assert sorted(p.name for p in out.iterdir()) == ["choose", "config.yaml", "metrics.json"]


@pytest.mark.slow  # ~3 min: two spawned fits, then the soups' spawned validations
def test_ddp_sim_soup_validates_the_variants_weights_under_two_ranks(tiny_bert, data_root, tmp_path):
    """soup=true under 2 spawned ranks: the soup reads the variants' exported encoders (written by rank 0), its
    dev score of the best variant alone is that variant's own, and the run's choice follows the soups' dev."""
    cfg = make_cfg([f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=ddp_sim",
                    "data.batch_size=4", "data.limit_train=42", "data.limit_eval=24", "logger=csv",
                    f"data.cache_dir={tmp_path / 'cache'}", "task=stsb", f"task.data_dir={data_root / 'stsb'}",
                    "export=false", "soup=true", ("choose={slow: {model: {optimizer: {lr: 1e-5}}}, fast: {model: "
                                                  "{optimizer: {lr: 1e-3}}}}")])
    out = tmp_path / "run"
    metrics = train(cfg, out)
    dev = {n: json.loads((out / "choose" / n / "metrics.json").read_text())["dev/spearman"] for n in ("slow", "fast")}
    best, other = sorted(dev, key=lambda n: -dev[n])
    assert metrics[f"soup/dev_spearman@{best}"] == pytest.approx(dev[best], abs=1e-5)
    both = metrics[f"soup/dev_spearman@{best}+{other}"]
    assert both != pytest.approx(dev[best], abs=1e-6)  # a real mean of two different sets of weights
    kept = "soup" if both >= dev[best] else best
    assert metrics[f"choose/{kept}"] == 1.0 and metrics["dev/spearman"] == pytest.approx(max(both, dev[best]),
                                                                                         abs=1e-5)
    assert not list(out.glob("**/encoder"))  # export=false: the soup's encoders are gone
