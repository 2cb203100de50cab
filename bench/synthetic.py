"""Synthetic texts and data fixtures: benchmark sentences and a learnable QQP-layout fixture for tests.

Nothing here is real data; it exists so that benchmarks and end-to-end tests run offline and fast. Not
part of the runtime package (``bsc_lightning``): tests import it as ``from bench.synthetic import ...``.
Imports only the standard library and numpy.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

# Word classes cycled in a fixed order so that sequences read like (odd) English sentences.
_WORDS = {
    "D": [
        "the", "a", "this", "that", "every", "some", "another", "each", "our", "their"
    ],
    "A": [
        "small", "large", "quiet", "bright", "early", "late", "simple", "common", "modern", "local",
        "public", "private", "strong", "useful", "careful", "recent", "old", "new", "red", "green", "cold",
        "warm", "short", "long"
    ],
    "N": [
        "city", "river", "teacher", "student", "market", "system", "garden", "report", "machine", "window",
        "question", "answer", "engine", "village", "doctor", "paper", "model", "dinner", "company",
        "country", "language", "network", "kitchen", "museum", "train", "road", "friend", "history",
        "method", "result", "plan", "music", "picture", "letter", "table", "computer", "weather"
    ],
    "V": [
        "builds", "finds", "reads", "explains", "carries", "follows", "opens", "changes", "describes",
        "shows", "improves", "watches", "moves", "writes", "needs", "keeps", "visits", "covers", "measures",
        "reaches"
    ],
    "P": [
        "in", "near", "with", "under", "after", "before", "across", "through", "behind", "without"
    ],
    "C": [
        "and", "while", "because", "but", "although"
    ],
}
_PATTERN = "DANVPDANCDNVDAN"


def synthetic_sentences(n: int, seed: int = 0, min_words: int = 8, max_words: int = 24) -> list[str]:
    """``n`` English-looking sentences of ``min_words``..``max_words`` words from a fixed vocabulary.

    Deterministic for a given ``seed``; vectorised (about 1 s per million sentences), for benchmarks
    where only the token statistics matter, not the meaning.
    """
    if n <= 0:
        return []
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    rng = np.random.default_rng(seed)
    cls = [_PATTERN[i % len(_PATTERN)] for i in range(max_words)]
    # One column per position: draw within the word class of that position.
    cols = [np.asarray(_WORDS[c], dtype=object)[rng.integers(0, len(_WORDS[c]), n)] for c in cls]
    words = np.stack(cols, axis=1)
    lengths = rng.integers(min_words, max_words + 1, n)
    # End every sentence on a noun, whatever class the cut position has.
    nouns = np.asarray(_WORDS["N"], dtype=object)
    words[np.arange(n), lengths - 1] = nouns[rng.integers(0, len(nouns), n)]
    out = [" ".join(row[:k]) for row, k in zip(words.tolist(), lengths.tolist())]
    return [s[0].upper() + s[1:] + "." for s in out]


# ------------------------------------------------------------------------------------------ QQP fixture
_TOPICS = [
    "machine learning", "Python", "photography", "chess", "the guitar", "investing", "cooking", "Spanish",
    "data science", "web design", "public speaking", "yoga", "astronomy", "economics", "painting",
    "marketing", "Java", "running", "meditation", "gardening", "history", "calculus", "French",
    "blockchain", "swimming", "poetry", "accounting", "psychology", "robotics", "baking", "Japanese",
    "linear algebra", "stock trading", "drawing", "philosophy", "biology", "chemistry", "nutrition",
    "cycling", "video editing"
]
# Intents, each a set of paraphrases of one question ({t} = topic).
_INTENTS = [
    ["How do I learn {t}?", "What is the best way to learn {t}?", "How can I learn {t} quickly?",
     "How should a beginner start learning {t}?"],
    ["Is {t} a good career choice?", "Should I build a career in {t}?", "Is a career in {t} worth it?",
     "Can {t} be a good career path?"],
    ["Why is {t} so hard?", "What makes {t} so difficult?", "Why do people find {t} hard?",
     "Is {t} really that difficult?"],
    ["What are the best books on {t}?", "Which books should I read about {t}?",
     "What is a good book for learning {t}?", "Can you recommend books about {t}?"],
    ["How can I make money with {t}?", "What are ways to earn money from {t}?",
     "Is it possible to earn a living from {t}?", "How do people make money doing {t}?"],
    ["What is the future of {t}?", "How will {t} change in the next ten years?",
     "Does {t} have a future?", "Where is {t} heading in the coming years?"],
    ["How long does it take to get good at {t}?", "How many months does it take to master {t}?",
     "How much time do I need to become good at {t}?"],
    ["What are the benefits of {t}?", "Why should I try {t}?", "What are the advantages of {t}?"],
    ["What are common mistakes beginners make in {t}?", "Which mistakes should beginners avoid in {t}?",
     "What do most beginners get wrong about {t}?"],
    ["Can I learn {t} on my own?", "Is it possible to teach myself {t}?", "Can {t} be self-taught?"],
]
_EDITS = [("What is", "What's"), ("How do I", "How can I"), ("best", "top"), ("quickly", "fast"),
          ("good", "great"), ("should I", "do I"), ("really", "actually")]


def _edit(q: str, rng: random.Random) -> str:
    """A small surface edit, as seen between real QQP duplicates (contraction, synonym, case, '?')."""
    r = rng.random()
    if r < 0.35:
        a, b = rng.choice(_EDITS)
        q = q.replace(a, b, 1) if a in q else q.replace(b, a, 1)
    elif r < 0.5:
        q = q.lower()
    elif r < 0.6:
        q = q.rstrip("?")
    return q


def _qqp_rows(n: int, rng: random.Random, pos_rate: float) -> list[tuple[str, str, int]]:
    hot = [(rng.randrange(len(_INTENTS)), rng.choice(_TOPICS)) for _ in range(max(5, n // 20))]
    rows = []
    for _ in range(n):
        # About a quarter of the rows reuse a "popular" question, so texts repeat across rows as in QQP.
        i, t = rng.choice(hot) if rng.random() < 0.25 else (rng.randrange(len(_INTENTS)), rng.choice(_TOPICS))
        v = rng.randrange(len(_INTENTS[i]))
        q1 = _INTENTS[i][v].format(t=t)
        if rng.random() < pos_rate:  # duplicate: another wording of the same intent and topic, edited
            w = rng.choice([k for k in range(len(_INTENTS[i])) if k != v])
            q2, label = _edit(_INTENTS[i][w].format(t=t), rng), 1
        else:  # different question; mostly a hard negative sharing the topic or the intent
            r = rng.random()
            j = rng.choice([k for k in range(len(_INTENTS)) if k != i]) if r < 0.8 else i
            u = rng.choice([x for x in _TOPICS if x != t]) if r >= 0.4 else t
            q2, label = _edit(rng.choice(_INTENTS[j]).format(t=u), rng), 0
        q1 = q1[0].upper() + q1[1:]
        rows.append((q1, q2[0].upper() + q2[1:], label) if rng.random() < 0.5 else (q2, q1, label))
    return rows


def write_qqp_fixture(directory: str | Path, n_train: int = 400, n_dev: int = 200, seed: int = 0) -> Path:
    """Write ``train.tsv`` and ``dev.tsv`` in the GLUE QQP layout into ``directory``; returns the folder.

    Header ``id qid1 qid2 question1 question2 is_duplicate``; about 37% duplicates. Duplicates are two
    wordings of the same question (intent + topic) with small edits; non-duplicates are different
    questions, most sharing the topic or the intent (hard negatives); popular questions recur across rows,
    and ``qid1``/``qid2`` identify a text consistently across both files. A bi-encoder can learn the task.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    qids: dict[str, int] = {}
    row_id = 0
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        lines = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"]
        for q1, q2, y in _qqp_rows(n, rng, 0.37):
            i1 = qids.setdefault(q1, len(qids) + 1)
            i2 = qids.setdefault(q2, len(qids) + 1)
            lines.append(f"{row_id}\t{i1}\t{i2}\t{q1}\t{q2}\t{y}")
            row_id += 1
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
