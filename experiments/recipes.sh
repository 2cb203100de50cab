#!/usr/bin/env bash
# docs/results.md, "Recipes": the dev-only sweeps that chose experiment=recipe_{ranking,regression,
# classification}, then the chosen recipes and their one-lever-removed ablations over 3 seeds.
#   BSC_DATA_DIR=../shared/data bash experiments/recipes.sh [part ...]     (parts below; default: all)
# Protocol = ../shared/BASELINES.md's (embedded MiniLM, max length 128, batch 32, 1 epoch per stage unless a
# line says otherwise, AdamW 2e-5, wd 0.01, warm-up 10%, clip 1.0), except CQA-A/CQA-B, which use the CPU cut of experiments/paper_cpu.sh
# (max length 64, 480 training pairs, 500 dev/test pairs, the paper's per-task lr and τ) so that their rows
# sit beside that script's MSE / BSC / combo rows. Choices are read from dev/* only (aggregate.py prints dev
# beside test; the test columns are looked at once, after the choice).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
out=${OUT:-multirun/recipes}
seeds=${SEEDS:-0,1,2}
cqa="data.limit_train=${CQA_TRAIN:-480} data.limit_eval=${CQA_EVAL:-500}"
# checkpoint.keep=false: a run's checkpoints (~250 MB) go once its metrics.json is written; dev_interpolate keeps them
run() { python -m bsc_lightning.run -m trainer=cpu logger=csv export=false checkpoint.keep=false "$@"; }
# The ranking recipe's rounds. Round one chose a positives-only recipe (symmetric BSC, τ 0.05, lr 2e-5, a
# question's pairs apart: $pos_recipe); round two added at most 7 labelled negatives per answered query in their
# question's batch ($r2, part_dev_hard_negatives); round three raised the lr to 3e-5 ($r3, part_dev_tau_lr); round
# four raised τ to 0.07 as well (part_dev_tau_lr_both, $r4); round five interpolated the best checkpoint with the
# pretrained encoder at the α chosen on dev (part_dev_interpolate, $r5); round six kept, per run, that or
# positives-only in-batch softmax in random batches, whichever had the better dev score (part_dev_choose), which
# made experiment=recipe_ranking; round seven added a third run, plain MSE on every labelled pair (part_recipe_*,
# $r6 without it). Earlier rounds pin what the recipe has changed since, so they re-run what ran (of two overrides of
# one key, the later wins: `$pos_recipe model.optimizer.lr=5e-5` runs at 5e-5).
r6="experiment=recipe_ranking ~choose.mse"
r5="experiment=recipe_ranking choose=null"
r4="$r5 interpolate=null"
r2="$r4 loss.temperature=0.05 model.optimizer.lr=2e-5"
r3="$r4 loss.temperature=0.05 model.optimizer.lr=3e-5"
pos_recipe="$r2 data.train_positives_only=true data.train_negatives_per_query=null shuffle=example"

# --- dev sweeps (seed 0): which combination wins, per task type ---------------------------------------
part_dev_regression() {      # STS-B: MSE, combo (μ 0.1, 0.5), BSC then MSE, MSE for 2 epochs (BSC then MSE's budget)
  run task=stsb loss=mse,combo seed=0 hydra.sweep.dir="$out/dev_stsb"
  run task=stsb loss=combo loss.mu=0.5 seed=0 hydra.sweep.dir="$out/dev_stsb_mu05"
  run task=stsb experiment=bsc_then_mse seed=0 hydra.sweep.dir="$out/dev_stsb_seq"
  run task=stsb loss=mse trainer.max_epochs=2 seed=0 hydra.sweep.dir="$out/stsb_mse2"
}
part_dev_classification() {  # MRPC: the same candidates without combo μ 0.5, then a third epoch of MSE
  run task=mrpc loss=mse,combo seed=0 hydra.sweep.dir="$out/dev_mrpc"
  run task=mrpc experiment=bsc_then_mse seed=0 hydra.sweep.dir="$out/dev_mrpc_seq"
  run task=mrpc loss=mse trainer.max_epochs=2 seed=0 hydra.sweep.dir="$out/mrpc_mse2"
  run task=mrpc loss=mse trainer.max_epochs=3 seed=0 hydra.sweep.dir="$out/dev_mrpc_mse3"   # then a third epoch
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
  # then, from that choice (the positives-only recipe): lr, learnable τ, batch 64, one direction
  wq() { run $pos_recipe task=wikiqa seed=0 "$@"; }
  wq model.optimizer.lr=5e-5,1e-4 hydra.sweep.dir="$out/dev_wikiqa_lr"
  wq model.optimizer.lr=1e-5 hydra.sweep.dir="$out/dev_wikiqa_lr1e5"
  wq loss.learn_temperature=true hydra.sweep.dir="$out/dev_wikiqa_learn_tau"   # τ's own lr 1e-3: τ stays 0.05
  wq loss.learn_temperature=true model.temperature_lr=0.5 hydra.sweep.dir="$out/dev_wikiqa_learn_tau_fast"
  wq data.batch_size=64 hydra.sweep.dir="$out/dev_wikiqa_b64"
  wq loss=oneway loss.temperature=0.05 hydra.sweep.dir="$out/dev_wikiqa_oneway"
  wq loss.temperature=0.07 hydra.sweep.dir="$out/dev_wikiqa_tau07"
  wq trainer.max_epochs=2 hydra.sweep.dir="$out/dev_wikiqa_ep2"
  run $pos_recipe task=wikiqa trainer.max_epochs=2 seed=1,2 hydra.sweep.dir="$out/dev_wikiqa_ep2"
  run $pos_recipe task=wikiqa trainer.max_epochs=3 seed=0 hydra.sweep.dir="$out/dev_wikiqa_ep3"
}
part_dev_hard_negatives() {  # positives + k labelled negatives per answered query (eq. 5 columns) in their question's batch
  hk() { run $r2 "$@"; }     # the positives-only recipe + negatives, example_grouped, k = 7
  for k in 3 7 100; do       # 100: all of them (WikiQA's most negatives for one question: 30)
    hk data.train_negatives_per_query=$k task=wikiqa seed=0 hydra.sweep.dir="$out/dev_wikiqa_hn$k"
  done
  hk task=wikiqa seed=1,2 hydra.sweep.dir="$out/dev_wikiqa_hn7"
  for k in 3 7; do
    hk data.train_negatives_per_query=$k task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa \
      hydra.sweep.dir="$out/dev_cqa_hn$k"
  done
  # one lever removed: a question's pairs kept apart (shuffle=example), random batches
  hk shuffle=example task=wikiqa seed=0 hydra.sweep.dir="$out/dev_wikiqa_hn7_apart"
  hk shuffle=random task=wikiqa seed=0 hydra.sweep.dir="$out/dev_wikiqa_hn7_random"
  hk shuffle=random task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa hydra.sweep.dir="$out/dev_cqa_hn7_random"
  for s in 0 1 2; do         # the peer with the same hard negatives (sentence-transformers' negative_1..k columns)
    python experiments/peer.py --task wikiqa --loss symmetric --negatives-per-query 7 --data-dir "${BSC_DATA_DIR:?set BSC_DATA_DIR}" \
      --seed $s --out "$out/peer_wikiqa_hn7/seed$s"
  done
}
part_dev_tau_lr() {          # round three, from round two's choice (τ 0.05, lr 2e-5): τ 0.07 (CQA-B preferred it with
                             # positives only), lr 3e-5 (the paper's CQA-B lr); lr 3e-5 won the dev mean ($r3)
  run $r2 loss.temperature=0.07 task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa hydra.sweep.dir="$out/dev_cqa_hn7_tau07"
  run $r2 loss.temperature=0.07 task=wikiqa seed=0,1,2 hydra.sweep.dir="$out/dev_wikiqa_hn7_tau07"
  run $r2 model.optimizer.lr=3e-5 task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa hydra.sweep.dir="$out/dev_cqa_hn7_lr3e5"
  run $r2 model.optimizer.lr=3e-5 task=wikiqa seed=0,1,2 hydra.sweep.dir="$out/dev_wikiqa_hn7_lr3e5"
}
part_dev_tau_lr_both() {     # round four, from round three's choice (τ 0.05, lr 3e-5): τ 0.07 as well, which won the
                             # dev mean of all three tasks ($r4: round five's starting point)
  run $r3 loss.temperature=0.07 task=wikiqa seed=0,1,2 hydra.sweep.dir="$out/dev_wikiqa_hn7_lr3e5_tau07"
  run $r3 loss.temperature=0.07 task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa hydra.sweep.dir="$out/dev_cqa_hn7_lr3e5_tau07"
}
part_dev_interpolate() {     # round five: the recipe's best checkpoint interpolated with the pretrained encoder,
                             # θ0 + α(θ − θ0) (WiSE-FT; `interpolate`), α from 0 to 1, evaluated after training
                             # (experiments/interpolate.py); WikiQA seeds 0-2, CQA 1-3 on the cut and on full CQA-B
  local keep="checkpoint.keep=true"
  run $r4 task=wikiqa seed=0,1,2 $keep hydra.sweep.dir="$out/interp_wikiqa"   # round four's runs, checkpoints kept
  run $r4 task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa $keep hydra.sweep.dir="$out/interp_cqa_cut"
  run $r4 task=cqa_b encoder.max_length=64 seed=1,2,3 data.limit_train=null data.limit_eval=null \
    $keep hydra.sweep.dir="$out/interp_cqab_full"
  # positives-only in-batch softmax on full CQA-B (cqa_full's row), interpolated the same way
  run experiment=paper/shuffles task=cqa_b experiment/paper/shuffle=random data.train_positives_only=true seed=1,2,3 \
    data.limit_train=null data.limit_eval=null $keep hydra.sweep.dir="$out/interp_cqab_full_positives_only"
  python experiments/interpolate.py "$out"/interp_wikiqa "$out"/interp_cqa_cut "$out"/interp_cqab_full
  python experiments/interpolate.py "$out"/interp_cqab_full_positives_only   # apart: its task is cqa_b too
}
part_dev_choose() {          # round six: round five's recipe ($r5) or positives-only in-batch softmax in random batches
                             # (its τ, lr and α choice), whichever run has the better dev score (`choose`). Here the
                             # positives-only runs; the hard-negative ones are round five's (dev_interpolate, cqa_full)
  local full="data.limit_train=null data.limit_eval=null"
  local p="$r5 data.train_positives_only=true data.train_negatives_per_query=null shuffle=random"
  run $p task=wikiqa seed=0,1,2 hydra.sweep.dir="$out/choose_wikiqa_positives"
  run $p task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa hydra.sweep.dir="$out/choose_cqa_cut_positives"
  run $p task=cqa_a encoder.max_length=64 seed=1,2 $full hydra.sweep.dir="$out/choose_cqaa_full_positives"
  # full CQA-B: dev_interpolate's interp_cqab_full_positives_only trained this very config (experiment=paper/shuffles
  # on cqa_b is symmetric BSC at τ 0.07, lr 3e-5, random batches; interpolated by experiments/interpolate.py)
  for hp in interp_wikiqa:choose_wikiqa_positives interp_cqa_cut:choose_cqa_cut_positives \
            interp_cqab_full:interp_cqab_full_positives_only cqaa_full_recipe:choose_cqaa_full_positives; do
    python experiments/choose.py hard_negatives="$out/${hp%:*}" positives_only="$out/${hp#*:}"
  done   # add --test to read test, after the choice
  # round six's recipe itself (both runs and the choice in each job) on the CQA cut: the choice and numbers printed above
  run $r6 task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa hydra.sweep.dir="$out/recipe_cqa"
}
part_dev_seeds() {           # seeds 1, 2 of the candidates one seed could not separate: the choice is the best
                             # dev mean over seeds 0-2 (CQA: 1-3); seed 0 is the dev sweeps' job
  run $pos_recipe shuffle=random task=wikiqa seed=1,2 hydra.sweep.dir="$out/dev_wikiqa_random_seeds"
  run $pos_recipe shuffle=random task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa \
    hydra.sweep.dir="$out/cqa_recipe_random"
  for t in stsb mrpc; do
    run task=$t loss=mse seed=1,2 hydra.sweep.dir="$out/seeds_${t}_mse"
    run task=$t experiment=bsc_then_mse seed=1,2 hydra.sweep.dir="$out/seeds_${t}_seq"
    run task=$t loss=mse trainer.max_epochs=2 seed=1,2 hydra.sweep.dir="$out/${t}_mse2"
  done
  run task=mrpc loss=mse trainer.max_epochs=3 seed=1,2 hydra.sweep.dir="$out/dev_mrpc_mse3"
}
part_cqa_baselines() {       # CQA-A/B (paper_cpu protocol): positives-only random, triplet; 3 seeds
  run experiment=paper/shuffles task=cqa_a,cqa_b experiment/paper/shuffle=random data.train_positives_only=true \
    seed=1,2,3 $cqa hydra.sweep.dir="$out/cqa_positives_only"
  run experiment=paper/losses task=cqa_a,cqa_b experiment/paper/loss=triplet seed=1,2,3 $cqa \
    hydra.sweep.dir="$out/cqa_triplet"
}

# --- the chosen recipes and one-lever-removed ablations, 3 seeds (test read once, after the choice) --------
# Seed 0 repeats the dev sweep's job (the same config; deterministic on CPU): SEEDS=1,2 skips it.
part_recipe_regression() {     # = the stsb_mse2 jobs (the recipe is MSE for 2 epochs; deterministic on CPU)
  run experiment=recipe_regression task=stsb seed="$seeds" hydra.sweep.dir="$out/recipe_stsb"
}
part_recipe_classification() { # = the dev_mrpc_mse3 jobs (MSE for 3 epochs)
  run experiment=recipe_classification task=mrpc seed="$seeds" hydra.sweep.dir="$out/recipe_mrpc"
}
part_equal_budget_peer() {     # sentence-transformers (experiments/peer.py) at our MSE's 2 and 3 epochs
  for te in stsb:2 mrpc:2; do  # seed 0
    python experiments/peer.py --task ${te%:*} --loss mse --epochs ${te#*:} --data-dir "${BSC_DATA_DIR:?set BSC_DATA_DIR}" \
      --seed 0 --out "$out/peer_${te%:*}_mse${te#*:}"
  done
  for s in 0 1 2; do           # the classification recipe's budget (MSE, 3 epochs), its seeds
    python experiments/peer.py --task mrpc --loss mse --epochs 3 --data-dir "${BSC_DATA_DIR:?set BSC_DATA_DIR}" \
      --seed $s --out "$out/peer_mrpc_mse3/seed$s"
  done
}
# The ranking recipe as a user runs it (round seven: its three runs and the dev choice in each job; metrics.json
# holds the kept run's scores, choose/<run> and choose/dev_map@<run>: aggregate.py --metrics shows them)
part_recipe_wikiqa() {
  run experiment=recipe_ranking task=wikiqa seed="$seeds" hydra.sweep.dir="$out/r7_wikiqa"
}
part_recipe_cqa() {          # the CQA cut, seeds of paper_cpu.sh
  run experiment=recipe_ranking task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa hydra.sweep.dir="$out/r7_cqa_cut"
}
part_recipe_cqa_full() {     # CQA's full training splits (cqa_full's protocol)
  local full="data.limit_train=null data.limit_eval=null"
  run experiment=recipe_ranking task=cqa_a encoder.max_length=64 seed=1,2,3 $full hydra.sweep.dir="$out/r7_cqaa_full"
  run experiment=recipe_ranking task=cqa_b encoder.max_length=64 seed=1,2,3 $full hydra.sweep.dir="$out/r7_cqab_full"
}
part_dev_epochs_cut() {       # round eight's dev check: the recipe at 2 and 3 epochs on the CQA cut (15 steps an epoch)
  for e in 2 3; do
    run experiment=recipe_ranking task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa trainer.max_epochs=$e \
      hydra.sweep.dir="$out/e${e}_cqa_cut"
  done
}
part_dev_soup_cut() {          # round nine's dev check: the recipe's three runs and their greedy soup (soup=true:
                               # the runs' tested weights averaged, one at a time while dev does not fall), CQA cut
  for t in cqa_a cqa_b; do
    run experiment=recipe_ranking soup=true task=$t encoder.max_length=64 seed=1,2,3 $cqa \
      hydra.sweep.dir="$out/r9_${t/cqa_/cqa}_cut"
  done
}
part_significance_cqa() {    # the CQA-A cut again, runs that keep their pair scores (scores/): is the recipe behind
                             # positives-only in-batch softmax there, or within what its 50 test questions can tell
                             # apart? Paired bootstrap over questions (bsc_lightning.significance), test read once
  local d="$out/sig_cqaa_cut"
  run experiment=recipe_ranking task=cqa_a encoder.max_length=64 seed=1,2,3 $cqa hydra.sweep.dir="$d/recipe"
  run experiment=paper/shuffles task=cqa_a experiment/paper/shuffle=random data.train_positives_only=true \
    seed=1,2,3 $cqa hydra.sweep.dir="$d/positives_only"   # cqa_baselines' row: the paper's τ and lr
  for l in mse triplet; do
    run experiment=paper/losses task=cqa_a experiment/paper/loss=$l seed=1,2,3 $cqa hydra.sweep.dir="$d/$l"
  done
  run experiment=paper/losses experiment/paper/loss=symmetric task=cqa_a train=false seed=0 $cqa \
    hydra.sweep.dir="$d/zero_shot"
  for b in positives_only mse triplet zero_shot; do
    python -m bsc_lightning.significance "$d"/recipe/*/ --vs "$d/$b"/*/
  done
}
part_significance_cqa_fulltest() {  # the CQA-A cut's training (its first 480 pairs) scored on CQA-A's full dev and test
                                    # splits (211 / 287 questions instead of 50 / 50): the cut's comparisons, resolved
  local d="$out/sig_cqaa_cut_fulltest" fe="data.limit_train=${CQA_TRAIN:-480} data.limit_eval=null"
  run experiment=paper/shuffles task=cqa_a experiment/paper/shuffle=random data.train_positives_only=true seed=1,2,3 \
    $fe hydra.sweep.dir="$d/positives_only"
  run experiment=recipe_ranking task=cqa_a encoder.max_length=64 seed=1,2,3 $fe hydra.sweep.dir="$d/recipe"
  run experiment=paper/losses task=cqa_a experiment/paper/loss=mse seed=1,2,3 $fe hydra.sweep.dir="$d/mse"
  run experiment=paper/losses experiment/paper/loss=symmetric task=cqa_a train=false seed=0 $fe \
    hydra.sweep.dir="$d/zero_shot"
  for b in positives_only mse zero_shot; do
    python -m bsc_lightning.significance "$d"/recipe/*/ --vs "$d/$b"/*/
  done
}
part_significance_cqaa_full() {   # full CQA-A, runs with pair scores: the recipe's kept run (its MSE run at every seed in
                                  # round seven: the other two dropped, CPU runs repeat to the digit) against plain MSE
  local d="$out/sig_cqaa_full" full="data.limit_train=null data.limit_eval=null"
  run experiment=recipe_ranking '~choose.hard_negatives' '~choose.positives_only' task=cqa_a encoder.max_length=64 \
    seed=1,2,3 $full hydra.sweep.dir="$d/recipe"
  run experiment=paper/losses task=cqa_a experiment/paper/loss=mse seed=1,2,3 $full hydra.sweep.dir="$d/mse"
  python -m bsc_lightning.significance "$d"/recipe/*/ --vs "$d"/mse/*/
}
part_significance_cqab_full() {   # full CQA-B: the recipe (its three runs) against positives-only in-batch softmax
  local d="$out/sig_cqab_full" full="data.limit_train=null data.limit_eval=null"
  run experiment=recipe_ranking task=cqa_b encoder.max_length=64 seed=1,2,3 $full hydra.sweep.dir="$d/recipe"
  run experiment=paper/shuffles task=cqa_b experiment/paper/shuffle=random data.train_positives_only=true \
    seed=1,2,3 $full hydra.sweep.dir="$d/positives_only"
  python -m bsc_lightning.significance "$d"/recipe/*/ --vs "$d"/positives_only/*/
}
part_soup_wikiqa() {           # round nine on WikiQA (seeds 0 and 1 ran: SEEDS=0,1)
  run experiment=recipe_ranking soup=true task=wikiqa seed="$seeds" hydra.sweep.dir="$out/r9_wikiqa"
}
part_significance_peer() {     # the regression and classification recipes against sentence-transformers at their budget
                               # (MSE, 2 / 3 epochs; experiments/peer.py), 3 seeds each: paired bootstrap over pairs
  local d="$out/sig_peer"
  run experiment=recipe_regression task=stsb seed="$seeds" hydra.sweep.dir="$d/recipe_stsb"
  run experiment=recipe_classification task=mrpc seed="$seeds" hydra.sweep.dir="$d/recipe_mrpc"
  for te in stsb:2 mrpc:3; do
    for s in ${seeds//,/ }; do
      python experiments/peer.py --task ${te%:*} --loss mse --epochs ${te#*:} --data-dir "${BSC_DATA_DIR:?set BSC_DATA_DIR}" \
        --seed $s --out "$d/peer_${te%:*}_mse${te#*:}/seed$s"
    done
    python -m bsc_lightning.significance "$d/recipe_${te%:*}"/*/ --vs "$d/peer_${te%:*}_mse${te#*:}"/*/
  done
}
part_soup_cqab_full() {        # round nine on full CQA-B (the recipe's runs closest on dev there): the recipe with
                               # soup=true, against the recipe and positives-only runs of significance_cqab_full
  local full="data.limit_train=null data.limit_eval=null"
  run experiment=recipe_ranking soup=true task=cqa_b encoder.max_length=64 seed=1,2,3 $full \
    hydra.sweep.dir="$out/r9_cqab_full"
  for b in recipe positives_only; do
    python -m bsc_lightning.significance "$out"/r9_cqab_full/*/ --vs "$out/sig_cqab_full/$b"/*/
  done
}
part_ablation_ranking() {    # − hard negatives: the positives-only recipe (the ranking recipe before the hard negatives)
  run $pos_recipe task=wikiqa seed="$seeds" hydra.sweep.dir="$out/pos_recipe_wikiqa"
  run $pos_recipe task=cqa_a,cqa_b encoder.max_length=64 seed=1,2,3 $cqa hydra.sweep.dir="$out/pos_recipe_cqa"
  # the same, on the recipe's questions: its cut's first 480 pairs hold the first 200 (CQA-A) / 233 (CQA-B) positives
  for tn in cqa_a:200 cqa_b:233; do
    run $pos_recipe task=${tn%:*} encoder.max_length=64 seed=1,2,3 data.limit_train=${tn#*:} data.limit_eval=${CQA_EVAL:-500} \
      hydra.sweep.dir="$out/pos_recipe_cqa_same_questions"
  done
}

part_cqa_full() {            # the recipe against its baselines on the full CQA training splits (no cut; max length 64):
                             # CQA-B (3,369 pairs), seeds 1-3, with MSE, triplet and positives-only (the paper's τ and
                             # lr, random batches); CQA-A (7,060 pairs, ~10 min a run on a core), seeds 1-2 (positives
                             # only, MSE and triplet 1-3); round five's recipe ($r5: the hard-negative run of round six's);
                             # round four's (no interpolation) on CQA-A (CQA-B: dev_interpolate's α 1)
  local full="data.limit_train=null data.limit_eval=null"
  run experiment=paper/losses experiment/paper/loss=symmetric task=cqa_a,cqa_b train=false seed=0 $full \
    hydra.sweep.dir="$out/cqa_full_zero_shot"   # the encoder as it is, on the full dev and test splits
  for l in mse triplet; do
    run experiment=paper/losses task=cqa_b experiment/paper/loss=$l seed=1,2,3 $full hydra.sweep.dir="$out/cqab_full_$l"
  done
  run experiment=paper/losses task=cqa_a experiment/paper/loss=mse seed=1,2,3 $full hydra.sweep.dir="$out/cqaa_full_mse"
  run experiment=paper/losses task=cqa_a experiment/paper/loss=triplet seed=1,2,3 $full hydra.sweep.dir="$out/cqaa_full_triplet"
  run experiment=paper/shuffles task=cqa_a experiment/paper/shuffle=random data.train_positives_only=true seed=3 $full \
    hydra.sweep.dir="$out/cqaa_full_positives_only"   # a third seed of that baseline
  for ts in cqa_b:1,2,3 cqa_a:1,2; do
    t=${ts%:*} s=${ts#*:}; name=${t/cqa_/cqa}
    run experiment=paper/shuffles task=$t experiment/paper/shuffle=random data.train_positives_only=true seed=$s $full \
      hydra.sweep.dir="$out/${name}_full_positives_only"
    run $r5 task=$t encoder.max_length=64 seed=$s $full hydra.sweep.dir="$out/${name}_full_recipe"
  done
  run $r4 task=cqa_a encoder.max_length=64 seed=1,2 $full hydra.sweep.dir="$out/cqaa_full_round_four"
}

part_aggregate() {
  for d in "$out"/*/; do
    name=$(basename "$d"); [ "$name" = results ] && continue
    python experiments/aggregate.py "$d" --out "$out/results/$name"
  done
}

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(dev_regression dev_classification dev_wikiqa dev_hard_negatives dev_tau_lr dev_tau_lr_both dev_interpolate cqa_baselines cqa_full dev_choose
  dev_seeds recipe_regression recipe_classification equal_budget_peer ablation_ranking recipe_wikiqa recipe_cqa
  recipe_cqa_full dev_epochs_cut dev_soup_cut significance_cqa significance_cqa_fulltest significance_cqaa_full significance_cqab_full
  soup_cqab_full soup_wikiqa significance_peer aggregate)
for p in "${parts[@]}"; do "part_$p"; done
