#!/usr/bin/env bash
# docs/results.md, "STS-B: losses": the embedded MiniLM fine-tuned on STS-B for one epoch on CPU with
# loss=mse, symmetric and combo (BASELINES.md protocol: batch 32, lr 2e-5, warm-up 10%, clip 1.0, fp32).
# SEEDS="0 1 2" bash experiments/stsb_losses.sh  (default: seed 0 only, about 12 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=$(echo "${SEEDS:-0}" | tr ' ' ',')
out=${OUT:-multirun/stsb_losses}
python -m bsc_lightning.run -m task=stsb loss=mse,symmetric,combo seed="$seeds" trainer=cpu logger=csv \
  export=false hydra.sweep.dir="$out" "$@"
python experiments/aggregate.py "$out" --metrics test/spearman dev/spearman --markdown "$out/results.md"
