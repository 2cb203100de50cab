"""interpolate=[α, ...] (bsc_lightning.interpolation): what the test split sees and the export holds is
θ0 + α(θ − θ0), θ the best checkpoint's weights and θ0 the pretrained encoder's (also after a resume), α the
list's best on dev; validation during training sees θ. Proven through real fits of the tiny BERT."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from test_lifecycle import Crash, CrashError, csv_rows, overrides, with_callback, write_pairs
from test_run import make_cfg
from transformers import AutoModel

from bsc_lightning.interpolation import check_alphas, interpolate
from bsc_lightning.module import BSCModule
from bsc_lightning.run import build, train

ROOT = Path(__file__).resolve().parents[1]


def test_interpolate_values():
    base = {"w": torch.tensor([0.0, 2.0]), "ids": torch.tensor([1, 2])}
    trained = {"w": torch.tensor([4.0, -2.0]), "ids": torch.tensor([3, 4])}
    assert interpolate(base, trained, 0.25)["w"].tolist() == [1.0, 1.0]
    assert interpolate(base, trained, 0.0)["w"].tolist() == [0.0, 2.0]
    assert interpolate(base, trained, 1.0)["w"].tolist() == [4.0, -2.0]
    assert interpolate(base, trained, 0.25)["ids"].tolist() == [3, 4]  # integer buffers: the trained ones
    with pytest.raises(ValueError, match="keys"):
        interpolate({"w": base["w"]}, trained, 0.5)


@pytest.mark.parametrize("alphas", [[-0.1], [0.5, 1.5], [], "half", [True]])
def test_alphas_outside_unit_interval_are_refused(alphas, tiny_bert, tmp_path):
    with pytest.raises(ValueError, match=r"interpolate: a list of α in \[0, 1\]"):
        check_alphas(alphas)
    if isinstance(alphas, list) and alphas and not isinstance(alphas[0], bool):  # the run stops before training
        cfg = make_cfg([*overrides(tiny_bert, tmp_path / "nodata", tmp_path), f"interpolate={alphas}"])
        with pytest.raises(ValueError, match="interpolate"):
            train(cfg, tmp_path / "run")
        assert not (tmp_path / "run").exists()
    assert check_alphas(0.5) == [0.5] and check_alphas([1, 0.7]) == [1.0, 0.7]


def tested_weights(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """The encoder's weights at the end of every test epoch (what the dev and test metrics were computed with)."""
    seen: list[dict[str, torch.Tensor]] = []
    end = BSCModule.on_test_epoch_end

    def spy(self):
        seen.append({k: v.detach().clone() for k, v in self.encoder.state_dict().items()})
        return end(self)
    monkeypatch.setattr(BSCModule, "on_test_epoch_end", spy)
    return seen


def expected(cfg, out, alpha: float) -> dict[str, torch.Tensor]:
    base = build(cfg.encoder, "encoder").state_dict()  # the pretrained tiny BERT
    state = torch.load(out / "checkpoints" / "stage1-best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    best = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    assert any(not torch.equal(base[k], best[k]) for k in base)  # training moved the weights
    return interpolate(base, best, alpha)


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for k, value in want.items():
        torch.testing.assert_close(got[k], value, rtol=1e-6, atol=1e-7, msg=k)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_test_and_export_see_the_interpolated_best_weights(alpha, tiny_bert, tmp_path, monkeypatch):
    data = write_pairs(tmp_path / "data")
    common = overrides(tiny_bert, data, tmp_path, "trainer.max_epochs=2", "model.optimizer.lr=1e-3")
    seen = tested_weights(monkeypatch)
    cfg = make_cfg([*common, f"interpolate=[{alpha}]", "export=true"])
    out = tmp_path / "run"
    metrics = train(cfg, out)
    assert len(seen) == 1
    want = expected(cfg, out, alpha)
    assert_same(seen[0], want)
    exported = AutoModel.from_pretrained(out / "encoder", add_pooling_layer=False).state_dict()
    assert_same({f"model.{k}": v for k, v in exported.items()}, want)
    if alpha == 0.0:  # the pretrained encoder: the same metrics as a zero-shot run
        zero = train(make_cfg([*common, "train=false"]), tmp_path / "zero")
        assert {k: v for k, v in metrics.items() if not k.startswith("interpolate/")} == pytest.approx(zero, abs=1e-6)
    train(make_cfg(common), tmp_path / "plain")  # same seed, no callback: the trained weights' metrics
    assert_same(seen[-1], expected(cfg, tmp_path / "plain", 1.0))
    # training and validation (which chose the best checkpoint) saw the trained weights: the same as without
    val = [[r["val/f1"] for r in csv_rows(d) if r.get("val/f1")] for d in (out, tmp_path / "plain")]
    assert len(val[0]) == 2 and val[0] == val[1]
    # experiments/interpolate.py on the plain run: α = 1 is the run's own metrics.json, α the callback's run
    got = load_script().evaluate_alphas(tmp_path / "plain", [1.0, alpha])
    assert got["1.0"] == pytest.approx(json.loads((tmp_path / "plain" / "metrics.json").read_text()), abs=1e-6)
    assert got[str(alpha)] == pytest.approx({k: v for k, v in metrics.items() if "/" in k and
                                             not k.startswith("interpolate/")}, abs=1e-6)
    assert metrics["interpolate/alpha"] == alpha  # one α: set, not validated
    assert not any(k.startswith("interpolate/dev_") for k in metrics)


def load_script():
    spec = importlib.util.spec_from_file_location("interpolate_script", ROOT / "experiments" / "interpolate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_alpha_is_chosen_on_dev(tiny_bert, tmp_path, monkeypatch):
    """Three α: each validated on dev (the scores experiments/interpolate.py computes for them), the best one
    (ties: the larger) tested; the test split is read once, with the chosen weights."""
    data = write_pairs(tmp_path / "data")
    common = overrides(tiny_bert, data, tmp_path, "trainer.max_epochs=2", "model.optimizer.lr=1e-3")
    seen = tested_weights(monkeypatch)
    cfg = make_cfg([*common, "interpolate=[0,0.5,1]"])
    out = tmp_path / "run"
    metrics = train(cfg, out)
    scores = {a: metrics[f"interpolate/dev_f1@{a:g}"] for a in (0.0, 0.5, 1.0)}
    chosen = max(scores, key=lambda a: (scores[a], a))
    assert metrics["interpolate/alpha"] == chosen
    assert len(seen) == 1  # one test pass
    assert_same(seen[0], expected(cfg, out, chosen))
    offline = load_script().evaluate_alphas(out, [0.0, 0.5, 1.0])
    assert scores == pytest.approx({a: offline[str(a)]["dev/f1"] for a in scores}, abs=1e-6)
    assert metrics["dev/f1"] == pytest.approx(scores[chosen], abs=1e-6)
    assert metrics["test/f1"] == pytest.approx(offline[str(chosen)]["test/f1"], abs=1e-6)


def test_resumed_run_interpolates_with_the_pretrained_weights(tiny_bert, tmp_path, monkeypatch):
    data = write_pairs(tmp_path / "data")
    common = [*overrides(tiny_bert, data, tmp_path, "trainer.max_epochs=2", "model.optimizer.lr=1e-3",
                         "checkpoint.every_n_steps=2"), "interpolate=[0.5]"]
    seen = tested_weights(monkeypatch)
    ref = train(make_cfg(common), tmp_path / "ref")
    out = tmp_path / "run"
    with monkeypatch.context() as m:  # 5 batches per epoch: crash at step 7, in epoch 2 (last.ckpt at step 6)
        with_callback(m, Crash(7))
        with pytest.raises(CrashError):
            train(make_cfg(common), out)
    got = train(make_cfg([*common, "resume=true"]), out)
    assert len(seen) == 2
    assert_same(seen[1], expected(make_cfg(common), out, 0.5))
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-7)
