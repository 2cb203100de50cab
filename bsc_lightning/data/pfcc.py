"""PFCC-S (previously fact-checked claims, Snopes): task ``pfcc_s``, ranking against a candidate pool.

Each tweet is a query; its positive is the verified claim it repeats; at evaluation every query is ranked
against the WHOLE claim set (``Task.pool``, corpus-level: HasPositive@1/5/50, MAP, MRR over the pool).
Files (folder ``pfcc_s/``: ``task.data_dir`` (``pfcc_s/``, its parent or the source folder itself) or
``$BSC_DATA_DIR/pfcc_s``; no hub source), read with csv's DEFAULT quoting (quoted claims span lines):

- ``source=known_lie`` (the paper's data): ``known_lie/tweet-veclaim-pairs.tsv`` (header ``claim, fact``:
  tweet, verified claim; 999 pairs, 997 tweets) and ``known_lie/verified-claims.tsv`` (header ``title,
  fact``; 10,381 rows, 10,369 distinct claims once stripped: the pool holds each once). The paper's split: the first
  ``train_pairs`` (800) pairs train, the rest (199) test; dev = a seeded ``dev_fraction`` of the training
  TWEETS (``random.Random(split_seed).shuffle``, the last share held out with all their pairs).
- ``source=clef2020`` (CLEF-2020 CheckThat! Task 2, official splits): ``clef2020/verified_claims.docs.tsv``
  (``id, vclaim, title``; the pool is the distinct ``vclaim`` texts, 10,369), ``clef2020/{train,dev,test}/tweets.queries.tsv``
  (``id, tweet_content``) and ``.../tweet-vclaim-pairs.qrels`` (``tweet_id 0 vclaim_id 1``, tab).
  ``train_pairs`` / ``dev_fraction`` do not apply.

qid = the tweet (its text for known_lie, its id for clef2020); every pair's label is 1.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from bsc_lightning.data import tasks as _tasks
from bsc_lightning.data.table import PairTable
from bsc_lightning.data.tasks import READERS, CandidatePool, DataError

SOURCES = {
    "known_lie": ["tweet-veclaim-pairs.tsv", "verified-claims.tsv"],
    "clef2020": ["verified_claims.docs.tsv", "train/tweets.queries.tsv", "train/tweet-vclaim-pairs.qrels",
                 "dev/tweets.queries.tsv", "dev/tweet-vclaim-pairs.qrels", "test/tweets.queries.tsv",
                 "test/tweet-vclaim-pairs.qrels"],
}


def read_quoted_tsv(path: Path, columns: list[str], *, header: bool = True) -> tuple[list[list[str]], list[int]]:
    """Rows of a TSV read with csv's default quoting (fields may be quoted and span lines), each cut to
    ``len(columns)`` fields; returns the rows and each row's first file line. :class:`DataError` names the
    line of a short row."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check task.data_dir (or BSC_DATA_DIR)")
    reader = csv.reader(io.StringIO(_tasks._read_text(path), newline=""), delimiter="\t")
    rows, lines, start = [], [], 1
    for i, row in enumerate(reader):
        line, start = start, reader.line_num + 1
        if i == 0 and header:
            continue
        if not row or not any(f.strip() for f in row):
            continue
        if len(row) < len(columns):
            raise DataError(f"{path}: line {line}: {len(row)} tab-separated field(s), expected "
                            f"{len(columns)} ({', '.join(columns)}); fix the row (quote fields with tabs)")
        rows.append([f.strip() for f in row[: len(columns)]])
        lines.append(line)
    return rows, lines


def _nonempty(path: Path, rows: list[list[str]], lines: list[int], cols: list[int], names: list[str]) -> None:
    for row, line in zip(rows, lines):
        for c in cols:
            if not row[c]:
                raise DataError(f"{path}: line {line}: empty {names[c]!r}; fix or remove the row")


def _known_lie(src: Path, split_seed: int, train_pairs: int, dev_fraction: float
               ) -> tuple[dict[str, PairTable], CandidatePool]:
    pairs_path, claims_path = src / SOURCES["known_lie"][0], src / SOURCES["known_lie"][1]
    rows, lines = read_quoted_tsv(pairs_path, ["claim", "fact"])
    _nonempty(pairs_path, rows, lines, [0, 1], ["claim", "fact"])
    claims, claim_lines = read_quoted_tsv(claims_path, ["title", "fact"])
    _nonempty(claims_path, claims, claim_lines, [1], ["title", "fact"])
    pool = CandidatePool(list(dict.fromkeys(r[1] for r in claims)))
    if not 0 < train_pairs < len(rows):
        raise DataError(f"task 'pfcc_s': train_pairs={train_pairs} must lie in (0, {len(rows)}) for "
                        f"{pairs_path.name}; set task.options.train_pairs")
    tweets = [r[0] for r in rows]
    qid = np.unique(np.asarray(tweets, dtype=object), return_inverse=True)[1].reshape(-1)
    full = PairTable.from_pairs(tweets, [r[1] for r in rows], np.ones(len(rows)), qid, "pfcc_s")
    train_q = list(dict.fromkeys(qid[:train_pairs].tolist()))   # training tweets, file order
    _, held = _tasks._seeded_holdout(len(train_q), dev_fraction, split_seed)
    dev_q = {train_q[i] for i in held}
    first = np.arange(train_pairs)
    is_dev = np.isin(qid[:train_pairs], list(dev_q))
    return {"train": full.subset(first[~is_dev], "pfcc_s/train"), "dev": full.subset(first[is_dev], "pfcc_s/dev"),
            "test": full.subset(np.arange(train_pairs, len(rows)), "pfcc_s/test")}, pool


def _clef2020(src: Path) -> tuple[dict[str, PairTable], CandidatePool]:
    docs_path = src / SOURCES["clef2020"][0]
    docs, doc_lines = read_quoted_tsv(docs_path, ["id", "vclaim", "title"])
    _nonempty(docs_path, docs, doc_lines, [0, 1], ["id", "vclaim", "title"])
    claim_of = {r[0]: r[1] for r in docs}
    pool = CandidatePool(list(dict.fromkeys(r[1] for r in docs)))
    splits = {}
    for split in _tasks.SPLITS:
        q_path, r_path = src / split / "tweets.queries.tsv", src / split / "tweet-vclaim-pairs.qrels"
        queries, q_lines = read_quoted_tsv(q_path, ["id", "tweet_content"])
        _nonempty(q_path, queries, q_lines, [0, 1], ["id", "tweet_content"])
        tweet_of = {r[0]: r[1] for r in queries}
        a, b, qid = [], [], []
        for n, line in enumerate(_tasks._read_text(r_path).splitlines(), start=1):
            f = line.split()
            if not f:
                continue
            if len(f) != 4:
                raise DataError(f"{r_path}: line {n}: {len(f)} field(s), expected 4 (tweet_id 0 vclaim_id 1)")
            if f[3] == "0":
                continue
            if f[0] not in tweet_of or f[2] not in claim_of:
                what = f"tweet {f[0]}" if f[0] not in tweet_of else f"verified claim {f[2]}"
                raise DataError(f"{r_path}: line {n}: unknown {what}; check that the qrels match the "
                                f"{q_path.name} and {docs_path.name}")
            a.append(tweet_of[f[0]])
            b.append(claim_of[f[2]])
            qid.append(f[0])
        if not a:
            raise DataError(f"{r_path}: no relevant pair; check the file")
        q = np.unique(np.asarray(qid, dtype=object), return_inverse=True)[1].reshape(-1)
        splits[split] = PairTable.from_pairs(a, b, np.ones(len(a)), q, f"pfcc_s/{split}")
    return splits, pool


def _pfcc_s(data_dir: Any, split_seed: int, source: str = "known_lie", train_pairs: int = 800,
            dev_fraction: float = 0.1) -> tuple[dict[str, PairTable], CandidatePool]:
    """PFCC-S, ranking against the verified-claim pool (see the module docstring for files and splits)."""
    if source not in SOURCES:
        raise DataError(f"task 'pfcc_s': source={source!r}; set task.options.source to one of {list(SOURCES)}")
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if (folder / source).is_dir():        # pfcc_s/ given
            data_dir = folder / source
        elif (folder / "pfcc_s" / source).is_dir():  # its parent given
            data_dir = folder / "pfcc_s" / source
    src = _tasks._resolve("pfcc_s", f"pfcc_s/{source}", SOURCES[source], data_dir, None)
    assert isinstance(src, Path)
    if source == "known_lie":
        return _known_lie(src, split_seed, int(train_pairs), float(dev_fraction))
    return _clef2020(src)


READERS["pfcc_s"] = _pfcc_s
