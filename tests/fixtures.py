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
    write_semeval(folder) semeval_cqa/: SemEval-2016/2017 Task 3 XML, relevancy, derived/ tables (ranking)
    write_data_root(root) all of them as root/<name> (a BSC_DATA_DIR layout)
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
    """root/{stsb,mrpc,wikiqa,qqp,semeval_cqa}: the layout of ``BSC_DATA_DIR`` / ``../shared/data``."""
    root = Path(root)
    write_stsb(root / "stsb")
    write_mrpc(root / "mrpc")
    write_wikiqa(root / "wikiqa")
    write_qqp(root / "qqp")
    write_semeval(root / "semeval_cqa")
    return root


# --------------------------------------------------------------------------------------------- configs
def make_cfg(overrides: list[str]):
    """The run config composed from conf/ with Hydra's compose API (what the command line would build)."""
    from hydra import compose, initialize_config_dir

    from bsc_lightning.run import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


# ----------------------------------------------------------------------------------------- SemEval CQA
# File names of the SemEval-2016/2017 Task 3 release (bsc_lightning.data.semeval) and the tag word that
# starts every question subject of a file, so that tests can tell which file a split's rows came from.
SEMEVAL_FILES = {"train2": "SemEval2016-Task3-CQA-QL-train-part2.xml", "dev": "SemEval2016-Task3-CQA-QL-dev.xml",
                 "test16": "SemEval2016-Task3-CQA-QL-test.xml", "test17a": "SemEval2017-task3-English-test-subtaskA.xml",
                 "rel17": "SemEval2017-Task3-CQA-QL-test.xml.subtaskB.relevancy",
                 "test17b": "derived/SemEval2017-test-subtaskB-pairs.derived.tsv",
                 "part1": "derived/SemEval2016-train-part1-subtaskB-pairs.derived.tsv"}
SEMEVAL_TAGS = {"train2": "Trainpart", "dev": "Devset", "test16": "Testsixteen", "test17a": "Testseventeen",
                "test17b": "Borgseventeen", "part1": "Partone"}
_XML_HEAD = ['<?xml version="1.0" encoding="utf-8"?>', "<!DOCTYPE xml [", "<!ELEMENT xml (OrgQuestion*)>",
             "<!ELEMENT RelCText (#PCDATA)>", "]>", '<xml version="1.0">', ""]
_RELC_A = ["Good", "PotentiallyUseful", "Bad"]


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _semeval_question(rng: random.Random, tag: str) -> tuple[str, str, list[str]]:
    """(subject, body, key words): 'Tag small dog' / 'Where can I find a small dog in the park ?'."""
    adj, noun = rng.choice(_ADJ), rng.choice(_NOUN)
    return f"{tag} {adj} {noun}", f"Where can I find a {adj} {noun} {rng.choice(_PLACE)} ?", [adj, noun]


def _semeval_thread(rng: random.Random, relq_id: str, subject: str, body: str, words: list[str],
                    labels: list[str], relq_attrs: str = "", skip: str = "", comments: int = 5) -> list[str]:
    """A <Thread>: the related question and ``comments`` comments; a Good one repeats the key words."""
    skip_attr = f' SubtaskA_Skip_Because_Same_As_RelQuestion_ID="{skip}"' if skip else ""
    out = [f'\t<Thread THREAD_SEQUENCE="{relq_id}"{skip_attr}>',
           f'\t\t<RelQuestion RELQ_ID="{relq_id}" RELQ_CATEGORY="Advice and Help"{relq_attrs}>',
           f"\t\t\t<RelQSubject>{_esc(subject)}</RelQSubject>", f"\t\t\t<RelQBody>{_esc(body)}</RelQBody>",
           "\t\t</RelQuestion>", ""]
    for c in range(comments):
        label = labels[c]
        if label == "Good":
            text = f"You find the {words[0]} {words[1]} {rng.choice(_PLACE)} & it is fine."
        elif label == "PotentiallyUseful":
            text = f"Maybe ask about a {words[1]} {rng.choice(_PLACE)}."
        else:
            text = f"Thanks {rng.choice(_NOUN)} <3 {rng.choice(_VERB)} lol"
        org_attr = ' RELC_RELEVANCE2ORGQ="Bad"' if "RELQ_RELEVANCE2ORGQ" in relq_attrs else ""
        out += [f'\t\t<RelComment RELC_ID="{relq_id}_C{c + 1}"{org_attr} RELC_RELEVANCE2RELQ="{label}">',
                f"\t\t\t<RelCText>{_esc(text)}</RelCText>", "\t\t</RelComment>", ""]
    return out + ["\t</Thread>", ""]


def _related(rng: random.Random, tag: str, words: list[str], relevance: str) -> tuple[str, str, list[str]]:
    """A related question: a relevant one shares the original's key words, an irrelevant one does not."""
    if relevance == "Irrelevant":
        return _semeval_question(rng, tag)
    subject = f"{tag} {words[0]} {words[1]} wanted"
    return subject, f"Anyone knows a {words[0]} {words[1]} {rng.choice(_PLACE)} ?", list(words)


def write_semeval(folder: str | Path, n_org: tuple[int, int, int] = (6, 4, 5), related: int = 4,
                  seed: int = 0) -> Path:
    """The semeval_cqa/ layout: 2016 train-part2 / dev / test XML (``OrgQuestion`` repeated once per related
    ``Thread``), the 2017 subtask A test XML (top-level ``Thread``), the 2017 subtask B relevancy file and
    the two CSV-quoted ``derived/`` tables (subject and body joined by ". ").

    Per 2016 file: ``n_org`` original questions × ``related`` threads × 5 comments. Every subject starts
    with the file's tag word (``SEMEVAL_TAGS``). In each original question, thread 2 is marked
    ``SubtaskA_Skip_Because_Same_As_RelQuestion_ID``; the last original question has no relevant related
    question, and thread 3 of every original question has no Good comment (for ``answered_only``); one
    related question has an empty body, as in the release."""
    folder = Path(folder)
    (folder / "derived").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    relevances = ["PerfectMatch", "Relevant", "Irrelevant", "Irrelevant"]
    comment_labels = [["Good", "Bad", "PotentiallyUseful", "Bad", "Good"], ["Bad", "Good", "Bad", "Bad", "Bad"],
                      ["Good", "PotentiallyUseful", "Bad", "Bad", "Bad"], ["Bad", "PotentiallyUseful", "Bad", "Bad", "Bad"]]
    first = 100
    for key, n in zip(("train2", "dev", "test16"), n_org):
        lines = list(_XML_HEAD)
        for o in range(n):
            org_id = f"Q{first + o}"
            subject, body, words = _semeval_question(rng, SEMEVAL_TAGS[key])
            for r in range(related):
                rel = relevances[r % 4] if o < n - 1 else "Irrelevant"
                rs, rb, rw = _related(rng, SEMEVAL_TAGS[key], words, rel)
                if key == "train2" and o == 0 and r == 1:
                    rb = ""  # an empty RelQBody occurs in the release
                lines += [f'<OrgQuestion ORGQ_ID="{org_id}">', f"\t<OrgQSubject>{_esc(subject)}</OrgQSubject>",
                          f"\t<OrgQBody>{_esc(body)}</OrgQBody>", ""]
                attrs = f' RELQ_RANKING_ORDER="{r + 1}" RELQ_RELEVANCE2ORGQ="{rel}"'
                lines += _semeval_thread(rng, f"{org_id}_R{r + 1}", rs, rb, rw, comment_labels[r % 4], attrs,
                                         skip=f"Q9{o}_R{r}" if r == 2 else "")
                lines += ["</OrgQuestion>", ""]
        first += 100
        _write(folder / SEMEVAL_FILES[key], lines + ["</xml>"], crlf=False)
    # 2017: subtask A threads (Good / Bad only) for original questions Q900.., and the derived B pairs
    lines = [line.replace("OrgQuestion*", "Thread*") for line in _XML_HEAD]
    rel_lines, b_rows = [], ["orgq_id\trelq_id\torgq_subject_dot_body\trelq_subject_dot_body\tgold_relevant"]

    def quoted(text: str) -> str:  # the derived tables are CSV-quoted where a field holds a quote
        return '"' + text.replace('"', '""') + '"' if '"' in text else text

    for o in range(4):
        org_id = f"Q{900 + o}"
        subject, body, words = _semeval_question(rng, SEMEVAL_TAGS["test17b"])
        if o == 1:
            body = body.replace("Where", 'Where, "really",')
        for r in range(related):
            rel = relevances[r % 4] if o < 3 else "Irrelevant"
            rs, rb, rw = _related(rng, SEMEVAL_TAGS["test17a"], words, rel)
            relq_id = f"{org_id}_R{r + 1}"
            labels = [lab if lab != "PotentiallyUseful" else "Bad" for lab in comment_labels[r % 4]]
            lines += _semeval_thread(rng, relq_id, rs, rb, rw, labels)
            gold = "true" if rel != "Irrelevant" else "false"
            rel_lines.append(f"{org_id}\t{relq_id}\t{r + 1}\t{1 / (r + 1):.4f}\t{gold}")
            b_rows.append("\t".join([org_id, relq_id, quoted(f"{subject}. {body}"), quoted(f"{rs}. {rb}"), gold]))
    _write(folder / SEMEVAL_FILES["test17a"], lines + ["</xml>"])
    _write(folder / SEMEVAL_FILES["rel17"], rel_lines)
    _write(folder / SEMEVAL_FILES["test17b"], b_rows)
    p1 = ["orgq_subject_dot_body\trelq_subject_dot_body\tRELQ_RELEVANCE2ORGQ"]
    for o in range(5):
        subject, body, words = _semeval_question(rng, SEMEVAL_TAGS["part1"])
        for r in range(related):
            rel = relevances[r % 4]
            rs, rb, _ = _related(rng, SEMEVAL_TAGS["part1"], words, rel)
            p1.append(f"{subject}. {body}\t{rs}. {rb}\t{rel}")
    _write(folder / SEMEVAL_FILES["part1"], p1)
    return folder
