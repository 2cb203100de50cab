"""SemEval CQA tasks ``cqa_a`` / ``cqa_b`` (bsc_lightning.data.semeval) on fixture files written in the
release layouts (tests/fixtures.write_semeval), the real files (slow), and one tiny end-to-end fit."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures import SEMEVAL_FILES, SEMEVAL_TAGS, make_cfg, write_semeval

from bsc_lightning.data.tasks import READERS, DataError, load_task


@pytest.fixture
def cqa(tmp_path: Path) -> Path:
    return write_semeval(tmp_path / "semeval_cqa")


def _tags(texts: list[str]) -> set[str]:
    return {t.split()[0] for t in texts}


def _xml_counts(path: Path) -> dict[str, int]:
    text = path.read_text()
    return {tag: len(re.findall(rf"<{tag}[ >]", text)) for tag in ("OrgQuestion", "Thread", "RelComment")}


def _one_line_error(match: str, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as e:
        load_task(*args, **kwargs)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


def test_registered_with_config_facts(cqa: Path) -> None:
    assert {"cqa_a", "cqa_b"} <= set(READERS)
    for name in ("cqa_a", "cqa_b"):
        t = load_task(name, cqa)
        assert (t.name, t.type, t.main_metric, t.positive_threshold) == (name, "ranking", "map", 0.5)
        assert set(t.splits) == {"train", "dev", "test"} and all(s.name == f"{name}/{k}" for k, s in t.splits.items())


# ----------------------------------------------------------------------------------------------- CQA-A
def test_cqa_a_labels_texts_and_groups(cqa: Path) -> None:
    t = load_task("cqa_a", cqa, answered_only=False)
    dev = t.splits["dev"]
    # dev: 4 original questions x 4 threads, thread 3 of each marked SubtaskA_Skip -> 12 related questions
    assert len(dev) == 12 * 5 and len(np.unique(dev.qid)) == 12
    src = (cqa / SEMEVAL_FILES["dev"]).read_text()
    first = re.search(r"<RelQSubject>(.*?)</RelQSubject>\s*<RelQBody>(.*?)</RelQBody>", src)
    assert dev.text_a[0] == f"{first[1]} [SEP] {first[2]}"
    # labels: Good -> 1, PotentiallyUseful and Bad -> 0 (thread 1: Good Bad PU Bad Good)
    assert dev.label[:5].tolist() == [1, 0, 0, 0, 1]
    assert "You find the" in dev.text_b[0] and "&" in dev.text_b[0]  # entities decoded
    # qid = the related question: one query text per qid, five comments each
    for q in np.unique(dev.qid):
        rows = np.flatnonzero(dev.qid == q)
        assert len(rows) == 5 and len({dev.text_a[i] for i in rows}) == 1
    # an empty RelQBody keeps the subject
    train = load_task("cqa_a", cqa, answered_only=False).splits["train"]
    assert any(a.endswith("[SEP]") for a in train.text_a)


def test_cqa_a_protocol_and_options(cqa: Path) -> None:
    t = load_task("cqa_a", cqa)
    assert _tags(t.splits["train"].text_a) == {SEMEVAL_TAGS["train2"], SEMEVAL_TAGS["test16"]}
    assert _tags(t.splits["dev"].text_a) == {SEMEVAL_TAGS["dev"]}
    assert _tags(t.splits["test"].text_a) == {SEMEVAL_TAGS["test17a"]}
    full = load_task("cqa_a", cqa, answered_only=False)
    # answered_only: dev/test drop related questions without a Good comment (thread 4 of each); train keeps all
    assert len(full.splits["train"]) == len(t.splits["train"]) == (6 + 5) * 3 * 5
    assert (len(full.splits["dev"]), len(t.splits["dev"])) == (4 * 3 * 5, 4 * 2 * 5)
    assert (len(full.splits["test"]), len(t.splits["test"])) == (16 * 5, 12 * 5)
    for s in ("dev", "test"):
        tab = t.splits[s]
        assert all(tab.label[tab.qid == q].max() == 1 for q in np.unique(tab.qid))
    old = load_task("cqa_a", cqa, test_set=2016)
    assert _tags(old.splits["train"].text_a) == {SEMEVAL_TAGS["train2"]}
    assert _tags(old.splits["test"].text_a) == {SEMEVAL_TAGS["test16"]}
    dup = load_task("cqa_a", cqa, skip_duplicates=False, answered_only=False)
    assert len(dup.splits["dev"]) == 4 * 4 * 5
    # test_set=2016 does not need the 2017 file
    (cqa / SEMEVAL_FILES["test17a"]).unlink()
    assert len(load_task("cqa_a", cqa, test_set="2016").splits["test"]) == len(old.splits["test"])
    _one_line_error("SemEval2017-task3-English-test-subtaskA.xml.*task.data_dir", "cqa_a", cqa)
    _one_line_error("task.options.test_set", "cqa_a", cqa, test_set=2015)


# ----------------------------------------------------------------------------------------------- CQA-B
def test_cqa_b_labels_texts_and_groups(cqa: Path) -> None:
    t = load_task("cqa_b", cqa, derived=False, answered_only=False)
    dev = t.splits["dev"]
    assert len(dev) == 4 * 4 and len(np.unique(dev.qid)) == 4  # OrgQuestion repeated per Thread: one query
    src = (cqa / SEMEVAL_FILES["dev"]).read_text()
    org = re.search(r"<OrgQSubject>(.*?)</OrgQSubject>\s*<OrgQBody>(.*?)</OrgQBody>", src)
    rel = re.search(r"<RelQSubject>(.*?)</RelQSubject>\s*<RelQBody>(.*?)</RelQBody>", src)
    assert (dev.text_a[0], dev.text_b[0]) == (f"{org[1]} [SEP] {org[2]}", f"{rel[1]} [SEP] {rel[2]}")
    # PerfectMatch, Relevant -> 1; Irrelevant -> 0; the last original question has no relevant one
    assert dev.label.tolist() == [1, 1, 0, 0] * 3 + [0] * 4
    for q in np.unique(dev.qid):
        assert len({dev.text_a[i] for i in np.flatnonzero(dev.qid == q)}) == 1


def test_cqa_b_protocol_with_and_without_derived(cqa: Path) -> None:
    t = load_task("cqa_b", cqa)
    train = t.splits["train"]
    assert _tags(train.text_a) == {SEMEVAL_TAGS["train2"], SEMEVAL_TAGS["test16"], SEMEVAL_TAGS["part1"]}
    assert len(train) == (6 + 5) * 4 + 5 * 4 and len(np.unique(train.qid)) == 6 + 5 + 5
    assert _tags(t.splits["dev"].text_a) == {SEMEVAL_TAGS["dev"]}
    test = t.splits["test"]
    assert _tags(test.text_a) == {SEMEVAL_TAGS["test17b"]}
    assert len(test) == 3 * 4 and test.label.tolist() == [1, 1, 0, 0] * 3  # answered_only drops Q903
    # derived texts: CSV-quoted, "subject. body" -> "subject [SEP] body"
    assert any('Where, "really",' in a and " [SEP] Where" in a for a in test.text_a)
    assert all(a.count(" [SEP] ") == 1 for a in test.text_a + test.text_b)
    part1 = [a for a in train.text_a if a.startswith(SEMEVAL_TAGS["part1"])]
    assert part1 and all(" [SEP] Where can I find" in a for a in part1)
    assert len(load_task("cqa_b", cqa, answered_only=False).splits["test"]) == 16
    # derived=false: official files only; the derived/ folder is not needed
    shutil.rmtree(cqa / "derived")
    off = load_task("cqa_b", cqa, derived=False)
    assert _tags(off.splits["train"].text_a) == {SEMEVAL_TAGS["train2"]}
    assert _tags(off.splits["test"].text_a) == {SEMEVAL_TAGS["test16"]}
    _one_line_error("derived/SemEval2017-test-subtaskB-pairs.derived.tsv.*not found", "cqa_b", cqa)


def test_cqa_b_derived_checked_against_relevancy(cqa: Path) -> None:
    path = cqa / SEMEVAL_FILES["test17b"]
    lines = path.read_text().splitlines()
    lines[1] = lines[1][: lines[1].rindex("\t")] + "\tfalse"  # Q900_R1 is 'true' in the relevancy file
    path.write_text("\n".join(lines) + "\n")
    msg = _one_line_error(r"line 2: pair \('Q900', 'Q900_R1'\).*disagrees with", "cqa_b", cqa)
    assert SEMEVAL_FILES["rel17"] in msg
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    _one_line_error("15 pairs.*has 16", "cqa_b", cqa)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("key,old,new,match", [
    ("dev", "</RelComment>", "</RelComent>", r"line \d+, column \d+: not well-formed XML \(mismatched tag\)"),
    ("dev", 'RELC_RELEVANCE2RELQ="Bad"', 'RELC_RELEVANCE2RELQ="Meh"',
     r"<RelComment RELC_ID='Q200_R1_C2'>: RELC_RELEVANCE2RELQ='Meh' is not one of Good/PotentiallyUseful/Bad"),
    ("train2", r"<RelQSubject>([^<]*)</RelQSubject>", r"<Subject>\1</Subject>",
     r"<RelQuestion RELQ_ID='Q100_R1'> has no <RelQSubject> element"),
    ("test16", 'RELQ_RELEVANCE2ORGQ="Relevant"', 'RELQ_RELEVANCE2ORGQ="Maybe"',
     r"<RelQuestion RELQ_ID='Q300_R2'>: RELQ_RELEVANCE2ORGQ='Maybe'"),
    ("test17a", r"<RelCText>[^<]*</RelCText>", "<RelCText> </RelCText>",
     r"<RelComment RELC_ID='Q900_R1_C1'>: empty <RelCText>"),
    ("test16", r"<RelQuestion [^>]*>", "<RelQuestion>", r"<RelQuestion> has no RELQ_RELEVANCE2ORGQ attribute"),
])
def test_malformed_input_names_file_and_element(cqa: Path, key, old, new, match) -> None:
    path = cqa / SEMEVAL_FILES[key]
    path.write_text(re.sub(old, new, path.read_text(), count=1))
    task = "cqa_b" if "ORGQ" in old or key == "test16" else "cqa_a"
    msg = _one_line_error(match, task, cqa)
    assert msg.startswith(str(path)), msg


def test_missing_folder_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BSC_DATA_DIR", raising=False)
    _one_line_error("no data source.*semeval_cqa/SemEval2016-Task3-CQA-QL-train-part2.xml.*no hub source",
                    "cqa_a")
    _one_line_error("train-part2.xml: file not found", "cqa_b", tmp_path)


def test_bsc_data_dir(cqa: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BSC_DATA_DIR", str(cqa.parent))
    assert len(load_task("cqa_b").splits["test"]) == 12
    assert len(load_task("cqa_a", cqa.parent).splits["dev"]) == 40  # the parent folder works as data_dir


# ------------------------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_cqa_a_real_counts(shared_data: Path) -> None:
    folder = shared_data / "semeval_cqa"
    for f, n in (("train2", 670), ("dev", 500), ("test16", 700)):  # README: threads = related questions
        assert _xml_counts(folder / SEMEVAL_FILES[f]) == {"OrgQuestion": n, "Thread": n, "RelComment": 10 * n}
    full = load_task("cqa_a", folder, answered_only=False)
    # official subtask A sets (skip-marked threads out): train-part2 379 + 2016 test 327 threads;
    # dev 244 / 2,440 (the paper's CQA-A dev); 2017 test 293 / 2,930, Good 1,523 / Bad 1,407
    assert _sizes(full) == ((7060, 706), (2440, 244), (2930, 293))
    assert int(full.splits["test"].label.sum()) == 1523 and int(full.splits["dev"].label.sum()) == 818
    t = load_task("cqa_a", folder)
    assert _sizes(t) == ((7060, 706), (2110, 211), (2870, 287))
    old = load_task("cqa_a", folder, test_set=2016)
    assert _sizes(old) == ((3790, 379), (2110, 211), (3150, 315))


@pytest.mark.slow
def test_cqa_b_real_counts(shared_data: Path) -> None:
    folder = shared_data / "semeval_cqa"
    full = load_task("cqa_b", folder, answered_only=False)
    # train: 67 + 70 original questions x 10 + 1,999 derived part 1 pairs (200 questions)
    assert _sizes(full) == ((3369, 337), (500, 50), (880, 88))
    assert int(full.splits["test"].label.sum()) == 163  # 'true' in the 2017 relevancy file
    t = load_task("cqa_b", folder)
    assert _sizes(t) == ((3369, 337), (430, 43), (590, 59))
    off = load_task("cqa_b", folder, derived=False)
    assert _sizes(off) == ((670, 67), (430, 43), (620, 62))
    assert all(" [SEP] " in a for a in t.splits["test"].text_a)


def _sizes(t) -> tuple[tuple[int, int], ...]:
    return tuple((len(s), len(np.unique(s.qid))) for s in (t.splits[k] for k in ("train", "dev", "test")))


# ------------------------------------------------------------------------------------------ end to end
def test_tiny_fit_cqa_a(tiny_bert: str, cqa: Path, tmp_path: Path) -> None:
    from bsc_lightning.run import train

    cfg = make_cfg([f"encoder.name_or_path={tiny_bert}", "encoder.max_length=32", "trainer=cpu",
                    "data.batch_size=8", "trainer.log_every_n_steps=1", "logger=csv", "export=false",
                    f"data.cache_dir={tmp_path / 'cache'}", "task=cqa_a", f"task.data_dir={cqa}",
                    "loss=symmetric"])
    metrics = train(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    for split in ("dev", "test"):
        for k in ("map", "mrr"):
            assert 0.0 < saved[f"{split}/{k}"] <= 1.0, (split, k, sorted(saved))
