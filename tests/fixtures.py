"""Tiny data folders in the ORIGINAL release layouts read by `bsc_lightning.data.tasks`, and the config
composer of the end-to-end tests.

The writers make the end-to-end tests independent of ``../shared/data``: a fresh clone runs them on these
files. Each folder mimics its release byte for byte where the readers care (no header / header, tabs,
BOM, CRLF, bare ``"``, STS-B's extra trailing columns, MRPC's 0x12 apostrophe), but holds ≈60–200 rows
per split. Texts are learnable-ish: the word overlap of a pair goes with its label, and some texts recur
across rows (duplicate ids), as in the real data.

    write_stsb(folder)    sts-train.csv / sts-dev.csv / sts-test.csv   (regression, score 0–5)
    write_mrpc(folder)    msr_paraphrase_train.txt / msr_paraphrase_test.txt   (classification)
    write_wikiqa(folder)  WikiQA-train.tsv / WikiQA-dev.tsv / WikiQA-test.tsv   (ranking)
    write_qqp(folder)     train.tsv / dev.tsv in the GLUE QQP layout (bench.synthetic)
    write_data_root(root) all four as root/stsb, root/mrpc, root/wikiqa, root/qqp (a BSC_DATA_DIR layout)
"""
from __future__ import annotations

import codecs
import random
from pathlib import Path

from bench.synthetic import write_qqp_fixture

_ADJ = ["small", "red", "old", "quiet", "bright", "young", "heavy", "green", "happy", "dark", "tall", "wooden"]
_NOUN = ["man", "woman", "dog", "cat", "child", "car", "horse", "bird", "chef", "player", "girl", "boy",
         "train", "guitar", "ball", "river", "house", "garden", "table", "street", "kitchen", "beach",
         "pizza", "book", "plane", "bicycle", "piano", "window"]
_VERB = ["is playing", "is riding", "is cutting", "is watching", "is cleaning", "is painting", "is carrying",
         "is reading", "is jumping over", "is walking along", "is eating", "is holding"]
_PLACE = ["in the park", "on the beach", "near the river", "in the kitchen", "on a stage", "at home",
          "in the snow", "on the street", "in a field", "at night"]


def _sentence(rng: random.Random) -> list[str]:
    """An image-caption-like sentence as a word list: 'A small dog is riding a red car in the park .'"""
    return (["A", rng.choice(_ADJ), rng.choice(_NOUN)] + rng.choice(_VERB).split()
            + ["a", rng.choice(_ADJ), rng.choice(_NOUN)] + rng.choice(_PLACE).split())


def _replace_words(words: list[str], k: int, rng: random.Random) -> list[str]:
    """``words`` with ``k`` of its adjectives and nouns replaced by others of the vocabulary."""
    out = list(words)
    slots = [i for i, w in enumerate(out) if w in _ADJ or w in _NOUN]
    for i in rng.sample(slots, min(k, len(slots))):
        pool = _ADJ if out[i] in _ADJ else _NOUN
        out[i] = rng.choice([w for w in pool if w != out[i]])
    return out


def _text(words: list[str]) -> str:
    return " ".join(words) + "."


def _write(path: Path, lines: list[str], *, crlf: bool = False, bom: bool = False) -> None:
    data = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + data.encode("utf-8"))


# ----------------------------------------------------------------------------------------------- STS-B
def stsb_rows(n: int, seed: int) -> list[tuple[float, str, str]]:
    """(score 0–5, s1, s2): score = 5 × the share of unchanged content words, plus a little noise.

    Every 7th row reuses an earlier first sentence and every 11th an earlier second sentence, so the
    splits hold duplicate texts on each side (never the same text on both sides of two rows)."""
    rng = random.Random(seed)
    rows: list[tuple[float, str, str]] = []
    for i in range(n):
        words = _sentence(rng)
        if i % 7 == 6 and rows:
            words = rows[rng.randrange(len(rows))][1].rstrip(".").split()
        k = rng.randrange(0, 5)  # of the 4 adjectives and nouns
        other = _replace_words(words, k, rng)
        other[0] = "One"  # never the same text on both sides: a rewording that keeps the meaning
        score = max(0.0, min(5.0, 5.0 * (1 - k / 4) + rng.uniform(-0.4, 0.4)))
        s1, s2 = _text(words), _text(other)
        if i % 11 == 10 and rows:
            s2 = rows[rng.randrange(len(rows))][2]
            score = min(score, 1.0)
        if i % 13 == 5:  # bare double quotes occur in the release (read with quoting off)
            s2 = s2.replace(" a ", ' a "so-called" ', 1)
        rows.append((round(score, 3), s1, s2))
    return rows


def write_stsb(folder: str | Path, n_train: int = 120, n_dev: int = 60, n_test: int = 60, seed: int = 0) -> Path:
    """sts-{train,dev,test}.csv: no header; TAB: genre, file, year, id, score (0–5), s1, s2.

    As in the release, some rows carry two extra trailing columns (the reader drops them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, (split, n) in enumerate((("train", n_train), ("dev", n_dev), ("test", n_test))):
        lines = []
        for i, (score, s1, s2) in enumerate(stsb_rows(n, seed * 100 + k)):
            genre, file = ("main-captions", "MSRvid") if i % 3 else ("main-news", "headlines")
            line = f"{genre}\t{file}\t2012test\t{i:04d}\t{score:.3f}\t{s1}\t{s2}"
            if i % 17 == 3:
                line += "\tsource-a\tsource-b"
            lines.append(line)
        _write(folder / f"sts-{split}.csv", lines)
    return folder


# ------------------------------------------------------------------------------------------------ MRPC
def mrpc_rows(n: int, seed: int, positive_rate: float = 0.67) -> list[tuple[int, str, str]]:
    """(quality 0/1, s1, s2): paraphrases change at most one content word (and maybe the article);
    non-paraphrases are another sentence sharing only the frame words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = _sentence(rng)
        if rng.random() < positive_rate:
            other = _replace_words(words, rng.randrange(0, 2), rng)
            other[0] = rng.choice(["One", "The"])  # never identical
            rows.append((1, _text(words), _text(other)))
        else:
            rows.append((0, _text(words), _text(_replace_words(_sentence(rng), 2, rng))))
    return rows


def write_mrpc(folder: str | Path, n_train: int = 160, n_test: int = 60, seed: int = 0) -> Path:
    """msr_paraphrase_{train,test}.txt: UTF-8 with BOM, CRLF, header ``Quality #1 ID #2 ID #1 String
    #2 String`` (the task holds out a seeded 10% of train as dev). One row holds the release's 0x12."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids: dict[str, int] = {}
    for k, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i, (y, s1, s2) in enumerate(mrpc_rows(n, seed * 100 + k)):
            if i == 2:
                s1 = s1.replace("A ", "The chef\x12s ", 1)  # a mangled apostrophe, as in row 61559
            i1 = ids.setdefault(s1, 100000 + 7 * len(ids))
            i2 = ids.setdefault(s2, 100000 + 7 * len(ids))
            lines.append(f"{y}\t{i1}\t{i2}\t{s1}\t{s2}")
        _write(folder / f"msr_paraphrase_{split}.txt", lines, crlf=True, bom=True)
    return folder


# ---------------------------------------------------------------------------------------------- WikiQA
_WH = [("what is", "is"), ("where is", "is found"), ("who owns", "is owned by"), ("how big is", "measures")]


def wikiqa_rows(n_questions: int, seed: int, candidates: int = 5, answered: float = 0.8,
                first_qid: int = 1) -> list[tuple[str, str, str, str, str, str, int]]:
    """(QuestionID, Question, DocumentID, DocumentTitle, SentenceID, Sentence, Label) rows.

    Every question has ``candidates`` sentences from one document about the question's subject; the
    correct one (present for a share ``answered`` of the questions) repeats the question's key words,
    the others mention the subject only."""
    rng = random.Random(seed)
    rows = []
    for q in range(n_questions):
        qid, doc = f"Q{first_qid + q}", f"D{first_qid + q}"
        adj, noun, other = rng.choice(_ADJ), rng.choice(_NOUN), rng.choice(_NOUN)
        wh, verb = rng.choice(_WH)
        question = f"{wh} the {adj} {noun} {rng.choice(_PLACE)}?"
        good = rng.randrange(candidates) if rng.random() < answered else -1
        for c in range(candidates):
            if c == good:
                sentence = f"The {adj} {noun} {verb} the {other} {rng.choice(_PLACE)} ."
            else:
                sentence = (f"A {rng.choice(_NOUN)} {rng.choice(_VERB)} a {rng.choice(_ADJ)} {noun} "
                            f"{rng.choice(_PLACE)} .")
            if c == 1 and q % 5 == 0:
                sentence = f'The "{noun}" was named in {1900 + q} .'
            rows.append((qid, question, doc, f"{adj.capitalize()} {noun}", f"{doc}-{c}", sentence,
                         int(c == good)))
    return rows


def write_wikiqa(folder: str | Path, n_questions: tuple[int, int, int] = (30, 14, 14), candidates: int = 5,
                 seed: int = 0) -> Path:
    """WikiQA-{train,dev,test}.tsv: CRLF, header ``QuestionID Question DocumentID DocumentTitle
    SentenceID Sentence Label``; ``candidates`` sentences per question, ~80% of questions answered."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    first = 1
    for k, (split, n) in enumerate(zip(("train", "dev", "test"), n_questions)):
        lines = ["QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel"]
        for row in wikiqa_rows(n, seed * 100 + k, candidates, first_qid=first):
            lines.append("\t".join(map(str, row)))
        first += n
        _write(folder / f"WikiQA-{split}.tsv", lines, crlf=True)
    return folder


# ------------------------------------------------------------------------------------------- QQP, all
def write_qqp(folder: str | Path, n_train: int = 200, n_dev: int = 60, seed: int = 0) -> Path:
    """train.tsv / dev.tsv in the GLUE QQP layout (no QQP copy is available offline)."""
    return write_qqp_fixture(folder, n_train=n_train, n_dev=n_dev, seed=seed)


def write_data_root(root: str | Path) -> Path:
    """root/stsb, root/mrpc, root/wikiqa, root/qqp: the layout of ``BSC_DATA_DIR`` / ``../shared/data``."""
    root = Path(root)
    write_stsb(root / "stsb")
    write_mrpc(root / "mrpc")
    write_wikiqa(root / "wikiqa")
    write_qqp(root / "qqp")
    return root


# --------------------------------------------------------------------------------------------- configs
def make_cfg(overrides: list[str]):
    """The run config composed from conf/ with Hydra's compose API (what the command line would build)."""
    from hydra import compose, initialize_config_dir

    from bsc_lightning.run import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
