#!/usr/bin/env bash
# docs/results.md, "WikiQA: batch construction": symmetric BSC on WikiQA with shuffle=none, random and
# example (embedded MiniLM, max length 64, CPU, one epoch on the positive pairs; labelled negatives dropped
# from training to keep the CPU budget short, as in BASELINES.md's WikiQA protocol).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=$(echo "${SEEDS:-0}" | tr ' ' ',')
out=${OUT:-multirun/wikiqa_shuffles}
python -m bsc_lightning.run -m task=wikiqa loss=symmetric shuffle=none,random,example seed="$seeds" \
  data.train_positives_only=true encoder.max_length=64 trainer=cpu logger=csv export=false \
  hydra.sweep.dir="$out" "$@"
python experiments/aggregate.py "$out" --metrics test/map test/mrr --markdown "$out/results.md"
