"""soup=true with choose (bsc_lightning.soup): the greedy soup of the variants' tested weights. The averaging and
the greedy rule on their own; then through real tiny fits, what the soup is made of (the members' exported
weights), that its dev scores are the run's own validation of those weights, that only dev decides, and that a
run without export keeps no encoder."""
from __future__ import annotations

import json

import pytest
import torch
from fixtures import make_cfg
from safetensors.torch import load_file
from test_lifecycle import overrides
from test_recipes import write_custom

import bsc_lightning.run as run_mod
from bsc_lightning.choose import run_variants
from bsc_lightning.metrics import ranking_metrics
from bsc_lightning.run import ConfigError, train
from bsc_lightning.significance import read_scores
from bsc_lightning.soup import average, greedy


def test_average_is_the_mean_of_float_weights_and_keeps_the_rest():
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.float16), "i": torch.tensor([3])}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([2.0], dtype=torch.float16), "i": torch.tensor([9])}
    c = {"w": torch.tensor([5.0, 1.0]), "h": torch.tensor([4.0], dtype=torch.float16), "i": torch.tensor([0])}
    got = average([a, b, c])
    assert torch.equal(got["w"], torch.tensor([3.0, 3.0]))
    assert got["h"].dtype == torch.float16 and got["h"].item() == pytest.approx(7 / 3, abs=1e-3)
    assert torch.equal(got["i"], torch.tensor([3]))  # integer buffers are the first's
    assert torch.equal(average([a])["w"], a["w"])
    with pytest.raises(ValueError, match="differ in their keys"):
        average([a, {"w": a["w"]}])
    with pytest.raises(ValueError, match="at least one"):
        average([])


def test_greedy_adds_a_member_when_the_dev_score_does_not_fall():
    table = {"a": 0.70, "a+b": 0.69, "a+c": 0.70, "a+c+d": 0.72}
    asked: list[list[str]] = []

    def dev(members: list[str]) -> float:
        asked.append(members)
        return table["+".join(members)]

    members, tried = greedy(["a", "b", "c", "d"], dev)
    assert members == ["a", "c", "d"]  # b lowers the score; c ties (kept: ≥); d raises it
    assert asked == [["a"], ["a", "b"], ["a", "c"], ["a", "c", "d"]]
    assert tried == table
    assert greedy(["x"], lambda m: 0.5) == (["x"], {"x": 0.5})


def soup_cfg(tiny_bert, tmp_path, *extra: str):
    return make_cfg([*overrides(tiny_bert, tmp_path / "data", tmp_path), *write_custom("ranking", tmp_path / "data"),
                     "choose={a: {}, b: {seed: 5, model: {optimizer: {lr: 1e-3}}}, c: {seed: 6}}", "soup=true",
                     *extra])


def steer(monkeypatch, bonus):
    """Wrap the run's greedy soup: every dev call still validates the soup's weights (recorded), plus
    ``bonus(members)``, so that a test decides which soup wins."""
    real = run_mod.greedy
    seen: list[tuple[list[str], float]] = []

    def wrapped(ranked, dev):
        def steered(members):
            score = dev(members)
            seen.append((list(members), score))
            return score + bonus(members)
        return real(ranked, steered)
    monkeypatch.setattr(run_mod, "greedy", wrapped)
    return seen


def test_a_kept_soup_is_the_mean_of_its_members_weights(tiny_bert, tmp_path, monkeypatch):
    # each larger soup wins on dev by 10 a member, except that c never joins another
    def bonus(members: list[str]) -> float:
        return -10.0 if len(members) > 1 and members[-1] == "c" else 10.0 * len(members)

    seen = steer(monkeypatch, bonus)
    out = tmp_path / "run"
    metrics = train(soup_cfg(tiny_bert, tmp_path, "export=true"), out)
    runs = {n: json.loads((out / "choose" / n / "metrics.json").read_text()) for n in "abc"}
    dev = {n: m["dev/map"] for n, m in runs.items()}
    ranked = sorted(dev, key=lambda n: -dev[n])
    members = [ranked[0], *(n for n in ranked[1:] if n != "c")]
    # the best variant alone, validated by the soup, scores what its own run reported on dev
    assert seen[0][0] == [ranked[0]] and seen[0][1] == pytest.approx(dev[ranked[0]], abs=1e-6)
    asked = [[ranked[0]], ranked[:2], [*(ranked[:2] if ranked[1] != "c" else ranked[:1]), ranked[2]]]
    assert [m for m, _ in seen] == asked
    kept = json.loads((out / "choose" / "soup" / "metrics.json").read_text())
    assert {n for n in "abc" if kept[f"soup/{n}"] == 1.0} == set(members)
    assert metrics["choose/soup"] == 1.0 and sum(metrics[f"choose/{n}"] for n in "abc") == 0.0
    assert {k: v for k, v in metrics.items() if not k.startswith(("choose/", "soup/dev_"))} == kept
    assert metrics["choose/dev_map@soup"] == kept["dev/map"]
    assert metrics[f"soup/dev_map@{'+'.join(ranked[:2])}"] == pytest.approx(seen[1][1] + bonus(ranked[:2]))
    souped = load_file(out / "encoder" / "model.safetensors")  # the run's encoder is the soup's
    want = average([load_file(out / "choose" / n / "encoder" / "model.safetensors") for n in members])
    assert souped.keys() == want.keys() and all(torch.allclose(souped[k], want[k]) for k in want)
    lone = load_file(out / "choose" / members[0] / "encoder" / "model.safetensors")
    assert any(not torch.equal(souped[k], lone[k]) for k in want)  # b's large lr moved it: a real mean
    for split in ("dev", "test"):  # the soup's pair scores are the run's and give its metrics
        q, y, s = read_scores(out, split)
        assert ranking_metrics(s, y, q)["map"] == pytest.approx(metrics[f"{split}/map"], abs=1e-6)


def test_a_soup_dev_does_not_prefer_leaves_the_best_variant(tiny_bert, tmp_path, monkeypatch):
    seen = steer(monkeypatch, lambda members: -1.0 * (len(members) - 1))  # every larger soup loses on dev
    out = tmp_path / "run"
    metrics = train(soup_cfg(tiny_bert, tmp_path), out)  # export=false
    dev = {n: json.loads((out / "choose" / n / "metrics.json").read_text())["dev/map"] for n in "abc"}
    best = max(dev, key=lambda n: (dev[n], -"abc".index(n)))
    assert len(seen) == 3 and metrics["choose/soup"] == 0.0 and metrics[f"choose/{best}"] == 1.0
    assert metrics["test/map"] == json.loads((out / "choose" / best / "metrics.json").read_text())["test/map"]
    assert not (out / "choose" / "soup" / "metrics.json").exists()  # a soup not kept is never tested
    assert not list(out.glob("**/encoder"))  # exported for the soup only: gone with export=false
    assert len([k for k in metrics if k.startswith("soup/dev_map@")]) == 3


def test_soup_needs_variants_and_its_own_folder_name(tiny_bert, tmp_path):
    with pytest.raises(ConfigError, match="soup=true averages the variants of `choose`"):
        train(make_cfg([*overrides(tiny_bert, tmp_path, tmp_path), "soup=true"]), tmp_path / "r1")
    with pytest.raises(ValueError, match="choose.soup: with soup=true"):
        train(make_cfg([*overrides(tiny_bert, tmp_path, tmp_path), "soup=true", "choose={soup: {}}"]),
              tmp_path / "r2")
    with pytest.raises(ValueError, match="makes no soup"):
        run_variants(make_cfg([*overrides(tiny_bert, tmp_path, tmp_path), "soup=true", "choose={a: {}}"]),
                     tmp_path / "r3", lambda cfg, out: {})


def test_a_variant_without_its_exported_encoder_is_named(tmp_path):
    from bsc_lightning.soup import load_weights

    with pytest.raises(FileNotFoundError, match=r"soup: .*variant_a.* is missing"):
        load_weights(tmp_path / "variant_a")
