#!/usr/bin/env bash
# docs/results.md, "CQA-A, CQA-B, PFCC-S at CPU size": the paper's tables (losses; batch construction on
# CQA; normalisation on PFCC-S) with their zero-shot rows, 3 seeds, on the project's 2-core CPU box.
#   BSC_DATA_DIR=../shared/data bash experiments/paper_cpu.sh [part ...]    (parts: zero_shot losses_cqa
#   losses_pfcc normalization shuffles shuffles_more aggregate; default: all, in that order)
# Scale: size=cpu (embedded MiniLM, max length 64, batch 32, one epoch) cut further so that the tables fit
# in about two and a half hours of 2 CPU cores (two parts at a time): a MiniLM step on 32 CQA pairs (64 texts
# × 64 tokens) costs ~5 s here, so CQA trains on its first 480 pairs (15 steps) and evaluates on the first
# 500 dev / test pairs. PFCC-S trains on all its training pairs (the paper's first 800 minus the dev
# hold-out) and ranks every tweet against the whole claim pool (10,381 rows, 10,369 distinct claims). The
# paper's per-task lr, τ, μ and group size (conf/experiment/paper/parts/base.yaml) are kept.
# Each part writes multirun/paper_cpu/<part>;
# experiments/aggregate.py turns each into results.md / results.csv / PNGs.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
out=${OUT:-multirun/paper_cpu}
cqa="data.limit_train=${CQA_TRAIN:-480} data.limit_eval=${CQA_EVAL:-500}"
pfcc="data.limit_eval=${PFCC_EVAL:-500}"
seeds=${SEEDS:-1,2,3}
SHUFFLE_TASKS=${SHUFFLE_TASKS:-cqa_a,cqa_b}
losses=${LOSSES:-mse,symmetric,combo}   # triplet,oneway,cosent also run (LOSSES=...), not in the tables
run() { python -m bsc_lightning.run -m logger=csv "$@"; }

part_zero_shot() {        # the encoder as it is: no training, so one run per task (no seeds)
  run experiment=paper/losses experiment/paper/loss=symmetric task=cqa_a,cqa_b train=false seed=0 $cqa hydra.sweep.dir="$out/zero_shot_cqa"
  run experiment=paper/losses experiment/paper/loss=symmetric task=pfcc_s train=false seed=0 $pfcc hydra.sweep.dir="$out/zero_shot_pfcc"
}
part_losses_cqa() {
  run experiment=paper/losses task=cqa_a,cqa_b experiment/paper/loss="$losses" \
    seed="$seeds" $cqa hydra.sweep.dir="$out/losses_cqa"
}
part_losses_pfcc() {
  run experiment=paper/losses task=pfcc_s experiment/paper/loss="$losses" \
    seed="$seeds" $pfcc hydra.sweep.dir="$out/losses_pfcc"
}
part_normalization() {    # each at its usual τ (l2 0.1; none 1.2); coordinate τ 1.2 is the symmetric row of losses_pfcc
  run experiment=paper/normalization loss.normalization=l2 loss.temperature=0.1 \
    seed="$seeds" $pfcc hydra.sweep.dir="$out/normalization_l2"
  run experiment=paper/normalization loss.normalization=none loss.temperature=1.2 \
    seed="$seeds" $pfcc hydra.sweep.dir="$out/normalization_none"
}
part_shuffles() {         # example is the symmetric row of losses_cqa; one sweep folder per task
  for t in ${SHUFFLE_TASKS//,/ }; do
    run experiment=paper/shuffles task="$t" experiment/paper/shuffle=none,random \
      seed="$seeds" $cqa hydra.sweep.dir="$out/shuffles_$t"
  done
}
part_shuffles_more() {
  for t in ${SHUFFLE_TASKS//,/ }; do
    run experiment=paper/shuffles task="$t" experiment/paper/shuffle=words,clusters \
      seed="$seeds" $cqa hydra.sweep.dir="$out/shuffles_more_$t"
  done
}

part_aggregate() {        # every finished part: results.md / results.csv / PNGs under multirun/paper_cpu/results/<part>
  for d in "$out"/*/; do
    name=$(basename "$d"); [ "$name" = results ] && continue
    python experiments/aggregate.py "$d" --out "$out/results/$name"
  done
}

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(zero_shot losses_cqa losses_pfcc normalization shuffles shuffles_more aggregate)
for p in "${parts[@]}"; do "part_$p"; done
