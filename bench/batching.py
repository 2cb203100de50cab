"""Benchmark: cost of one epoch's batch construction, relative to one epoch of training; and group fill.

    python -m bench.batching [--n 364000] [--dim 384] [--batch-size 256] [--device cpu|cuda]
                             [--step-time SECONDS] [--threads N] [--json out.json]
    python -m bench.batching --wikiqa ../shared/data/wikiqa [--embeddings minilm|random] [--batch-size 32]

(from the repository root).

Builds a synthetic PairTable of n pairs (8-24-word first sides from ``bench.synthetic``, ``--pairs-per-query`` pairs sharing each
first side), random L2-normalised first-side embeddings (copies of a text share one), times one
``order`` call per strategy and divides by the time of a training epoch, (n / batch_size) × step_time.
The step time is given, or measured here: a few steps of a randomly initialised MiniLM-sized encoder
(6 layers, hidden 384, mean pooling, symmetric in-batch softmax loss, AdamW) on random token ids.
The paper reports about 8% extra training time for example-based shuffling.

``--wikiqa DIR`` instead measures how well the grouping strategies fill their groups on real ranking
data, where one question comes with ~10 candidate answers: WikiQA train, all pairs (unanswered
questions included). First-side embeddings come from the embedded MiniLM (each distinct question
encoded once, copies share it) or, with ``--embeddings random``, from random unit vectors per text.
It prints one markdown row per strategy: mean group size, share of full groups, mean cosine between the
distinct first sides of a group and of a batch, duplicate pairs per batch. ``example (rows)`` is
Algorithm 1 as it was before the neighbour search moved to distinct texts, kept here as the baseline.

A script, not a test. Imports only torch, numpy, transformers (optional), bsc_lightning.data and bench
(plus bsc_lightning.encoder and pandas with ``--wikiqa``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.common import add_common_args, device_name, heavy_modules, setup, stamp, write_json
from bench.synthetic import synthetic_sentences
from bsc_lightning.data.batching import ExampleShuffle, Strategy, batch_stats, build_strategy, global_batches
from bsc_lightning.data.batching.base import _rng
from bsc_lightning.data.batching.example import _next_anchors
from bsc_lightning.data.neighbours import topk_cosine
from bsc_lightning.data.table import PairTable

DEFAULT_STRATEGIES = "random,words,clusters,no_duplicates,example"


def synthetic_table(n: int, pairs_per_query: int, seed: int) -> PairTable:
    n_first = max(1, n // pairs_per_query)
    firsts = [f"{s} q{i}" for i, s in enumerate(synthetic_sentences(n_first, seed))]  # unique first sides
    seconds = [f"{s} a{i}" for i, s in enumerate(synthetic_sentences(n, seed + 1))]   # unique second sides
    texts = firsts + seconds
    a = np.random.default_rng(seed).integers(0, n_first, n)
    a[:n_first] = np.arange(n_first)                      # every first side is used at least once
    return PairTable(texts, a, np.arange(n_first, n_first + n), np.ones(n, dtype=np.float32), a, "synthetic")


def measure_step_time(batch_size: int, device: torch.device, seq_len: int = 32, steps: int = 3) -> float | None:
    """Mean seconds of a MiniLM-sized training step (both sides encoded), or None without transformers."""
    try:
        from transformers import BertConfig, BertModel
    except ImportError:
        return None
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512)
    model = BertModel(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)

    def encode(ids: torch.Tensor) -> torch.Tensor:
        mask = torch.ones_like(ids)
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state                 # (B, L, 384)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)             # (B, 384)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def step() -> None:
        q_ids = torch.randint(1000, 30000, (batch_size, seq_len), device=device)
        a_ids = torch.randint(1000, 30000, (batch_size, seq_len), device=device)
        q, a = encode(q_ids), encode(a_ids)
        logits = q @ a.T / 0.05                                                        # (B, B)
        target = torch.arange(batch_size, device=device)
        loss = torch.nn.functional.cross_entropy(logits, target) + \
            torch.nn.functional.cross_entropy(logits.T, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()                                    # warm-up: allocator, kernels
    start = stamp(device)
    for _ in range(steps):
        step()
    return (stamp(device) - start) / steps


# ---------------------------------------------------------------------------------------------------
# --wikiqa: group fill on real ranking data
# ---------------------------------------------------------------------------------------------------

def example_over_rows(table: PairTable, emb: torch.Tensor, seed: int, epoch: int, s: int = 8,
                      n_candidates: int = 64, chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1 before the fix: top-(n+1) neighbours over ROWS, identical first sides kept apart,
    reversed. Copies of a text tie at cosine 1 and fill the candidate list, so groups stay small on
    repeated first sides. Same seeded shuffle and anchor chunks as the old code, so same groups."""
    n = len(table)
    perm = _rng(seed, epoch).permutation(n)
    used_b = bytearray(n)
    used = np.frombuffer(used_b, dtype=np.uint8)
    text = table.a.tolist()
    out: list[int] = []
    sizes: list[int] = []
    ptr = 0
    while True:
        anchors, ptr = _next_anchors(perm, ptr, used, min(chunk_size, max(256, (n - len(out)) // (4 * s))))
        if len(anchors) == 0:
            break
        cand = topk_cosine(emb[torch.from_numpy(anchors).to(emb.device)], emb, n_candidates + 1)  # (m, n+1)
        for e, row in zip(anchors.tolist(), cand.cpu().tolist()):
            if used_b[e]:
                continue
            used_b[e] = 1
            group, seen = [e], {text[e]}
            for j in row:
                if len(group) == s:
                    break
                if used_b[j] or text[j] in seen:
                    continue
                seen.add(text[j])
                used_b[j] = 1
                group.append(j)
            out.extend(group)
            sizes.append(len(group))
    return np.asarray(out[::-1], dtype=np.int64), np.asarray(sizes[::-1], dtype=np.int64)


def wikiqa_embeddings(table: PairTable, kind: str, device: torch.device, seed: int) -> torch.Tensor:
    """(N, d) L2-normalised first-side embeddings; each distinct text embedded once, copies share it."""
    uniq, inv = np.unique(table.a, return_inverse=True)
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        per_text = torch.randn(len(uniq), 384, generator=g)                              # (T, 384)
    else:
        from bsc_lightning.encoder import EMBEDDED_MINILM, Encoder, load_tokenizer
        tok = load_tokenizer(EMBEDDED_MINILM)
        seqs = tok([table.texts[i] for i in uniq], truncation=True, max_length=90)["input_ids"]
        per_text = Encoder(EMBEDDED_MINILM).to(device).encode_ids(seqs, tok.pad_token_id, device=device)
    per_text = torch.nn.functional.normalize(per_text.float(), dim=1).to(device)         # (T, d)
    return per_text[torch.from_numpy(inv.reshape(-1)).to(device)]                        # (N, d)


def group_fill(args: argparse.Namespace, device: torch.device) -> None:
    from bsc_lightning.data.tasks import load_task

    table = load_task("wikiqa", data_dir=args.wikiqa, answered_only=False).splits["train"]
    t0 = stamp(device)
    emb = wikiqa_embeddings(table, args.embeddings, device, args.seed)
    print(f"WikiQA train: {len(table)} pairs, {len(np.unique(table.a))} distinct questions; "
          f"{args.embeddings} embeddings in {stamp(device) - t0:.1f}s on {device}; "
          f"batch {args.batch_size}, seed {args.seed}, epoch 0, shuffle defaults")
    runs: dict[str, Strategy | None] = {"random": build_strategy("random"), "example (rows)": None,
                                        "example": build_strategy("example"), "words": build_strategy("words"),
                                        "clusters": build_strategy("clusters")}
    print("| strategy | mean group size | full groups | group cosine | batch cosine | duplicates/batch | seconds |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    for name, strat in runs.items():
        start = stamp(device)
        if strat is None:
            order, sizes = example_over_rows(table, emb, args.seed, 0)
        elif hasattr(strat, "grouped_order"):
            order, sizes = strat.grouped_order(table, epoch=0, seed=args.seed, embeddings=emb)
        else:
            order = strat.order(table, epoch=0, seed=args.seed, batch_size=args.batch_size)
            sizes = np.ones(len(order), dtype=np.int64)                  # no groups: singletons
        seconds = stamp(device) - start
        s = getattr(strat, "group_size", ExampleShuffle.group_size)
        groups = np.split(order, np.cumsum(sizes)[:-1])
        # batch_stats' intra_batch_cosine on the groups themselves: distinct first sides of a group
        group_cos = batch_stats(table, groups, emb, max_cos_batches=len(groups))["intra_batch_cosine"]
        stats = batch_stats(table, global_batches(order, args.batch_size), emb)
        row = {"mean_group_size": float(sizes.mean()), "full_groups": float((sizes == s).mean()),
               "group_cosine": group_cos, "batch_cosine": stats["intra_batch_cosine"],
               "duplicates_per_batch": stats["duplicates_per_batch"], "seconds": seconds}
        results[name] = row
        print(f"| {name} | {row['mean_group_size']:.2f} | {100 * row['full_groups']:.1f}% | "
              f"{group_cos:.3f} | {row['batch_cosine']:.3f} | {row['duplicates_per_batch']:.2f} | "
              f"{seconds:.2f} |")
    write_json(args.json, {"mode": "wikiqa", "embeddings": args.embeddings, "batch_size": args.batch_size,
                           "results": results})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)  # --device, --threads, --json
    p.add_argument("--n", type=int, default=364_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=256, help="global batch size")
    p.add_argument("--step-time", type=float, default=None, help="seconds per training step (else measured)")
    p.add_argument("--steps", type=int, default=3, help="timed steps when measuring the step time")
    p.add_argument("--measure-batch", type=int, default=None,
                   help="batch for the measured step (default: --batch-size on cuda, at most 32 on cpu)")
    p.add_argument("--pairs-per-query", type=int, default=2, help="mean pairs sharing one first side")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wikiqa", default=None, metavar="DIR",
                   help="group-fill mode on WikiQA train (all pairs) read from DIR, instead of timings")
    p.add_argument("--embeddings", choices=("minilm", "random"), default="minilm",
                   help="--wikiqa: first-side embeddings from the embedded MiniLM or random unit vectors")
    args = p.parse_args(argv)
    device = setup(args)
    if args.wikiqa:
        group_fill(args, device)
        return

    t0 = time.perf_counter()
    table = synthetic_table(args.n, args.pairs_per_query, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    per_text = torch.nn.functional.normalize(torch.randn(len(table.texts), args.dim, generator=g), dim=1)
    emb = per_text[torch.from_numpy(table.a)].to(device)                                 # (N, dim)
    print(f"table: {len(table)} pairs, {len(np.unique(table.a))} distinct first sides, dim {args.dim}, "
          f"device {device_name(device)}, {torch.get_num_threads()} threads; built in {time.perf_counter() - t0:.1f}s")

    step_time, source = args.step_time, "given"
    if step_time is None:
        # a CPU step at batch 256 takes most of a minute: measure a smaller batch and scale linearly
        mb = args.measure_batch or (args.batch_size if device.type == "cuda" else min(args.batch_size, 32))
        step_time = measure_step_time(mb, device, steps=args.steps)
        source = "measured" if mb == args.batch_size else f"measured at batch {mb}, scaled linearly"
        step_time = None if step_time is None else step_time * args.batch_size / mb
    epoch_time = None if step_time is None else args.n / args.batch_size * step_time
    if epoch_time is None:
        print("step time: unknown (no transformers, no --step-time): ratios are not reported")
    else:
        print(f"step time ({source}; batch {args.batch_size}, MiniLM-sized, {device.type}): {step_time:.3f}s"
              f" -> one training epoch = {epoch_time:.1f}s")

    results: dict[str, dict] = {}
    runs = [(name, 0) for name in args.strategies.split(",")]
    runs += [("words", 1)] if "words" in args.strategies.split(",") else []   # tokenisation cached now
    strategies = {}
    for name, epoch in runs:
        s = strategies.setdefault(name, build_strategy(name))
        start = stamp(device)
        order = s.order(table, epoch=epoch, seed=args.seed, batch_size=args.batch_size,
                        embeddings=emb if s.needs_embeddings else None)
        seconds = stamp(device) - start
        stats = batch_stats(table, global_batches(order, args.batch_size), emb)
        key = name if epoch == 0 else f"{name}@epoch{epoch}"
        ratio = None if epoch_time is None else seconds / epoch_time
        results[key] = {"seconds": seconds, "ratio_to_epoch": ratio, "info": s.info, "stats": stats}
        print(f"{key:>16}: {seconds:8.2f}s" + ("" if ratio is None else f"  = {100 * ratio:6.2f}% of an epoch")
              + f"  | dup/batch {stats['duplicates_per_batch']:.2f}  intra-cos {stats['intra_batch_cosine']:.4f}"
              + "".join(f"  {k} {v:.3g}" for k, v in s.info.items()))

    heavy = heavy_modules()
    if heavy:
        print(f"warning: heavy modules were imported: {heavy}")
    write_json(args.json, {"n": args.n, "dim": args.dim, "batch_size": args.batch_size, "device": str(device),
                           "step_time": step_time, "step_time_source": source, "epoch_time": epoch_time,
                           "strategies": results})


if __name__ == "__main__":
    main()
