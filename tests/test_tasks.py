"""Task readers on the written fixture folders (`data_root`), on the real data (../shared/data, slow tests
only: `shared_data`), and on bad inputs."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.synthetic import synthetic_sentences, write_qqp_fixture
from bsc_lightning.data import tasks
from bsc_lightning.data.tasks import DataError, load_task


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
# Exact counts on the release files: slow, and skipped where ../shared/data is absent (`shared_data`).
@pytest.mark.slow
def test_stsb_local(shared_data: Path) -> None:
    t = load_task("stsb", shared_data / "stsb")
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


@pytest.mark.slow
def test_mrpc_seeded_dev_split(shared_data: Path) -> None:
    folder = shared_data / "mrpc"
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


@pytest.mark.slow
def test_wikiqa_counts(shared_data: Path) -> None:
    folder = shared_data / "wikiqa"
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


@pytest.mark.slow
def test_bsc_data_dir_env(monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> None:
    monkeypatch.setenv("BSC_DATA_DIR", str(shared_data))
    assert _sizes(load_task("mrpc")) == (3668, 408, 1725)
    monkeypatch.delenv("BSC_DATA_DIR")
    assert _sizes(load_task("mrpc", shared_data)) == (3668, 408, 1725)  # data_dir may be the parent folder


# ------------------------------------------------------------------- fixture data (tests/fixtures.py)
# The same behaviour on the small files of `data_root` (original layouts), expectations read from the files.
def _raw(path: Path) -> pd.DataFrame:
    """A release file with a header, read with pandas, not with the reader under test (bare quotes kept)."""
    return pd.read_csv(path, sep="\t", quoting=3, encoding="utf-8-sig", dtype=str, keep_default_na=False)


def _raw_stsb(path: Path) -> pd.DataFrame:
    """An STS-B file (no header, some rows with 2 extra trailing fields) as columns 0-6, split by hand."""
    return pd.DataFrame([line.split("\t")[:7] for line in path.read_text(encoding="utf-8").splitlines()])


def _mrpc_sizes(folder: Path, dev_fraction: float = 0.1) -> tuple[int, int, int]:
    n, n_test = len(_raw(folder / "msr_paraphrase_train.txt")), len(_raw(folder / "msr_paraphrase_test.txt"))
    n_dev = round(n * dev_fraction)
    return n - n_dev, n_dev, n_test


def test_stsb_fixture(data_root: Path) -> None:
    folder = data_root / "stsb"
    t = load_task("stsb", folder)
    assert (t.type, t.positive_threshold, t.main_metric) == ("regression", 0.6, "spearman")
    for split in ("train", "dev", "test"):
        raw = _raw_stsb(folder / f"sts-{split}.csv")
        scores = raw[4].astype(float)
        assert scores.min() >= 0.0 and scores.max() > 1.0  # 0–5 in the file: the reader must scale them
        table = t.splits[split]
        assert len(table) == len(raw)
        assert table.label.tolist() == pytest.approx((scores / 5).tolist())
        assert table.label.min() >= 0.0 and table.label.max() <= 1.0
        assert (table.text_a[0], table.text_b[0]) == (raw[5][0], raw[6][0])  # the file's first row
        assert table.label[0] == pytest.approx(scores[0] / 5)
        assert table.text_b == raw[6].tolist()  # rows with extra trailing columns keep their s2


def test_mrpc_seeded_dev_split_fixture(data_root: Path) -> None:
    folder = data_root / "mrpc"
    t = load_task("mrpc", folder)
    assert (t.type, t.positive_threshold, t.main_metric) == ("classification", 0.5, "f1")
    raw, raw_test = _raw(folder / "msr_paraphrase_train.txt"), _raw(folder / "msr_paraphrase_test.txt")
    n_train, n_dev, n_test = _mrpc_sizes(folder)
    assert _sizes(t) == (n_train, n_dev, n_test) and n_dev > 1

    def texts(rows: list[int]) -> list[str]:
        return raw["#1 String"].iloc[rows].str.replace("\x12", "'").str.strip().tolist()

    def dev_rows(seed: int, n: int) -> list[int]:
        idx = list(range(len(raw)))
        random.Random(seed).shuffle(idx)  # BASELINES.md: the last dev_fraction of the shuffled indices
        return idx[len(raw) - n:]

    dev = dev_rows(0, n_dev)
    train = [i for i in dev_rows(0, len(raw)) if i not in set(dev)]  # the shuffled order, minus dev
    for split, rows in (("train", train), ("dev", dev)):
        table = t.splits[split]
        assert table.text_a == texts(rows)
        assert table.label.tolist() == raw["Quality"].iloc[rows].astype(float).tolist()
    assert t.splits["dev"].text_a != texts(list(range(len(raw)))[-n_dev:])  # shuffled, not the last rows
    assert t.splits["test"].text_b == raw_test["#2 String"].str.strip().tolist()
    assert t.splits["test"].label.sum() == raw_test["Quality"].astype(float).sum()
    assert raw["#1 String"].str.contains("\x12").any()  # the fixture holds the release's 0x12 ...
    assert not any("\x12" in s for s in t.splits["train"].text_a + t.splits["dev"].text_a)  # ... read as '

    other = load_task("mrpc", folder, split_seed=1, dev_fraction=0.2)
    assert _sizes(other) == _mrpc_sizes(folder, 0.2) != _sizes(t)
    assert other.splits["dev"].text_a == texts(dev_rows(1, _mrpc_sizes(folder, 0.2)[1]))
    reseeded = load_task("mrpc", folder, split_seed=1)
    assert _sizes(reseeded) == _sizes(t) and reseeded.splits["dev"].text_a != t.splits["dev"].text_a
    assert reseeded.splits["dev"].text_a == texts(dev_rows(1, n_dev))


def test_wikiqa_answered_only_fixture(data_root: Path) -> None:
    folder = data_root / "wikiqa"
    t = load_task("wikiqa", folder)
    full = load_task("wikiqa", folder, answered_only=False)
    assert (t.type, t.positive_threshold, t.main_metric) == ("ranking", 0.5, "map")
    for split in ("train", "dev", "test"):
        raw = _raw(folder / f"WikiQA-{split}.tsv")
        number = raw["QuestionID"].str[1:].astype(int)  # qid = the number in QuestionID
        questions, answered = set(number), set(number[raw["Label"] == "1"])
        assert answered < questions  # the fixture has unanswered questions in every split
        assert len(full.splits[split]) == len(raw) and set(np.unique(full.splits[split].qid)) == questions
        assert full.splits[split].text_b == raw["Sentence"].str.strip().tolist()
        table = t.splits[split]
        kept = raw if split == "train" else raw[number.isin(answered)]  # train keeps all rows
        assert len(table) == len(kept) and table.text_b == kept["Sentence"].str.strip().tolist()
        assert set(np.unique(table.qid)) == (questions if split == "train" else answered)
        if split != "train":
            assert all(table.label[table.qid == q].max() == 1 for q in np.unique(table.qid))
    assert set(np.unique(full.splits["train"].label)) == {0.0, 1.0}


def test_bsc_data_dir_env_fixture(monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    splits = ("train", "dev", "test")
    stsb = tuple(len(_raw_stsb(data_root / "stsb" / f"sts-{s}.csv")) for s in splits)
    wikiqa = tuple(len(_raw(data_root / "wikiqa" / f"WikiQA-{s}.tsv")) for s in splits)
    n_qqp_test = len(_raw(data_root / "qqp" / "dev.tsv"))
    monkeypatch.setenv("BSC_DATA_DIR", str(data_root))
    mrpc = load_task("mrpc")
    assert _sizes(mrpc) == _mrpc_sizes(data_root / "mrpc")
    assert _sizes(load_task("stsb")) == stsb  # BSC_DATA_DIR comes before the packaged STS-B
    assert _sizes(load_task("wikiqa", answered_only=False)) == wikiqa
    assert _sizes(load_task("quora", train_size=20, dev_size=10)) == (20, 10, n_qqp_test)  # sub-folder qqp/
    monkeypatch.delenv("BSC_DATA_DIR")
    parent = load_task("mrpc", data_root)  # data_dir may be the parent folder
    assert _sizes(parent) == _mrpc_sizes(data_root / "mrpc")
    assert parent.splits["dev"].text_a == mrpc.splits["dev"].text_a
    assert _sizes(load_task("stsb", data_root)) == stsb
    assert _sizes(load_task("wikiqa", data_root, answered_only=False)) == wikiqa


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


def test_bad_rows_in_task_files(tmp_path: Path, data_root: Path) -> None:
    src = data_root / "stsb"
    for f in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        (tmp_path / f).write_bytes((src / f).read_bytes())
    lines = (tmp_path / "sts-dev.csv").read_text(encoding="utf-8").split("\n")
    fields = lines[9].split("\t")
    assert len(fields) == 7 and 0.0 <= float(fields[4]) <= 5.0  # line 10 is a data row (no header in STS-B)
    assert len(load_task("stsb", tmp_path).splits["dev"]) == len(lines) - 1  # the copy loads before the edits
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


# ------------------------------------------------------------------------------- encodings and JSON lines
_CUSTOM = {"train_file": "train", "test_file": "train", "type": "classification"}


@pytest.mark.parametrize("ext,sep", [(".csv", ","), (".tsv", "\t")])
def test_not_utf8_names_file_and_line(tmp_path: Path, ext: str, sep: str) -> None:
    lines = ["text_a,text_b,label", "a cat,a dog,1", "café au lait,a drink,0", "x,y,1"]
    (tmp_path / f"train{ext}").write_bytes("\n".join(lines).replace(",", sep).encode("latin-1"))
    opts = {**_CUSTOM, "train_file": f"train{ext}", "test_file": f"train{ext}"}
    msg = _one_line_error("not UTF-8", "custom", tmp_path, **opts)
    assert msg.startswith(f"{tmp_path / f'train{ext}'}: line 3: not UTF-8 (byte 0xe9 at column 4")
    assert "re-save the file as UTF-8" in msg


def test_not_utf8_in_a_task_file_names_the_line(tmp_path: Path) -> None:
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    good = header + "1\t1\t2\tA cat sat.\tA cat was sitting.\n"
    (tmp_path / "msr_paraphrase_train.txt").write_bytes(good.encode() + "0\t3\t4\tNaïve\tx\n".encode("latin-1"))
    (tmp_path / "msr_paraphrase_test.txt").write_text(good, encoding="utf-8")
    _one_line_error(r"msr_paraphrase_train\.txt: line 3: not UTF-8 \(byte 0xef", "mrpc", tmp_path)


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    rows = "text_a,text_b,label\n" + "".join(f"a {i},b {i},{i % 2}\n" for i in range(10))
    (tmp_path / "train.csv").write_text(rows, encoding="utf-8-sig")
    (tmp_path / "train.tsv").write_text(rows.replace(",", "\t"), encoding="utf-8-sig")
    t = load_task("custom", tmp_path, train_file="train.csv", test_file="train.tsv", dev_file="train.csv",
                  type="classification")  # a BOM left in would rename the first column to "\ufefftext_a"
    assert t.splits["test"].text_a[:2] == ["a 0", "a 1"] and len(t.splits["train"]) == 10


def test_unparsable_csv_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text_a,text_b,label\na,b,1\na, with comma,b,0\n")
    _one_line_error(r"train\.csv: not a valid CSV .*line 3.*quote fields", "custom", tmp_path,
                    **{**_CUSTOM, "train_file": "train.csv", "test_file": "train.csv"})


def test_jsonl_bad_lines(tmp_path: Path) -> None:
    ok = json.dumps({"text_a": "a cat", "text_b": "a dog", "label": 1})
    opts = {**_CUSTOM, "train_file": "train.jsonl", "test_file": "train.jsonl"}
    (tmp_path / "train.jsonl").write_text(ok + "\n" + '{"text_a": "x", "text_b": "y", "label": 1\n' + ok + "\n")
    msg = _one_line_error(r"train\.jsonl: line 2: not valid JSON", "custom", tmp_path, **opts)
    assert str(tmp_path / "train.jsonl") in msg
    (tmp_path / "train.jsonl").write_text(ok + "\n" + ok + "\n" + '["x", "y", 1]\n')
    _one_line_error(r"train\.jsonl: line 3: a JSON list, not an object", "custom", tmp_path, **opts)
    # blank lines are skipped, and later errors still name the file line, not the row number
    empty = json.dumps({"text_a": " ", "text_b": "y", "label": 0})
    (tmp_path / "train.jsonl").write_text(f"{ok}\n\n  \n{ok}\n{empty}\n{ok}\n\n")
    _one_line_error(r"train\.jsonl: line 5: empty text", "custom", tmp_path, **opts)
    (tmp_path / "train.jsonl").write_text("\n".join([ok, "", ok] * 10) + "\n")
    assert len(load_task("custom", tmp_path, **{**opts, "dev_file": "train.jsonl"}).splits["train"]) == 20
    (tmp_path / "train.jsonl").write_bytes(ok.encode() + b"\n" + '{"text_a": "é"}'.encode("latin-1"))
    _one_line_error(r"train\.jsonl: line 2: not UTF-8", "custom", tmp_path, **opts)


# ----------------------------------------------------------------------------- hints name real config keys
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # = bsc_lightning.run.CONF_DIR, without its imports


def _compose(task: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[f"task={task}"])


def _assert_hint_keys_exist(msg: str, task_cfg) -> int:
    """Every ``task.X`` / ``task.options.X[/Y...]`` named in ``msg`` is a key of the composed task config."""
    import re

    keys = re.findall(r"\btask\.([\w.]+(?:/\w+)*)", msg)
    for key in keys:
        top, _, rest = key.partition(".")
        if top == "options":
            for option in rest.split("/"):
                assert option in task_cfg.options, (option, msg)
        else:
            assert top in task_cfg, (top, msg)
    return len(keys)


def test_custom_hints_name_real_config_keys(tmp_path: Path) -> None:
    cfg = _compose("custom").task
    df = _rows(6).assign(y=[0, 1, 0, 1, 0, 1])
    df.to_csv(tmp_path / "bad.tsv", sep="\t", index=False, quoting=3)
    good = {"train_file": "bad.tsv", "test_file": "bad.tsv", "type": "classification",
            "columns": {"text_a": "q", "text_b": "d", "label": "y"}}
    bad_options = [{"type": "clustering"}, {"main_metric": "map"}, {"positive_threshold": 1.5}, {"train_file": None}, {"test_file": ""},
                   {"label_scale": 0}, {"columns": {"txt": "q"}}, {"columns": {"text_a": "nope"}},
                   {"columns": {"text_a": "q", "text_b": "d", "label": "score"}},
                   {"train_file": "missing.csv"}]
    msgs = []
    for bad in bad_options:
        with pytest.raises(DataError) as e:
            load_task("custom", tmp_path, **{**good, **bad})
        msgs.append(str(e.value))
    with pytest.raises(DataError) as e:
        tasks.require_positives(tasks.PairTable.from_pairs(["a"], ["b"], [0.0]), 0.5, "symmetric")
    msgs.append(str(e.value))
    assert sum(_assert_hint_keys_exist(m, cfg) for m in msgs) >= len(msgs)
    for key in ("task.label_scale", "task.type", "task.main_metric", "task.positive_threshold"):
        assert any(key in m for m in msgs), key


def test_builtin_task_hints_name_real_config_keys(tmp_path: Path) -> None:
    folder = write_qqp_fixture(tmp_path / "qqp", n_train=40, n_dev=20)
    with pytest.raises(DataError) as e:
        load_task("quora", folder, train_size=1000)
    assert _assert_hint_keys_exist(str(e.value), _compose("quora").task) == 2
    rows = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + "".join(f"{i % 2}\t{i}\t{i}\ta {i}\tb {i}\n"
                                                                   for i in range(10))
    for f in ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt"):
        (tmp_path / f).write_text(rows)
    for bad in ({"dev_fraction": 1.5}, {"dev_frac": 0.2}):
        with pytest.raises(DataError) as e:
            load_task("mrpc", tmp_path, **bad)
        if "dev_frac" not in bad:  # an unknown option is named back as given: it need not exist
            assert _assert_hint_keys_exist(str(e.value), _compose("mrpc").task) == 1
    with pytest.raises(DataError) as e:
        load_task("mrpc", tmp_path / "nowhere")
    assert _assert_hint_keys_exist(str(e.value), _compose("mrpc").task) == 1  # task.data_dir


def test_hint_keys_in_source_exist_in_some_task_config() -> None:
    """A static guard over all messages: each literal ``task.options.X`` is an option of some task."""
    import re

    known = {k for t in ("custom", "mrpc", "quora", "stsb", "wikiqa") for k in _compose(t).task.options}
    source = Path(tasks.__file__).read_text()
    named = {o for m in re.findall(r"task\.options\.(\w+(?:/\w+)*)", source) for o in m.split("/")}
    assert named and named <= known, named - known
    facts = "|".join(tasks.FACTS)
    assert not re.search(rf"task\.(?!options\b|data_dir\b|name\b|(?:{facts})\b)\w+",
                         source.replace("task.options.", ""))


# ------------------------------------------------------------------------------------- require_positives
def test_require_positives() -> None:
    negatives = tasks.PairTable.from_pairs(["a", "b", "c"], ["d", "e", "f"], [0.0, 0.5, 0.2], name="x/train")
    with pytest.raises(DataError, match=r"x/train: no positive pair \(label > 0\.5\) among 3 pairs.*"
                                        r"loss=symmetric.*positive_threshold.*loss=mse") as e:
        tasks.require_positives(negatives, 0.5, "symmetric")  # label == threshold is not positive
    assert "\n" not in str(e.value)
    one = tasks.PairTable.from_pairs(["a", "b", "c"], ["d", "e", "f"], [0.0, 0.7, 0.2])
    assert tasks.require_positives(one, 0.5, "symmetric") is None
    tasks.require_positives(negatives, 0.4, "symmetric")  # the threshold decides


# ------------------------------------------------------------------------- data.train_negatives_per_query
def _ranking_table() -> tasks.PairTable:
    """q0: 1 positive + 4 negatives; q1: 2 positives + 1 negative; q2: 3 negatives (unanswered)."""
    rows = [("q0", "p0", 1.0), ("q0", "n0a", 0.0), ("q0", "n0b", 0.0), ("q0", "n0c", 0.0), ("q0", "n0d", 0.0),
            ("q1", "n1a", 0.0), ("q1", "p1a", 1.0), ("q1", "p1b", 1.0),
            ("q2", "n2a", 0.0), ("q2", "n2b", 0.0), ("q2", "n2c", 0.0)]
    return tasks.PairTable.from_pairs(*map(list, zip(*rows)))


@pytest.mark.parametrize("k,per_query", [(0, {"q0": 0, "q1": 0}), (1, {"q0": 1, "q1": 1}),
                                         (3, {"q0": 3, "q1": 1}), (9, {"q0": 4, "q1": 1})])
def test_keep_negatives_per_query(k: int, per_query: dict[str, int]) -> None:
    t = _ranking_table()
    kept = tasks.keep_negatives_per_query(t, 0.5, k)
    pairs = list(zip(kept.text_a, kept.text_b, kept.label.tolist()))
    assert [p for p in pairs if p[2] == 1.0] == [("q0", "p0", 1.0), ("q1", "p1a", 1.0), ("q1", "p1b", 1.0)]
    negatives = [p for p in pairs if p[2] == 0.0]
    assert {q: sum(p[0] == q for p in negatives) for q in ("q0", "q1", "q2")} == {**per_query, "q2": 0}
    assert all(p in list(zip(t.text_a, t.text_b, t.label.tolist())) for p in pairs)
    rows = [list(zip(t.text_a, t.text_b)).index(p[:2]) for p in pairs]
    assert rows == sorted(rows)  # file order kept
    again = tasks.keep_negatives_per_query(t, 0.5, k)
    assert again.text_b == kept.text_b  # the same pairs every run (fixed seed)


def test_keep_negatives_per_query_draws_at_random_and_checks_k() -> None:
    t = _ranking_table()
    drawn = {tuple(tasks.keep_negatives_per_query(t, 0.5, 1, seed=s).text_b) for s in range(20)}
    assert len(drawn) > 1  # not simply the first negatives in file order
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(DataError, match="train_negatives_per_query"):
            tasks.keep_negatives_per_query(t, 0.5, bad)


def test_cut_splits_negatives_per_query() -> None:
    def task() -> tasks.Task:
        return tasks.Task("x", "ranking", 0.5, "map", {"train": _ranking_table(), "dev": _ranking_table(),
                                                       "test": _ranking_table()})
    cut = tasks.cut_splits(task(), train_negatives_per_query=2)
    assert sorted(zip(cut.splits["train"].text_a, cut.splits["train"].label.tolist())) == \
        [("q0", 0.0), ("q0", 0.0), ("q0", 1.0), ("q1", 0.0), ("q1", 1.0), ("q1", 1.0)]
    assert len(cut.splits["dev"]) == len(cut.splits["test"]) == 11  # only training is cut
    with pytest.raises(DataError, match="train_positives_only.*train_negatives_per_query"):
        tasks.cut_splits(task(), train_positives_only=True, train_negatives_per_query=2)
