"""Benchmark: cost of one epoch's batch construction, relative to one epoch of training.

    python bench/batching.py [--n 364000] [--dim 384] [--batch-size 256] [--device cpu|cuda]
                             [--step-time SECONDS] [--json out.json]

Builds a synthetic PairTable of n pairs (8-24-word first sides, ``--pairs-per-query`` pairs sharing each
first side), random L2-normalised first-side embeddings (copies of a text share one), times one
``order`` call per strategy and divides by the time of a training epoch, (n / batch_size) × step_time.
The step time is given, or measured here: a few steps of a randomly initialised MiniLM-sized encoder
(6 layers, hidden 384, mean pooling, symmetric in-batch softmax loss, AdamW) on random token ids.
The paper reports about 8% extra training time for example-based shuffling.

A script, not a test. Imports only torch, numpy, transformers (optional) and bsc_lightning.data.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # run from a checkout without install

from bsc_lightning.data.batching import batch_stats, build_strategy, global_batches
from bsc_lightning.data.table import PairTable

DEFAULT_STRATEGIES = "random,words,clusters,no_duplicates,example"


def sentences(n: int, seed: int) -> list[str]:
    """Synthetic 8-24-word sentences: the project's generator if present, else a Zipf word sampler."""
    try:
        from bsc_lightning.data.synthetic import synthetic_sentences
        return synthetic_sentences(n, seed=seed)
    except ImportError:
        rng = np.random.default_rng(seed)
        vocab = np.array([f"w{i}" for i in range(20000)], dtype=object)
        p = 1.0 / np.arange(1, len(vocab) + 1)
        lengths = rng.integers(8, 25, n)
        words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p / p.sum())]
        cuts = np.cumsum(lengths)[:-1]
        return [" ".join(w) + f" {i}" for i, w in enumerate(np.split(words, cuts))]


def synthetic_table(n: int, pairs_per_query: int, seed: int) -> PairTable:
    n_first = max(1, n // pairs_per_query)
    firsts = [f"{s} q{i}" for i, s in enumerate(sentences(n_first, seed))]      # unique first sides
    seconds = [f"{s} a{i}" for i, s in enumerate(sentences(n, seed + 1))]       # unique second sides
    texts = firsts + seconds
    a = np.random.default_rng(seed).integers(0, n_first, n)
    a[:n_first] = np.arange(n_first)                      # every first side is used at least once
    return PairTable(texts, a, np.arange(n_first, n_first + n), np.ones(n, dtype=np.float32), a, "synthetic")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=364_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=256, help="global batch size")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--step-time", type=float, default=None, help="seconds per training step (else measured)")
    p.add_argument("--steps", type=int, default=3, help="timed steps when measuring the step time")
    p.add_argument("--measure-batch", type=int, default=None,
                   help="batch for the measured step (default: --batch-size on cuda, at most 32 on cpu)")
    p.add_argument("--pairs-per-query", type=int, default=2, help="mean pairs sharing one first side")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device = torch.device(args.device)

    t0 = time.perf_counter()
    table = synthetic_table(args.n, args.pairs_per_query, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    per_text = torch.nn.functional.normalize(torch.randn(len(table.texts), args.dim, generator=g), dim=1)
    emb = per_text[torch.from_numpy(table.a)].to(device)                                 # (N, dim)
    print(f"table: {len(table)} pairs, {len(np.unique(table.a))} distinct first sides, dim {args.dim}, "
          f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"{torch.get_num_threads()} threads); built in {time.perf_counter() - t0:.1f}s")

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
        sync(device)
        start = time.perf_counter()
        order = s.order(table, epoch=epoch, seed=args.seed, batch_size=args.batch_size,
                        embeddings=emb if s.needs_embeddings else None)
        sync(device)
        seconds = time.perf_counter() - start
        stats = batch_stats(table, global_batches(order, args.batch_size), emb)
        key = name if epoch == 0 else f"{name}@epoch{epoch}"
        ratio = None if epoch_time is None else seconds / epoch_time
        results[key] = {"seconds": seconds, "ratio_to_epoch": ratio, "info": s.info, "stats": stats}
        print(f"{key:>16}: {seconds:8.2f}s" + ("" if ratio is None else f"  = {100 * ratio:6.2f}% of an epoch")
              + f"  | dup/batch {stats['duplicates_per_batch']:.2f}  intra-cos {stats['intra_batch_cosine']:.4f}"
              + "".join(f"  {k} {v:.3g}" for k, v in s.info.items()))

    heavy = sorted(m for m in ("hydra", "omegaconf", "datasets", "lightning") if m in sys.modules)
    if heavy:
        print(f"warning: heavy modules were imported: {heavy}")
    if args.json:
        out = {"n": args.n, "dim": args.dim, "batch_size": args.batch_size, "device": str(device),
               "step_time": step_time, "step_time_source": source, "epoch_time": epoch_time,
               "strategies": results}
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
