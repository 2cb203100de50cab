"""The peer baseline: the same encoder trained with sentence-transformers, the tool users would pick instead,
on one of our tasks under the CPU protocol of BASELINES.md (../shared). Our readers load the data and our metrics
score it, so only the training differs from our runs.

    python experiments/peer.py --task stsb --loss mse --data-dir ../shared/data --seed 0 --epochs 1 \
        --batch-size 32 --lr 2e-5 --max-length 128 --warmup-ratio 0.1 --out runs/peer/stsb_mse_0
    python experiments/peer.py --task mrpc --zero-shot --data-dir ../shared/data --out runs/peer/mrpc_zero

Data: ``load_task`` with the options of ``conf/task/<task>.yaml`` (plus ``--option key=value``), so the splits
are those of our runs. ``--positives-only`` and ``--limit-train/--limit-eval`` cut them the way
``data.train_positives_only`` and ``data.limit_*`` do; ``--negatives-per-query K`` keeps the positives
and the same K labelled negatives per answered query as ``data.train_negatives_per_query=K``. Ranking
tasks with a candidate pool (pfcc_s) are refused with a one-line error.
Losses: ``mse`` = CosineSimilarityLoss (labels are already in [0, 1]); ``cosent`` = CoSENTLoss (scale 20);
``symmetric`` = in-batch softmax in both directions (scale 20), trained on the positive pairs
(label > the task's positive_threshold); with ``--negatives-per-query K`` each positive row also gets K
hard-negative columns (``negative_1..K``: its query's kept negatives, cycled when it has fewer than K, a
seeded draw of another query's negative when it has none), the sentence-transformers way to train with
labelled negatives. In 6.x MultipleNegativesSymmetricRankingLoss is a deprecated alias of
MultipleNegativesRankingLoss with these arguments, so the script builds the latter directly.
Training: SentenceTransformerTrainer, using its defaults wherever they match the protocol: AdamW (torch),
weight decay 0.01 except biases and LayerNorm, linear warm-up then linear decay, gradient clipping 1.0,
fp32, RandomSampler seeded with --seed, last partial batch kept. It writes no checkpoint and uses no
logger. The trainer itself turns the warm-up ratio into ceil(ratio x steps).
Scores: cosines of ``model.encode`` embeddings, scored by ``bsc_lightning.metrics.task_metrics``. For
classification, the threshold chosen on dev is applied to test, as BSCModule does. ``--zero-shot``
skips training.
Output in --out: metrics.json (dev/<m>, test/<m>), peer.json (arguments, versions, training facts),
scores/dev.tsv and scores/test.tsv (the pair scores, as our runs write them), and config.yaml plus
.hydra/overrides.yaml. The last two are what experiments/aggregate.py reads; peer jobs form their own setting
there (framework=sentence-transformers).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python experiments/peer.py` without an install
from bsc_lightning import CONF_DIR
from bsc_lightning.data.tasks import DataError, Task, cut_splits, load_task, require_positives
from bsc_lightning.encoder import EMBEDDED_MINILM, resolve_model_path
from bsc_lightning.evaluation import pair_scores
from bsc_lightning.metrics import task_metrics
from bsc_lightning.significance import write_scores

LOSSES = {"mse": "CosineSimilarityLoss", "cosent": "CoSENTLoss", "symmetric": "MultipleNegativesRankingLoss"}
EVAL_BATCH = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--loss", choices=sorted(LOSSES), default="mse")
    p.add_argument("--data-dir", default=None, help="the task's folder or its parent (../shared/data)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="extra reader option")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--model", default=EMBEDDED_MINILM, help="name or path (default: the embedded MiniLM)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-eval", type=int, default=None)
    p.add_argument("--positives-only", action="store_true")
    p.add_argument("--negatives-per-query", type=int, default=None, metavar="K",
                   help="symmetric: K labelled negatives per answered query as hard-negative columns")
    p.add_argument("--zero-shot", action="store_true", help="evaluate the model as it is, no training")
    a = p.parse_args(argv)
    if not 0 <= a.warmup_ratio < 1:  # the trainer reads warmup_steps >= 1 as a step count
        p.error("--warmup-ratio must be in [0, 1)")
    return a


def load_data(args: argparse.Namespace) -> Task:
    """The task's splits as our runs see them: positives-only first, then the limits (as PairDataModule)."""
    spec_file = Path(CONF_DIR) / "task" / f"{args.task}.yaml"
    spec = yaml.safe_load(spec_file.read_text()) if spec_file.is_file() else {}
    options = dict(spec.get("options") or {})
    options.update({k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.option)})
    task = load_task(spec.get("name", args.task), args.data_dir, options=options)
    if task.pool is not None:
        raise SystemExit(f"peer.py: task {task.name!r} ranks against a candidate pool of {len(task.pool)} "
                         "texts (corpus-level retrieval), which this baseline does not evaluate; pick a task without one")
    try:  # the data module's own cut: the same pairs as our runs with data.train_positives_only / limit_*
        return cut_splits(task, train_positives_only=args.positives_only,
                          train_negatives_per_query=args.negatives_per_query, limit_train=args.limit_train,
                          limit_eval=args.limit_eval)
    except DataError as e:
        raise SystemExit(f"peer.py: {e}") from None


def train(model: Any, task: Task, args: argparse.Namespace) -> dict[str, Any]:
    """One SentenceTransformerTrainer run on the train split; returns its facts (examples, steps, seconds)."""
    if importlib.util.find_spec("accelerate") is None:  # the trainer's own error comes late, as a long traceback
        raise SystemExit("peer.py: SentenceTransformerTrainer needs accelerate: pip install "
                         "'sentence-transformers[train]' (--zero-shot runs without it)")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer import losses

    table = task.splits["train"]
    if args.loss == "symmetric":
        # Our symmetric run sees the same (limited) pairs; its rows are the positives, and the labelled
        # negatives it keeps (--negatives-per-query) become each row's extra columns.
        require_positives(table, task.positive_threshold, "symmetric")
        negatives = {} if args.negatives_per_query is None else \
            hard_negative_columns(table, task.positive_threshold, args.negatives_per_query, args.seed)
        table = table.subset(np.flatnonzero(table.positives(task.positive_threshold)))
        # column order is the loss's input order: anchor, positive, then the hard negatives
        data = Dataset.from_dict({"anchor": table.text_a, "positive": table.text_b, **negatives})
        loss = losses.MultipleNegativesRankingLoss(model, scale=20.0, directions=("query_to_doc", "doc_to_query"),
                                                   partition_mode="per_direction")
    else:
        data = Dataset.from_dict({"sentence1": table.text_a, "sentence2": table.text_b,
                                  "label": table.label.astype(float).tolist()})
        loss = getattr(losses, LOSSES[args.loss])(model)
    with tempfile.TemporaryDirectory() as tmp:  # the trainer wants an output_dir; nothing is kept there
        targs = SentenceTransformerTrainingArguments(
            output_dir=tmp, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr, weight_decay=0.01, warmup_steps=args.warmup_ratio, lr_scheduler_type="linear",
            max_grad_norm=1.0, optim="adamw_torch", fp16=False, bf16=False, seed=args.seed, data_seed=args.seed,
            dataloader_drop_last=False, save_strategy="no", eval_strategy="no", report_to="none",
            disable_tqdm=bool(os.environ.get("BSC_NO_PROGRESS")))
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=data, loss=loss)
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
    return {"train_examples": len(data), "steps": int(result.global_step),
            "train_loss": float(result.training_loss), "train_seconds": round(seconds, 2)}


def hard_negative_columns(table: Any, threshold: float, k: int, seed: int) -> dict[str, list[str]]:
    """``negative_1..k`` for the positive rows of ``table`` (in order): the labelled negatives of each row's
    query (first side), cycled to k; a query without one gets seeded draws from all the table's negatives."""
    pos = table.positives(threshold)
    rng = np.random.default_rng(seed)
    negatives = np.flatnonzero(~pos)
    if k < 1 or len(negatives) == 0:
        raise SystemExit(f"peer.py: --negatives-per-query {k} needs k >= 1 and labelled negatives in train")
    by_query: dict[int, list[int]] = {}
    for i in negatives:
        by_query.setdefault(int(table.a[i]), []).append(int(table.b[i]))
    rows = [np.resize(by_query.get(int(table.a[i])) or table.b[rng.choice(negatives, k)], k)
            for i in np.flatnonzero(pos)]
    return {f"negative_{j + 1}": [table.texts[r[j]] for r in rows] for j in range(k)}


def evaluate(model: Any, task: Task) -> tuple[dict[str, float], dict[str, tuple[torch.Tensor, ...]]]:
    """dev/ and test/ metrics plus ``(scores, labels, qids)`` per split. Dev comes first: its classification
    threshold is applied to test."""
    metrics: dict[str, float] = {}
    scores: dict[str, tuple[torch.Tensor, ...]] = {}
    threshold = None
    for split in ("dev", "test"):
        t = task.splits[split]
        used = np.unique(np.concatenate([t.a, t.b]))  # readers may share one text list across splits
        emb = model.encode([t.texts[i] for i in used], batch_size=EVAL_BATCH, convert_to_tensor=True,
                           normalize_embeddings=True, show_progress_bar=False)
        s = pair_scores(emb, np.searchsorted(used, t.a), np.searchsorted(used, t.b)).cpu()
        m = task_metrics(task.type, s, torch.from_numpy(t.label), torch.from_numpy(t.qid),
                         positive_threshold=task.positive_threshold, threshold=threshold)
        threshold = m.get("threshold") if threshold is None else threshold
        metrics.update({f"{split}/{k}": float(v) for k, v in m.items()})
        scores[split] = (s, torch.from_numpy(t.label), torch.from_numpy(t.qid))
    return metrics, scores


def job_files(args: argparse.Namespace, task: Task) -> tuple[dict[str, Any], list[str]]:
    """config.yaml and .hydra/overrides.yaml as aggregate.py reads them (our key names where they exist)."""
    config = {"framework": "sentence-transformers", "seed": args.seed, "train": not args.zero_shot,
              "task": {"name": task.name, "type": task.type, "main_metric": task.main_metric,
                       "positive_threshold": task.positive_threshold},
              "loss": {"_target_": f"sentence_transformers.sentence_transformer.losses.{LOSSES[args.loss]}",
                       "name": args.loss},
              "encoder": {"name_or_path": args.model, "max_length": args.max_length},
              "data": {"batch_size": args.batch_size, "limit_train": args.limit_train,
                       "limit_eval": args.limit_eval, "train_positives_only": args.positives_only,
                       "train_negatives_per_query": args.negatives_per_query},
              "model": {"optimizer": {"lr": args.lr, "weight_decay": 0.01}, "warmup_ratio": args.warmup_ratio,
                        "grad_clip": 1.0},
              "trainer": {"max_epochs": args.epochs}}
    overrides = ["framework=sentence-transformers", f"task={args.task}", f"loss={args.loss}", f"seed={args.seed}"]
    overrides += ["train=False"] * args.zero_shot + ["data.train_positives_only=true"] * args.positives_only
    overrides += [f"data.{k}={v}" for k, v in (("limit_train", args.limit_train), ("limit_eval", args.limit_eval),
                                               ("train_negatives_per_query", args.negatives_per_query))
                  if v is not None]
    return config, overrides


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the peer baseline with command-line ``argv``; writes the output folder and returns the metrics."""
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    args = parse_args(argv)
    if (args.out / "metrics.json").exists():  # as our runs: never overwrite a finished job
        raise SystemExit(f"peer.py: {args.out}/metrics.json exists; choose another --out")
    task = load_data(args)
    model = SentenceTransformer(resolve_model_path(args.model))
    model.max_seq_length = args.max_length
    facts = {} if args.zero_shot else train(model, task, args)
    metrics, scores = evaluate(model, task)
    args.out.mkdir(parents=True, exist_ok=True)
    config, overrides = job_files(args, task)
    (args.out / ".hydra").mkdir(exist_ok=True)
    (args.out / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (args.out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for split, scored in scores.items():  # our runs' format: bsc_lightning.significance compares both
        write_scores(args.out / "scores", split, *scored)
    peer = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__,
            "model_path": resolve_model_path(args.model), "dev_threshold": metrics.get("dev/threshold"),
            "split_sizes": {k: len(v) for k, v in task.splits.items()}, **facts}
    (args.out / "peer.json").write_text(json.dumps(peer, indent=2))
    (args.out / "metrics.json").write_text(json.dumps(dict(sorted(metrics.items())), indent=2))  # last: marks a finished job
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
