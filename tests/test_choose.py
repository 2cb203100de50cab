"""choose={name: {overrides}, ...} (bsc_lightning.choose): each variant trains as a run of its own with its
overrides; the run keeps the variant with the best dev score, never looking at test; resume keeps finished
variants; bad variants stop the run before anything is written. Selection and files with a stand-in for
`train`; what reaches each variant's loss and batches through a real tiny fit of the ranking recipe."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures import make_cfg
from omegaconf import OmegaConf
from test_lifecycle import overrides
from test_recipes import bsc_labels, optimizer_lrs, write_custom

from bsc_lightning.choose import best_variant, run_variants, variant_configs
from bsc_lightning.data.batching import ExampleShuffle, RandomShuffle
from bsc_lightning.losses import MSELoss
from bsc_lightning.metrics import ranking_metrics
from bsc_lightning.run import RunDirError, train
from bsc_lightning.significance import read_scores

RANDOM = "bsc_lightning.data.batching.RandomShuffle"


@pytest.mark.parametrize("choose,match", [
    ("[a,b]", r"choose: a mapping of variant names"),
    ("{x: 3}", r"choose.x: a mapping of config overrides"),
    ("{x: {data: {train_positivs_only: true}}}", r"choose.x.data.train_positivs_only: not a key of the run config"),
    ("{x: {}, y: {choose: {z: {}}}}", r"choose.y: variants do not nest"),
    ("{a@b: {}}", r"choose.a@b: a variant's name is a folder name"),
])
def test_bad_variants_stop_the_run_before_anything_is_written(choose, match, tiny_bert, tmp_path):
    cfg = make_cfg([*overrides(tiny_bert, tmp_path / "nodata", tmp_path), f"choose={choose}"])
    with pytest.raises(ValueError, match=match):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_variant_configs_merge_and_replace(tiny_bert, tmp_path):
    cfg = make_cfg([*overrides(tiny_bert, tmp_path, tmp_path), "shuffle=example", "choose={same: {}, other: "
                    "{model: {optimizer: {lr: 0.5}}, shuffle: {_target_: " + RANDOM + "}, seed: 7}}"])
    got = variant_configs(cfg)
    assert list(got) == ["same", "other"]
    same, other = got["same"], got["other"]
    assert same.choose is None and other.choose is None
    assert OmegaConf.to_container(same.shuffle) == OmegaConf.to_container(cfg.shuffle)
    assert OmegaConf.to_container(other.shuffle) == {"_target_": RANDOM}  # another class: the node is replaced
    assert other.model.optimizer.lr == 0.5 and same.model.optimizer.lr == cfg.model.optimizer.lr
    assert other.model.optimizer.weight_decay == cfg.model.optimizer.weight_decay  # merged, not replaced
    assert other.seed == 7 and other.data.seed == 7  # interpolations follow the variant's values
    assert cfg.choose is not None and cfg.model.optimizer.lr != 0.5  # the run's own config is left as it was


def test_best_variant_ties_go_to_the_first_listed():
    assert best_variant({"a": 0.5, "b": 0.7, "c": 0.7}) == "b"
    assert best_variant({"b": 0.7, "a": 0.7}) == "b"
    assert best_variant({"a": 0.9, "b": 0.7}) == "a"


class FakeTrain:
    """Stands in for run.train: writes a variant's metrics.json and encoder, records what it was given."""

    def __init__(self, scores: dict[str, tuple[float, float]], fail: str | None = None) -> None:
        self.scores, self.fail, self.calls = scores, fail, []

    def __call__(self, cfg, out: Path) -> dict[str, float]:
        self.calls.append((out.name, cfg.resume, cfg.choose, cfg.seed))
        if cfg.resume and (out / "metrics.json").is_file():
            return json.loads((out / "metrics.json").read_text())
        if out.name == self.fail:
            self.fail = None
            (out / "checkpoints").mkdir(parents=True)
            (out / "checkpoints" / "last.ckpt").write_text("interrupted")
            raise RuntimeError("killed")
        dev, test = self.scores[out.name]
        metrics = {"dev/f1": dev, "test/f1": test}
        (out / "encoder").mkdir(parents=True)
        (out / "encoder" / "which").write_text(out.name)
        (out / "scores").mkdir()
        (out / "scores" / "test.tsv").write_text(out.name)
        (out / "metrics.json").write_text(json.dumps(metrics))
        return metrics


def choose_cfg(tiny_bert, tmp_path, *extra: str):
    return make_cfg([*overrides(tiny_bert, tmp_path, tmp_path), "choose={a: {}, b: {seed: 5}, c: {seed: 6}}",
                     *extra])


def test_the_choice_reads_dev_scores_only(tiny_bert, tmp_path):
    fake = FakeTrain({"a": (0.5, 0.9), "b": (0.6, 0.1), "c": (0.55, 0.95)})  # test would prefer c, then a
    out = tmp_path / "run"
    metrics = run_variants(choose_cfg(tiny_bert, tmp_path), out, fake)
    assert [(c[0], c[2], c[3]) for c in fake.calls] == [("a", None, 0), ("b", None, 5), ("c", None, 6)]
    assert metrics["dev/f1"] == 0.6 and metrics["test/f1"] == 0.1  # b's, the best dev
    assert (metrics["choose/a"], metrics["choose/b"], metrics["choose/c"]) == (0.0, 1.0, 0.0)
    assert (metrics["choose/dev_f1@a"], metrics["choose/dev_f1@c"]) == (0.5, 0.55)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert (out / "encoder" / "which").read_text() == "b"  # the chosen variant's encoder is the run's
    assert (out / "scores" / "test.tsv").read_text() == "b"  # and so are its pair scores
    assert OmegaConf.load(out / "config.yaml").choose.b.seed == 5


def test_resume_keeps_finished_variants(tiny_bert, tmp_path):
    out = tmp_path / "run"
    fake = FakeTrain({"a": (0.5, 0.5), "b": (0.6, 0.6), "c": (0.7, 0.7)}, fail="b")
    with pytest.raises(RuntimeError, match="killed"):
        run_variants(choose_cfg(tiny_bert, tmp_path), out, fake)
    assert not (out / "metrics.json").exists()
    with pytest.raises(RunDirError, match="resume=true"):  # a second run would overwrite the first
        run_variants(choose_cfg(tiny_bert, tmp_path), out, fake)
    fake.calls.clear()
    metrics = run_variants(choose_cfg(tiny_bert, tmp_path, "resume=true"), out, fake)
    # a finished: its metrics.json; b interrupted: resumed from its last.ckpt; c never started: fresh
    assert [c[:2] for c in fake.calls] == [("a", True), ("b", True), ("c", None)]
    assert metrics["dev/f1"] == 0.7 and metrics["choose/c"] == 1.0
    fake.calls.clear()
    assert run_variants(choose_cfg(tiny_bert, tmp_path, "resume=true"), out, fake) == metrics
    assert fake.calls == []  # a finished run returns its metrics.json
    with pytest.raises(RunDirError, match="as a whole"):
        run_variants(choose_cfg(tiny_bert, tmp_path, "resume=x.ckpt"), tmp_path / "other", fake)


def test_ranking_recipe_trains_its_variants_and_keeps_the_best_on_dev(tiny_bert, tmp_path, monkeypatch):
    """The recipe's variants on a user's ranking files: hard negatives in their question's batches, positives only
    in random batches, or MSE on every labelled pair in random batches, each a full run (interpolation included)
    whose dev score decides."""
    seen = bsc_labels(monkeypatch)  # (positives, negatives) per training batch of BSC
    seen_mse = bsc_labels(monkeypatch, MSELoss)  # the same for MSE
    lrs = optimizer_lrs(monkeypatch)  # per variant's optimiser, per parameter group
    ordered: list[tuple[str, int]] = []  # (strategy, batches so far) at each epoch's order
    for cls in (ExampleShuffle, RandomShuffle):
        order = cls.order

        def rec(self, *args, _order=order, **kwargs):
            ordered.append((type(self).__name__, len(seen)))
            return _order(self, *args, **kwargs)
        monkeypatch.setattr(cls, "order", rec)
    cfg = make_cfg(["experiment=recipe_ranking", f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32",
                    "trainer=cpu", "data.batch_size=8", "logger=csv", "export=true", "shuffle.n_candidates=8",
                    f"data.cache_dir={tmp_path / 'cache'}", *write_custom("ranking", tmp_path / "data")])
    assert list(cfg.choose) == ["hard_negatives", "positives_only", "mse"]
    out = tmp_path / "run"
    metrics = train(cfg, out)
    # hard negatives first: 12 questions × (1 positive + 3 negatives) = 6 batches of 8; then 12 positives;
    # then MSE on all 48 pairs
    assert [o[0] for o in ordered] == ["ExampleShuffle", "RandomShuffle", "RandomShuffle"]
    first = ordered[1][1]
    assert sum(p for p, _ in seen[:first]) == 12 and sum(n for _, n in seen[:first]) == 36
    assert sum(p for p, _ in seen[first:]) == 12 and sum(n for _, n in seen[first:]) == 0
    assert sum(p for p, _ in seen_mse) == 12 and sum(n for _, n in seen_mse) == 36 and len(seen_mse) == 6
    assert lrs == [[3e-5, 3e-5], [3e-5, 3e-5], [2e-5, 2e-5]]
    runs = {n: json.loads((out / "choose" / n / "metrics.json").read_text()) for n in cfg.choose}
    dev = {n: m["dev/map"] for n, m in runs.items()}
    chosen = best_variant(dev)
    assert {k: v for k, v in metrics.items() if not k.startswith("choose/")} == runs[chosen]
    assert metrics["choose/dev_map@hard_negatives"] == dev["hard_negatives"]
    assert metrics[f"choose/{chosen}"] == 1.0 and sum(metrics[f"choose/{n}"] for n in runs) == 1.0
    assert all("interpolate/alpha" in m for m in runs.values())
    assert (out / "encoder" / "config.json").read_bytes() == (out / "choose" / chosen / "encoder" /
                                                              "config.json").read_bytes()
    for split in ("dev", "test"):  # the kept run's pair scores, of the weights it tested (interpolated)
        assert (out / "scores" / f"{split}.tsv").read_bytes() == (out / "choose" / chosen / "scores" /
                                                                 f"{split}.tsv").read_bytes()
        q, y, s = read_scores(out, split)
        assert ranking_metrics(s, y, q)["map"] == pytest.approx(metrics[f"{split}/map"], abs=1e-6)
    assert OmegaConf.load(out / "choose" / "positives_only" / "config.yaml").data.train_positives_only is True


def test_aggregate_counts_a_choose_run_once(tiny_bert, tmp_path):
    from test_aggregate import agg  # experiments/aggregate.py

    sweep = tmp_path / "sweep"
    run_variants(choose_cfg(tiny_bert, tmp_path), sweep / "0_seed=0",
                 FakeTrain({"a": (0.5, 0.5), "b": (0.6, 0.6), "c": (0.7, 0.7)}))
    jobs = agg.load_jobs(sweep)
    assert [j.path.name for j in jobs] == ["0_seed=0"] and jobs[0].metrics["dev/f1"] == 0.7


def test_choose_script_picks_per_seed_on_dev(tmp_path, monkeypatch, capsys):
    """experiments/choose.py: per task and seed, the variant with the better dev score (ties: listed first), from
    finished runs of each variant; seeds that one variant lacks are left out; test only with --test."""
    import runpy

    import yaml

    def job(variant: str, seed: int, dev: float, test: float) -> None:
        folder = tmp_path / variant / f"{seed}_seed={seed}"
        folder.mkdir(parents=True)
        config = {"seed": seed, "task": {"name": "cqa_b", "main_metric": "map"}, "data": {"limit_train": None}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        (folder / "metrics.json").write_text(json.dumps({"dev/map": dev, "test/map": test, "interpolate/alpha": 1.0}))

    for seed, a, b in [(1, (0.90, 0.70), (0.92, 0.80)), (2, (0.95, 0.75), (0.95, 0.90)), (3, (0.5, 0.5), None)]:
        job("a", seed, *a)
        if b is not None:
            job("b", seed, *b)
    script = Path(__file__).resolve().parents[1] / "experiments" / "choose.py"
    monkeypatch.syspath_prepend(str(script.parent))  # its `from interpolate import ...`

    def output(*extra: str) -> str:
        monkeypatch.setattr("sys.argv", [str(script), f"first={tmp_path / 'a'}", f"second={tmp_path / 'b'}", *extra])
        runpy.run_path(str(script), run_name="__main__")
        return capsys.readouterr().out

    got = output("--test")
    assert "seeds 1, 2" in got
    assert "dev-chosen       n=2  dev  93.50 ± 2.12  test  77.50 ± 3.54  (second, first)" in got, got
    assert "first            n=2  dev  92.50 ± 3.54  test  72.50 ± 3.54" in got, got
    plain = output()
    assert "test" not in plain and "(second, first)" in plain
