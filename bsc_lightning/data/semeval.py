"""SemEval-2016/2017 Task 3 (community question answering, Qatar Living, English): tasks ``cqa_a``, ``cqa_b``.

Files (folder ``semeval_cqa/``: ``task.data_dir`` or ``$BSC_DATA_DIR/semeval_cqa``; no hub source):

- ``SemEval2016-Task3-CQA-QL-{train-part2,dev,test}.xml``: ``OrgQuestion`` elements, each repeated once per
  related ``Thread`` (``RelQuestion`` + 10 ``RelComment``); labels ``RELC_RELEVANCE2RELQ`` (subtask A) and
  ``RELQ_RELEVANCE2ORGQ`` (subtask B). Threads with ``SubtaskA_Skip_Because_Same_As_RelQuestion_ID`` repeat
  a thread found elsewhere and are not part of the official subtask A sets (dev: 244 of 500 threads).
- ``SemEval2017-task3-English-test-subtaskA.xml``: top-level ``Thread`` elements, gold labels inside.
- ``derived/SemEval2017-test-subtaskB-pairs.derived.tsv`` (880 pairs, ids, gold ``true``/``false``) and
  ``derived/SemEval2016-train-part1-subtaskB-pairs.derived.tsv`` (1,999 pairs, no ids): tables rebuilt
  from a third-party copy, NOT official files; CSV-quoted (``"``, doubled ``""``), subject and body joined
  by ". ". The 2017 table is checked against the official ``SemEval2017-...subtaskB.relevancy``.

A question's text is ``subject + " [SEP] " + body``. In the derived tables the first ". " is taken as the
subject/body boundary and replaced by " [SEP] " (related questions of the 2017 test are taken from the
subtask A XML by id when present there, exactly); a subject that itself holds ". " (≈1% in the XMLs) is
split there instead.

Protocols (state the one a result used; the paper trained on the 2016 train part 1, not available here):

- default ("2017", the data README's suggestion): train = train-part2 + the 2016 test, model selection on the
  2016 dev, test on the 2017 test (CQA-A: the official subtask A XML; CQA-B: the derived 2017 pairs). CQA-B
  also trains on the derived 2016 train part 1 pairs.
- "2016" (``cqa_a``: ``test_set=2016``; ``cqa_b``: ``derived=false``, no derived table at all): train =
  train-part2, dev = the 2016 dev, test = the 2016 test (official files only).

Dev and test keep only queries with at least one positive when ``answered_only`` (as for WikiQA; the
ranking metrics skip such queries anyway). Errors are one-line :class:`DataError` naming file and element.
"""
from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bsc_lightning.data.table import PairTable
from bsc_lightning.data.tasks import (
    READERS,
    SPLITS,
    DataError,
    _answered,
    _need,
    _read_text,
    _resolve,
    _table,
)

try:
    import pandas as pd
except ImportError:  # as in tasks.py: only the readers need pandas
    pd = None

SUBDIR = "semeval_cqa"
TRAIN2 = "SemEval2016-Task3-CQA-QL-train-part2.xml"
DEV16 = "SemEval2016-Task3-CQA-QL-dev.xml"
TEST16 = "SemEval2016-Task3-CQA-QL-test.xml"
TEST17_A = "SemEval2017-task3-English-test-subtaskA.xml"
TEST17_B_GOLD = "SemEval2017-Task3-CQA-QL-test.xml.subtaskB.relevancy"
TEST17_B = "derived/SemEval2017-test-subtaskB-pairs.derived.tsv"
TRAIN1_B = "derived/SemEval2016-train-part1-subtaskB-pairs.derived.tsv"

SEP = " [SEP] "
LABELS_A = {"Good": 1.0, "PotentiallyUseful": 0.0, "Bad": 0.0}  # RELC_RELEVANCE2RELQ
LABELS_B = {"PerfectMatch": 1.0, "Relevant": 1.0, "Irrelevant": 0.0}  # RELQ_RELEVANCE2ORGQ
TEST_SETS = ("2017", "2016")

Row = tuple[str, str, str, float]  # (query key, query text, candidate text, label)


# ------------------------------------------------------------------------------------------------ XML
def _tag(el: ET.Element) -> str:
    """``<Tag ID="...">`` of an element, for messages."""
    key = next((k for k in ("RELC_ID", "RELQ_ID", "THREAD_SEQUENCE", "ORGQ_ID") if k in el.attrib), None)
    return f"<{el.tag} {key}={el.get(key)!r}>" if key else f"<{el.tag}>"


def _parse(path: Path) -> ET.Element:
    """The root of an XML file; :class:`DataError` naming the line and column when not well-formed."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; set task.data_dir to the folder holding the SemEval files")
    try:
        return ET.fromstring(path.read_bytes())
    except ET.ParseError as e:
        line, col = e.position
        why = str(e).split(":")[0]
        raise DataError(f"{path}: line {line}, column {col + 1}: not well-formed XML ({why}); "
                        "fix the file or copy it again from the release") from None


def _child(el: ET.Element, tag: str, path: Path) -> ET.Element:
    found = el.find(tag)
    if found is None:
        raise DataError(f"{path}: {_tag(el)} has no <{tag}> element; fix the element "
                        "(SemEval-2016/2017 Task 3 layout)")
    return found


def _attr(el: ET.Element, name: str, path: Path) -> str:
    value = el.get(name)
    if value is None or not value.strip():
        raise DataError(f"{path}: {_tag(el)} has no {name} attribute; fix the element")
    return value.strip()


def _text(el: ET.Element, tag: str, path: Path) -> str:
    return " ".join((_child(el, tag, path).text or "").split())


def _question(el: ET.Element, prefix: str, path: Path) -> str:
    """``subject [SEP] body`` of an OrgQuestion (prefix OrgQ) or RelQuestion (RelQ); the body may be empty."""
    subject, body = _text(el, f"{prefix}Subject", path), _text(el, f"{prefix}Body", path)
    if not subject and not body:
        raise DataError(f"{path}: {_tag(el)}: empty <{prefix}Subject> and <{prefix}Body>; "
                        "fix or remove the element")
    return f"{subject}{SEP}{body}".strip()


def _label(el: ET.Element, name: str, labels: dict[str, float], path: Path) -> float:
    value = _attr(el, name, path)
    if value not in labels:
        raise DataError(f"{path}: {_tag(el)}: {name}={value!r} is not one of {'/'.join(labels)}; "
                        "fix the element")
    return labels[value]


def _threads(path: Path) -> Iterator[tuple[ET.Element | None, ET.Element]]:
    """(OrgQuestion or None, Thread) of a 2016 file (OrgQuestion > Thread) or a 2017 one (top-level Thread)."""
    root = _parse(path)
    found = False
    for org in root.iter("OrgQuestion"):
        found = True
        threads = org.findall("Thread")
        if not threads:
            raise DataError(f"{path}: {_tag(org)} has no <Thread> element; fix the element")
        for thread in threads:
            yield org, thread
    if not found:
        for thread in root.iter("Thread"):
            found = True
            yield None, thread
    if not found:
        raise DataError(f"{path}: no <OrgQuestion> or <Thread> element under <{root.tag}>; "
                        "not a SemEval Task 3 file")


def _rows_a(path: Path, skip_duplicates: bool) -> list[Row]:
    """Subtask A: (related question id, its text, comment text, Good -> 1 else 0) per comment."""
    rows: list[Row] = []
    for _, thread in _threads(path):
        if skip_duplicates and thread.get("SubtaskA_Skip_Because_Same_As_RelQuestion_ID"):
            continue
        relq = _child(thread, "RelQuestion", path)
        qkey, query = _attr(relq, "RELQ_ID", path), _question(relq, "RelQ", path)
        for comment in thread.findall("RelComment"):
            text = _text(comment, "RelCText", path)
            if not text:
                raise DataError(f"{path}: {_tag(comment)}: empty <RelCText>; fix or remove the comment")
            rows.append((qkey, query, text, _label(comment, "RELC_RELEVANCE2RELQ", LABELS_A, path)))
    return rows


def _rows_b(path: Path) -> list[Row]:
    """Subtask B: (original question id, its text, related question text, label) per related question."""
    rows: list[Row] = []
    for org, thread in _threads(path):
        if org is None:
            raise DataError(f"{path}: <Thread> without <OrgQuestion>: a subtask A file, not a subtask B one; "
                            "check task.data_dir")
        relq = _child(thread, "RelQuestion", path)
        rows.append((_attr(org, "ORGQ_ID", path), _question(org, "OrgQ", path), _question(relq, "RelQ", path),
                     _label(relq, "RELQ_RELEVANCE2ORGQ", LABELS_B, path)))
    return rows


def _pairs(rows: list[Row], name: str) -> PairTable:
    """The pair table of rows; qid = the query key's index (keys of different files never merge wrongly:
    the keys are release ids, or ``derived:<text>`` for the id-less derived table)."""
    if not rows:
        raise DataError(f"{name}: no pairs read; check task.data_dir")
    keys, a, b, y = zip(*rows)
    return PairTable.from_pairs(list(a), list(b), np.asarray(y, dtype=np.float64), pd.factorize(pd.Series(keys))[0],
                                name)


# ----------------------------------------------------------------------------------------- derived tables
def _resplit(text: str) -> str:
    """A derived table's ``subject. body`` as ``subject [SEP] body`` (the first ". " is the boundary)."""
    subject, dot, body = text.partition(". ")
    return " ".join(f"{subject}{SEP}{body}".split() if dot else text.split())


def _read_derived(path: Path, cols: list[str]) -> pd.DataFrame:
    """A derived table: tab-separated, header, CSV-quoted (unlike the release files)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; set task.data_dir to the folder holding derived/, "
                        "or task.options.derived=false to use the official files only")
    rows = list(csv.reader(io.StringIO(_read_text(path), newline=""), delimiter="\t"))
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise DataError(f"{path}: empty file; expected a header {cols}")
    header = rows.pop(0)
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise DataError(f"{path}: line {i + 2}: {len(row)} tab-separated fields, expected {len(header)}; "
                            "fix the row")
    df = pd.DataFrame(rows, columns=header)
    _need(df, path, cols)
    return df


def _row_labels(df: pd.DataFrame, col: str, labels: dict[str, float], path: Path) -> np.ndarray:
    values = df[col].str.strip()
    bad = np.flatnonzero(~values.isin(list(labels)).to_numpy())
    if len(bad):
        raise DataError(f"{path}: line {bad[0] + 2}: label {values.iloc[bad[0]]!r} in column {col!r} is not one "
                        f"of {'/'.join(labels)}; fix the row")
    return values.map(labels).to_numpy(dtype=np.float64)


def _train1_b(path: Path) -> PairTable:
    """The derived 2016 train part 1 subtask B pairs (no ids: qid by original question text)."""
    cols = ["orgq_subject_dot_body", "relq_subject_dot_body", "RELQ_RELEVANCE2ORGQ"]
    df = _read_derived(path, cols)
    y = _row_labels(df, cols[2], LABELS_B, path)
    for c in cols[:2]:
        df[c] = df[c].map(_resplit)
    qid = pd.factorize(df[cols[0]])[0]
    return _table(df, cols[0], cols[1], y, path, 2, qid, "cqa_b/train-part1")


def _gold_b(path: Path) -> dict[tuple[str, str], bool]:
    """(orgq id, relq id) -> relevant, from an official ``*.subtaskB.relevancy`` file."""
    gold = {}
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 5 or fields[4] not in ("true", "false"):
            raise DataError(f"{path}: line {n}: expected 'orgq_id relq_id rank score true|false', got "
                            f"{line.strip()[:60]!r}; fix the line")
        gold[(fields[0], fields[1])] = fields[4] == "true"
    return gold


def _test17_b(folder: Path) -> list[Row]:
    """The derived 2017 test subtask B pairs, checked against the official relevancy file."""
    path, gold_path = folder / TEST17_B, folder / TEST17_B_GOLD
    cols = ["orgq_id", "relq_id", "orgq_subject_dot_body", "relq_subject_dot_body", "gold_relevant"]
    df = _read_derived(path, cols)
    y = _row_labels(df, "gold_relevant", {"true": 1.0, "false": 0.0}, path)
    gold = _gold_b(gold_path)
    exact: dict[str, str] = {}  # related questions of the subtask A XML: texts as released, by id
    if (folder / TEST17_A).is_file():
        for _, thread in _threads(folder / TEST17_A):
            relq = _child(thread, "RelQuestion", folder / TEST17_A)
            exact[_attr(relq, "RELQ_ID", folder / TEST17_A)] = _question(relq, "RelQ", folder / TEST17_A)
    rows: list[Row] = []
    for i, r in enumerate(df.itertuples(index=False)):
        key = (r.orgq_id.strip(), r.relq_id.strip())
        if gold.get(key) != bool(y[i]):
            why = "is not in" if key not in gold else "disagrees with"
            raise DataError(f"{path}: line {i + 2}: pair {key} (gold_relevant={r.gold_relevant!r}) {why} "
                            f"{gold_path.name}; restore the derived table")
        query, cand = _resplit(r.orgq_subject_dot_body.strip()), r.relq_subject_dot_body.strip()
        if not query or not cand:
            raise DataError(f"{path}: line {i + 2}: empty text; fix or remove the row")
        rows.append((key[0], query, exact.get(key[1], _resplit(cand)), float(y[i])))
    if len(rows) != len(gold):
        have = set(zip(df["orgq_id"].str.strip(), df["relq_id"].str.strip()))
        missing = sorted(set(gold) - have)
        raise DataError(f"{path}: {len(rows)} pairs, {gold_path.name} has {len(gold)} (e.g. {missing[:1]} "
                        "missing); restore the derived table")
    return rows


# ---------------------------------------------------------------------------------------------- readers
def _finish(splits: dict[str, PairTable], answered_only: bool, task: str) -> dict[str, PairTable]:
    if answered_only:
        splits.update({s: _answered(splits[s]) for s in ("dev", "test")})
    for s in SPLITS:
        splits[s].name = f"{task}/{s}"
    return {s: splits[s] for s in SPLITS}


def _test_set(value: Any) -> str:
    test_set = str(value).strip()
    if test_set not in TEST_SETS:
        raise DataError(f"task 'cqa_a': test_set={value!r}; set task.options.test_set to 2017 (the official "
                        "2017 subtask A test) or 2016 (the 2016 test; train on train-part2 only)")
    return test_set


def _cqa_a(data_dir: Any, split_seed: int, answered_only: bool = True, test_set: int | str = 2017,
           skip_duplicates: bool = True) -> dict[str, PairTable]:
    """SemEval Task 3 subtask A, ranking a related question's comments: MAP/MRR per related question.

    query = related question ``subject [SEP] body``; candidate = comment; label 1 for Good, 0 for
    PotentiallyUseful and Bad; qid = the related question (RELQ_ID).

    Protocol ``test_set=2017`` (default; the data README's): train = train-part2 + the 2016 test, dev =
    the 2016 dev, test = the official 2017 subtask A test XML. ``test_set=2016``: train = train-part2,
    dev = the 2016 dev, test = the 2016 test. No derived table is used by either.
    ``skip_duplicates``: leave out the threads marked ``SubtaskA_Skip_Because_Same_As_RelQuestion_ID``
    (the official subtask A sets: dev 244 questions / 2,440 comments). ``answered_only``: dev and test
    keep related questions with at least one Good comment.
    """
    test_set = _test_set(test_set)
    files = [TRAIN2, DEV16, TEST16] + ([TEST17_A] if test_set == "2017" else [])
    folder = _resolve("cqa_a", SUBDIR, files, data_dir, None)
    assert isinstance(folder, Path)  # no hub source
    train, dev, test16 = (_rows_a(folder / f, skip_duplicates) for f in (TRAIN2, DEV16, TEST16))
    if test_set == "2017":
        train, test = train + test16, _rows_a(folder / TEST17_A, skip_duplicates)
    else:
        test = test16
    splits = {"train": _pairs(train, "cqa_a/train"), "dev": _pairs(dev, "cqa_a/dev"),
              "test": _pairs(test, "cqa_a/test")}
    return _finish(splits, answered_only, "cqa_a")


def _cqa_b(data_dir: Any, split_seed: int, answered_only: bool = True, derived: bool = True
           ) -> dict[str, PairTable]:
    """SemEval Task 3 subtask B, ranking related questions for an original question: MAP/MRR per original.

    query = original question ``subject [SEP] body``; candidate = related question ``subject [SEP] body``;
    label 1 for PerfectMatch and Relevant, 0 for Irrelevant; qid = the original question (ORGQ_ID).

    Protocol ``derived=true`` (default; the data README's): train = train-part2 + the 2016 test + the
    derived 2016 train part 1 pairs (1,999), dev = the 2016 dev, test = the derived 2017 test pairs (880,
    checked against the official relevancy file). The derived tables are rebuilt from a third-party copy,
    not official files: say so with results. ``derived=false`` (official files only): train = train-part2,
    dev = the 2016 dev, test = the 2016 test. ``answered_only``: dev and test keep original questions with
    at least one relevant related question.
    """
    files = [TRAIN2, DEV16, TEST16] + ([TEST17_B, TEST17_B_GOLD, TRAIN1_B] if derived else [])
    folder = _resolve("cqa_b", SUBDIR, files, data_dir, None)
    assert isinstance(folder, Path)  # no hub source
    train, dev, test16 = (_rows_b(folder / f) for f in (TRAIN2, DEV16, TEST16))
    if derived:
        part1 = _train1_b(folder / TRAIN1_B)
        train += test16 + [(f"derived:{part1.qid[i]}", part1.texts[part1.a[i]], part1.texts[part1.b[i]],
                            float(part1.label[i])) for i in range(len(part1))]
        test = _test17_b(folder)
    else:
        test = test16
    splits = {"train": _pairs(train, "cqa_b/train"), "dev": _pairs(dev, "cqa_b/dev"),
              "test": _pairs(test, "cqa_b/test")}
    return _finish(splits, answered_only, "cqa_b")


READERS.update(cqa_a=_cqa_a, cqa_b=_cqa_b)
