"""Task readers on the real offline data (../shared/data), on written fixtures, and on bad inputs."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bsc_lightning.data import tasks
from bsc_lightning.data.synthetic import synthetic_sentences, write_qqp_fixture
from bsc_lightning.data.tasks import DataError, load_task

DATA = (Path(__file__).parents[1] / "../shared/data").resolve()


def _data(sub: str) -> Path:
    if not (DATA / sub).is_dir():
        pytest.skip(f"shared data folder {DATA / sub} not found (it ships with the project's dev machines)")
    return DATA / sub


@pytest.fixture(autouse=True)
def _no_env_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may depend on the caller's BSC_DATA_DIR or reach the hub."""
    monkeypatch.delenv("BSC_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _sizes(task: tasks.Task) -> tuple[int, ...]:
    return tuple(len(task.splits[s]) for s in ("train", "dev", "test"))


def _one_line_error(match: str, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as e:
        load_task(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------------------------------------- real data
def test_stsb_local() -> None:
    t = load_task("stsb", _data("stsb"))
    assert (t.type, t.positive_threshold, t.main_metric) == ("regression", 0.6, "spearman")
    assert _sizes(t) == (5749, 1500, 1379)
    for table in t.splits.values():
        assert table.label.min() == 0.0 and table.label.max() == 1.0
    first = t.splits["train"]
    assert (first.text_a[0], first.text_b[0], first.label[0]) == ("A plane is taking off.",
                                                                   "An air plane is taking off.", 1.0)


def test_stsb_packaged_source_without_data_dir() -> None:
    assert tasks._packaged_stsb() is not None
    t = load_task("stsb")
    assert _sizes(t) == (5749, 1500, 1379)
    assert 0.0 <= t.splits["test"].label.min() and t.splits["test"].label.max() <= 1.0


def test_mrpc_seeded_dev_split() -> None:
    folder = _data("mrpc")
    t = load_task("mrpc", folder)
    assert (t.type, t.main_metric) == ("classification", "f1")
    assert _sizes(t) == (3668, 408, 1725)
    raw = pd.read_csv(folder / "msr_paraphrase_train.txt", sep="\t", quoting=3, encoding="utf-8-sig",
                      dtype=str, keep_default_na=False)
    idx = list(range(len(raw)))
    random.Random(0).shuffle(idx)  # BASELINES.md: the last 10% of the shuffled indices are dev
    for split, rows in (("train", idx[:3668]), ("dev", idx[3668:])):
        table = t.splits[split]
        assert table.text_a == raw["#1 String"].iloc[rows].str.replace("\x12", "'").str.strip().tolist()
        assert table.label.tolist() == raw["Quality"].iloc[rows].astype(float).tolist()
    assert set(idx[:3668]).isdisjoint(idx[3668:])
    assert int(t.splits["train"].label.sum() + t.splits["dev"].label.sum()) == 2753
    assert int(t.splits["test"].label.sum()) == 1147
    assert not any("\x12" in s for s in t.splits["train"].texts)
    other = load_task("mrpc", folder, split_seed=1, dev_fraction=0.2)
    assert len(other.splits["dev"]) == 815 and other.splits["dev"].text_a != t.splits["dev"].text_a


def test_wikiqa_counts() -> None:
    folder = _data("wikiqa")
    t = load_task("wikiqa", folder)
    assert (t.type, t.main_metric) == ("ranking", "map")
    assert len(t.splits["train"]) == 20360 and len(np.unique(t.splits["train"].qid)) == 2118
    for split, n_q in (("dev", 126), ("test", 243)):
        table = t.splits[split]
        assert len(np.unique(table.qid)) == n_q
        assert all(table.label[table.qid == q].max() == 1 for q in np.unique(table.qid))
    full = load_task("wikiqa", folder, answered_only=False)
    assert _sizes(full) == (20360, 2733, 6165)
    assert [len(np.unique(full.splits[s].qid)) for s in ("dev", "test")] == [296, 633]
    assert set(np.unique(full.splits["train"].label)) == {0.0, 1.0}


def test_bsc_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    _data("mrpc")
    monkeypatch.setenv("BSC_DATA_DIR", str(DATA))
    assert _sizes(load_task("mrpc")) == (3668, 408, 1725)
    monkeypatch.delenv("BSC_DATA_DIR")
    assert _sizes(load_task("mrpc", DATA)) == (3668, 408, 1725)  # data_dir may be the parent folder


# ------------------------------------------------------------------------------------------------- quora
def test_quora_fixture(tmp_path: Path) -> None:
    folder = write_qqp_fixture(tmp_path, n_train=400, n_dev=200, seed=0)
    raw = pd.read_csv(folder / "train.tsv", sep="\t", quoting=3)
    assert list(raw.columns) == ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    assert 0.30 < raw["is_duplicate"].mean() < 0.45
    both = pd.concat([raw, pd.read_csv(folder / "dev.tsv", sep="\t", quoting=3)])
    pairs = pd.concat([both[["qid1", "question1"]].set_axis(["q", "t"], axis=1),
                       both[["qid2", "question2"]].set_axis(["q", "t"], axis=1)])
    assert (pairs.groupby("t")["q"].nunique() == 1).all() and (pairs.groupby("q")["t"].nunique() == 1).all()
    assert len(pairs) > pairs["t"].nunique()  # some questions recur

    t = load_task("quora", folder, train_size=100, dev_size=50)
    assert (t.type, t.main_metric) == ("classification", "f1")
    assert _sizes(t) == (100, 50, 200)
    again = load_task("quora", folder, train_size=100, dev_size=50)
    other = load_task("quora", folder, split_seed=1, train_size=100, dev_size=50)
    assert again.splits["train"].text_a == t.splits["train"].text_a
    assert other.splits["train"].text_a != t.splits["train"].text_a
    full = load_task("quora", folder, train_size=None, dev_size=50)
    assert _sizes(full) == (350, 50, 200)
    # train and dev partition GLUE train.tsv: together they hold exactly its rows
    rows = sorted(zip(raw.question1, raw.question2, raw.is_duplicate.astype(float)))
    split = [(a, b, float(y)) for s in ("train", "dev")
             for a, b, y in zip(full.splits[s].text_a, full.splits[s].text_b, full.splits[s].label)]
    assert sorted(split) == rows
    _one_line_error("train_size", "quora", folder, train_size=10000)


# ------------------------------------------------------------------------------------------------ custom
def _rows(n: int = 30) -> pd.DataFrame:
    s = synthetic_sentences(2 * n, seed=1)
    return pd.DataFrame({"q": s[:n], "d": s[n:], "score": np.arange(n) % 5, "group": [f"g{i // 3}"
                                                                                        for i in range(n)]})


def test_custom_formats(tmp_path: Path) -> None:
    df = _rows()
    df.loc[0, "q"] = 'He said "yes, maybe", then left.'  # commas and quotes survive the CSV route
    df.to_csv(tmp_path / "train.csv", index=False)
    df.to_csv(tmp_path / "dev.tsv", sep="\t", index=False, quoting=3)
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    cols = {"text_a": "q", "text_b": "d", "label": "score", "qid": "group"}
    t = load_task("custom", tmp_path, train_file="train.csv", dev_file="dev.tsv",
                  test_file=str(tmp_path / "test.jsonl"), columns=cols, type="ranking", label_scale=4)
    assert (t.type, t.main_metric, t.positive_threshold) == ("ranking", "map", 0.5)
    for table in t.splits.values():
        assert len(table) == 30 and table.text_a[0] == 'He said "yes, maybe", then left.'
        assert table.label.tolist() == pytest.approx((np.arange(30) % 5 / 4).tolist())
        assert table.qid.tolist() == [i // 3 for i in range(30)]
    t = load_task("custom", tmp_path, train_file="train.csv", test_file="dev.tsv", columns=cols,
                  type="regression", label_scale=4, positive_threshold=0.6)
    assert _sizes(t) == (27, 3, 30) and t.main_metric == "spearman"


# -------------------------------------------------------------------------------------------- bad inputs
def test_unknown_task_and_option() -> None:
    msg = _one_line_error("unknown task", "sts")
    assert all(n in msg for n in ("stsb", "mrpc", "quora", "wikiqa", "custom"))
    _one_line_error("unknown option.*'dev_frac'", "mrpc", "/nowhere", dev_frac=0.2)


def test_missing_file(tmp_path: Path) -> None:
    _one_line_error("msr_paraphrase_train.txt.*task.data_dir", "mrpc", tmp_path)
    _one_line_error("nope.csv.*not found", "custom", tmp_path, train_file="nope.csv", test_file="nope.csv",
                    type="classification")
    _one_line_error("test_file", "custom", tmp_path, train_file="nope.csv", type="classification")


def _custom_file(tmp_path: Path, df: pd.DataFrame, **kw) -> str:
    df.to_csv(tmp_path / "bad.tsv", sep="\t", index=False, quoting=3)
    opts = {"train_file": "bad.tsv", "test_file": "bad.tsv", "type": "classification",
            "columns": {"text_a": "q", "text_b": "d", "label": "y"}}
    return _one_line_error(kw.pop("match"), "custom", tmp_path, **{**opts, **kw})


def test_bad_rows(tmp_path: Path) -> None:
    df = _rows(6).assign(y=[0, 1, 0, 1, 0, 1])
    _custom_file(tmp_path, df.drop(columns="d"), match=r"bad\.tsv.*missing column.*'d'")
    # the header is line 1, so data row i (0-based) is line i + 2
    _custom_file(tmp_path, df.assign(d=["a", "b", "  ", "c", "d", "e"]), match=r"bad\.tsv: line 4: empty")
    _custom_file(tmp_path, df.assign(y=[0, 1, "", 1, 0, 1]), match=r"bad\.tsv: line 4: label .* not a num")
    _custom_file(tmp_path, df.assign(y=[0, 1, 0, 1, 2, 1]), match=r"bad\.tsv: line 6: .*range.*label_scale")
    _custom_file(tmp_path, df, match="type", type="clustering")
    _one_line_error("unknown key.*'txt'", "custom", tmp_path, train_file="bad.tsv", test_file="bad.tsv",
                    type="regression", columns={"txt": "q"})


def test_bad_rows_in_task_files(tmp_path: Path) -> None:
    src = _data("stsb")
    for f in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        (tmp_path / f).write_bytes((src / f).read_bytes())
    lines = (tmp_path / "sts-dev.csv").read_text(encoding="utf-8").split("\n")
    fields = lines[9].split("\t")
    (tmp_path / "sts-dev.csv").write_text("\n".join(lines[:9] + ["\t".join(fields[:4] + ["7.5"] + fields[5:])]
                                                   + lines[10:]), encoding="utf-8")
    _one_line_error(r"sts-dev\.csv: line 10: label '7.5'.*out of range \[0, 5\]", "stsb", tmp_path)
    (tmp_path / "sts-dev.csv").write_text("\n".join(lines[:9] + ["\t".join(fields[:4] + ["n/a"] + fields[5:])]
                                                   + lines[10:]), encoding="utf-8")
    _one_line_error(r"sts-dev\.csv: line 10: label 'n/a'.*not a number", "stsb", tmp_path)
    (tmp_path / "sts-dev.csv").write_text("\n".join(lines[:9] + ["\t".join(fields[:5])] + lines[10:]),
                                          encoding="utf-8")
    _one_line_error(r"sts-dev\.csv: line 10: 5 tab-separated fields", "stsb", tmp_path)


def test_offline_without_source_names_both_routes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    msg = _one_line_error("no data source", "wikiqa")
    assert "task.data_dir" in msg and "BSC_DATA_DIR" in msg and "hub" in msg and "OFFLINE" in msg
    monkeypatch.setattr(tasks, "_packaged_stsb", lambda: None)
    monkeypatch.setenv("BSC_DATA_DIR", str(tmp_path))
    msg = _one_line_error("no data source", "stsb")
    assert str(tmp_path / "stsb" / "sts-train.csv") in msg and "hub" in msg


def test_hub_routes_with_a_fake_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub code paths map hub columns to the same tables (the real hub is unreachable here)."""
    s = synthetic_sentences(40, seed=2)

    def split(n: int, **cols) -> dict:
        return {k: (v * n)[:n] for k, v in cols.items()}

    fake = {
        ("sentence-transformers/stsb",): {h: split(10, sentence1=s[:10], sentence2=s[10:20], score=[0.2, 0.8])
                                          for h in ("train", "validation", "test")},
        ("nyu-mll/glue", "mrpc"): {h: split(10, sentence1=s[:10], sentence2=s[10:20], label=[0, 1])
                                   for h in ("train", "validation", "test")},
        ("nyu-mll/glue", "qqp"): {h: split(40, question1=s, question2=s[::-1], label=[0, 1])
                                  for h in ("train", "validation")},
        ("microsoft/wiki_qa",): {h: split(10, question_id=["Q1", "Q1", "Q2", "Q3", "Q3"], question=s[:10],
                                          answer=s[10:20], label=[0, 1, 0, 0, 1])
                                 for h in ("train", "validation", "test")},
    }
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(tasks, "_packaged_stsb", lambda: None)
    monkeypatch.setattr(tasks, "_hub", lambda *args: fake[args])
    assert load_task("stsb").splits["test"].label.tolist() == pytest.approx([0.2, 0.8] * 5)
    assert _sizes(load_task("mrpc")) == (10, 10, 10)
    assert _sizes(load_task("quora", train_size=20, dev_size=10)) == (20, 10, 40)
    w = load_task("wikiqa")
    assert len(w.splits["train"]) == 10 and len(np.unique(w.splits["dev"].qid)) == 2  # Q2 has no answer
    monkeypatch.setattr(tasks, "_hub", lambda *args: (_ for _ in ()).throw(ConnectionError("no route")))
    msg = _one_line_error("no data source", "mrpc")
    assert "ConnectionError: no route" in msg
