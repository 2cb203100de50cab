#!/usr/bin/env bash
# Every GPU check of docs/performance.md in one run (< 10 min on one H100/H200), JSON + markdown out.
#
#   bash bench/gpu_suite.sh            # on a machine with a GPU (torch, lightning, transformers,
#                                      # sentence-transformers suffice: no hydra/omegaconf/wandb/datasets)
#   bash bench/gpu_suite.sh --smoke    # the same code paths on CPU at tiny sizes (< 3 min)
#
# Writes $OUT (default bench/results/gpu_suite[_smoke]/): throughput.{json,md} (MiniLM at 256/1,024/4,096
# pairs on synthetic, STS-B and WikiQA lengths; BERT-base at 256/1,024; raw loop, sentence-transformers,
# bsc, bsc_padded; MFU on real tokens), big_batch.json (cached 65,536-pair step with loss.row_block vs the
# raw loop at its largest fitting batch), batching.json (`example` at 364,000 pairs as a share of an
# epoch), evaluation.json when bench/evaluation.py exists, and suite.md with the device and commands.
# BERT-base is randomly initialised from its config (throughput does not depend on the weights; the
# machine may have no hub access); data sets come from $BSC_DATA_DIR (or ../shared/data) when present.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false BSC_NO_PROGRESS=1
DATA="${BSC_DATA_DIR:-../shared/data}"
if [[ $SMOKE == 1 ]]; then
  OUT="${OUT:-bench/results/gpu_suite_smoke}"; DEV=cpu
  MINI_SIZES="8 16"; BASE_SIZES="8"; BIG="--batch-sizes 64 --chunk 16 --row-block 16 --loss-batch-sizes 64"
  BATCH_N=4000; STEPS="--steps 1 --warmup 1"; BIG_STEPS="--steps 1"; THREADS="--threads 2"
else
  OUT="${OUT:-bench/results/gpu_suite}"; DEV=cuda
  MINI_SIZES="256 1024 4096"; BASE_SIZES="256 1024"
  BIG="--batch-sizes 65536 --chunk 1024 --row-block 4096 --bf16 --memory-budget-gib 12"
  BATCH_N=364000; STEPS=""; BIG_STEPS="--steps 3"; THREADS=""
fi
mkdir -p "$OUT"
DATASETS="synthetic"
[[ -f "$DATA/stsb/sts-train.csv" ]] && DATASETS="$DATASETS stsb"
[[ -f "$DATA/wikiqa/WikiQA-train.tsv" ]] && DATASETS="$DATASETS wikiqa"
MODELS="$OUT/models"
python -m bench.suite make-models "$MODELS" $([[ $SMOKE == 1 ]] && echo --tiny)
MINILM="$MODELS/minilm"; BASE="$MODELS/bert-base-random"
PATHS="raw st bsc bsc_padded"
python -c "import sentence_transformers" 2>/dev/null || PATHS="raw bsc bsc_padded"

run() {  # name, then the command; keeps going when one check fails, and records it
  local name=$1; shift
  echo "## $name: $*" | tee -a "$OUT/commands.md"
  if ! "$@" 2>&1 | tee "$OUT/$name.log"; then echo "FAILED: $name" | tee -a "$OUT/commands.md"; fi
}
run throughput_minilm python -m bench.throughput --device $DEV $THREADS $STEPS --models "$MINILM" \
  --batch-sizes $MINI_SIZES --data $DATASETS --data-dir "$DATA" --paths $PATHS \
  --json "$OUT/throughput_minilm.json" --markdown "$OUT/throughput_minilm.md"
run throughput_bert_base python -m bench.throughput --device $DEV $THREADS $STEPS --models "$BASE" \
  --batch-sizes $BASE_SIZES --data synthetic --paths $PATHS \
  --json "$OUT/throughput_bert_base.json" --markdown "$OUT/throughput_bert_base.md"
run big_batch python -m bench.big_batch --device $DEV $THREADS $BIG $BIG_STEPS --json "$OUT/big_batch.json"
run batching python -m bench.batching --device $DEV $THREADS --n $BATCH_N --strategies example \
  --json "$OUT/batching.json"
if [[ -f bench/evaluation.py ]]; then
  run evaluation python -m bench.evaluation --device $DEV $THREADS --data-dir "$DATA" --json "$OUT/evaluation.json"
fi
python -m bench.suite summarize "$OUT" > "$OUT/suite.md"
echo "wrote $OUT/suite.md"
grep -q FAILED "$OUT/commands.md" && { echo "some checks failed (see $OUT/commands.md)"; exit 1; } || true
