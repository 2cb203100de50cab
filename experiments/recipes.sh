#!/usr/bin/env bash
# docs/results.md, "Recipes": the dev-only sweeps that chose experiment=recipe_{ranking,regression,
# classification}, then the chosen recipes and their one-lever-removed ablations over 3 seeds.
#   BSC_DATA_DIR=../shared/data bash experiments/recipes.sh [part ...]     (parts below; default: all)
# Protocol = ../shared/BASELINES.md's (embedded MiniLM, max length 128, batch 32, 1 epoch per stage, AdamW
# 2e-5, wd 0.01, warm-up 10%, clip 1.0), except CQA-A/CQA-B, which use the CPU cut of experiments/paper_cpu.sh
# (max length 64, 480 training pairs, 500 dev/test pairs, the paper's per-task lr and τ) so that their rows
# sit beside that script's MSE / BSC / combo rows. Choices are read from dev/* only (aggregate.py prints dev
# beside test; the test columns are looked at once, after the choice).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
out=${OUT:-multirun/recipes}
seeds=${SEEDS:-0,1,2}
cqa="data.limit_train=${CQA_TRAIN:-480} data.limit_eval=${CQA_EVAL:-500}"
run() { python -m bsc_lightning.run -m trainer=cpu logger=csv export=false "$@"; }

# --- dev sweeps (seed 0): which combination wins, per task type ---------------------------------------
part_dev_regression() {      # STS-B: MSE, combo (μ 0.1, 0.5), BSC then MSE
  run task=stsb loss=mse,combo seed=0 hydra.sweep.dir="$out/dev_stsb"
  run task=stsb loss=combo loss.mu=0.5 seed=0 hydra.sweep.dir="$out/dev_stsb_mu05"
  run task=stsb experiment=bsc_then_mse seed=0 hydra.sweep.dir="$out/dev_stsb_seq"
}
part_dev_classification() {  # MRPC: the same candidates
  run task=mrpc loss=mse,combo seed=0 hydra.sweep.dir="$out/dev_mrpc"
  run task=mrpc experiment=bsc_then_mse seed=0 hydra.sweep.dir="$out/dev_mrpc_seq"
}
part_dev_wikiqa() {          # WikiQA: positives-only in-batch softmax vs all pairs with eq. 5 negatives; τ; batches
  run task=wikiqa loss=symmetric shuffle=random data.train_positives_only=true seed=0 hydra.sweep.dir="$out/dev_wikiqa_pos"
  run task=wikiqa loss=symmetric shuffle=example seed=0 hydra.sweep.dir="$out/dev_wikiqa_eq5_example"
  run task=wikiqa loss=symmetric shuffle=random data.train_positives_only=true loss.temperature=0.05 seed=0 \
    hydra.sweep.dir="$out/dev_wikiqa_pos_tau05"
  run task=wikiqa loss=symmetric shuffle=random data.train_positives_only=true loss.temperature=0.03,0.02 seed=0 \
    hydra.sweep.dir="$out/dev_wikiqa_pos_tau"
  run task=wikiqa loss=symmetric shuffle=example data.train_positives_only=true loss.temperature=0.05 seed=0 \
    hydra.sweep.dir="$out/dev_wikiqa_pos_tau05_example"
}
part_cqa_baselines() {       # CQA-A/B (paper_cpu protocol): positives-only random, triplet; 3 seeds
  run experiment=paper/shuffles task=cqa_a,cqa_b experiment/paper/shuffle=random data.train_positives_only=true \
    seed=1,2,3 $cqa hydra.sweep.dir="$out/cqa_positives_only"
  run experiment=paper/losses task=cqa_a,cqa_b experiment/paper/loss=triplet seed=1,2,3 $cqa \
    hydra.sweep.dir="$out/cqa_triplet"
}

# --- the chosen recipes and one-lever-removed ablations, 3 seeds (test read once, after the choice) --------
# Seed 0 repeats the dev sweep's job (the same config; deterministic on CPU): SEEDS=1,2 skips it.
part_recipe_regression() {
  run experiment=recipe_regression task=stsb seed="$seeds" hydra.sweep.dir="$out/recipe_stsb"
}
part_equal_budget_stsb() {    # the regression recipe trains 2 epochs (1 per stage): plain MSE for 2 epochs
  run task=stsb loss=mse trainer.max_epochs=2 seed=0 hydra.sweep.dir="$out/equal_budget_stsb"
}
part_recipe_classification() {
  run experiment=recipe_classification task=mrpc seed="$seeds" hydra.sweep.dir="$out/recipe_mrpc"
}
part_recipe_wikiqa() {
  run experiment=recipe_ranking task=wikiqa seed="$seeds" hydra.sweep.dir="$out/recipe_wikiqa"
}
part_recipe_cqa() {          # the recipe as a user runs it (its τ, lr 2e-5) on the CQA cut, seeds of paper_cpu.sh
  run experiment=recipe_ranking task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa \
    hydra.sweep.dir="$out/recipe_cqa"
}

part_aggregate() {
  for d in "$out"/*/; do
    name=$(basename "$d"); [ "$name" = results ] && continue
    python experiments/aggregate.py "$d" --out "$out/results/$name"
  done
}

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(dev_regression dev_classification dev_wikiqa cqa_baselines recipe_regression
  recipe_classification recipe_wikiqa recipe_cqa equal_budget_stsb aggregate)
for p in "${parts[@]}"; do "part_$p"; done
