#!/usr/bin/env bash
# A pretraining stage on one CUDA GPU (the default model's stages 8-10), sized to a wall-clock budget:
#   1. fresh masks over the training text (dupe factor 32, a new seed, shards built in parallel);
#   2. a 40-step probe run measures the seconds per step at this batch size;
#   3. the stage itself: AdamW from WORK/init, warm-up then linear decay to zero over as many steps as
#      fit in TRAIN_SECONDS, so the exported snapshot is taken at the end of its schedule.
# Usage: gpu_stage.sh WORK TRAIN_SECONDS [start|prepare|wait]
#   WORK holds corpora/train/*.txt, vocab/, heldout_examples/, init/ (the snapshot to continue) and,
#   optionally, cache/ (sentence-split text, so pysbd need not run again; else the default cache).
#   `start` (the default) does 1-2 and launches 3 detached, logging to WORK/RUN.log; `prepare` does 1
#   only (on the CPU, while the GPU does something else; train.sh uses it too); `wait` waits for the
#   launched run to finish.
# The run lands in WORK/RUN (metrics.jsonl, curves.png, the final model); export it with
# scripts/default_model/export.py --run WORK/RUN.
# Environment: BATCH (512), LR (1e-3), DEVICE (cuda), RUN (run8: the run's directory and log name, so
# two runs can share the GPU), EXAMPLES (examples8: where the examples go), MASK_SEED (81: the seed of
# their pairs and masks; a new one gives a continued model fresh masks of the same text), CORPUS (the text
# files, space separated; default every WORK/corpora/train/*.txt), CONFIG=a config.json to pretrain that
# architecture from scratch instead of continuing from WORK/init, and SCHEDULE=N to lay the learning rate
# over N steps and stop (with a checkpoint for --resume) after as many as fit in the budget, for a run
# spread over several GPU sessions.
set -euo pipefail
WORK=$1
BUDGET=${2:-330}
MODE=${3:-start}
BATCH=${BATCH:-512}
LR=${LR:-1e-3}
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-run8}
EXAMPLES=${EXAMPLES:-examples8}
if [ -n "${CORPUS:-}" ]; then read -ra corpus <<<"$CORPUS"; else corpus=("$WORK"/corpora/train/*.txt); fi
OA=(python3 -m openalbert)
if [ -n "${CONFIG:-}" ]; then start_from=(--config "$CONFIG"); else start_from=(--init-from "$WORK/init"); fi

if [ "$MODE" = wait ]; then
    while pgrep -f "output $WORK/$RUN " >/dev/null; do sleep 2; done
    tail -n 3 "$WORK/$RUN.log"
    exit 0
fi

cache=()
[ -d "$WORK/cache" ] && cache=(--cache-dir "$WORK/cache")
[ -f "$WORK/$EXAMPLES/manifest.json" ] || "${OA[@]}" prepare-data --corpus "${corpus[@]}" \
    --tokenizer "$WORK/vocab" --output "$WORK/$EXAMPLES" --max-seq-length 128 --dupe-factor 32 \
    --seed "${MASK_SEED:-81}" --no-whole-word-mask --shard-size 25000 \
    --workers "$(($(nproc) > 4 ? $(nproc) - 4 : 1))" "${cache[@]}"
[ "$MODE" = prepare ] && exit 0

common=(--data "$WORK/$EXAMPLES" "${start_from[@]}" --tokenizer "$WORK/vocab" --optimizer adamw
    --batch-size "$BATCH" --device "$DEVICE" --bf16 --threads 4 --no-progress)
rm -rf "$WORK/probe-$RUN"
"${OA[@]}" pretrain "${common[@]}" --output "$WORK/probe-$RUN" --learning-rate "$LR" --max-steps 40 \
    --warmup-steps 10 --log-every 10 --save-every 100000 --seed 41
# Seconds per step from the last three logged windows (the first holds CUDA's start-up).
read -r steps warmup < <(python3 - "$WORK/probe-$RUN/metrics.jsonl" "$BUDGET" <<'EOF'
import json, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if "elapsed" in r and "eval_loss" not in r]
per_step = (rows[-1]["elapsed"] - rows[-4]["elapsed"]) / (rows[-1]["step"] - rows[-4]["step"])
steps = int(float(sys.argv[2]) / per_step * 0.95) // 100 * 100  # 5% for evaluation and checkpoints
print(max(steps, 200), min(300, max(steps, 200) // 10))
print(f"probe: {per_step * 1e3:.1f} ms/step, {rows[-1]['tokens_per_s']:.0f} tokens/s -> {steps} steps",
      file=sys.stderr)
EOF
)
schedule=(--max-steps "$steps" --warmup-steps "$warmup")
[ -n "${SCHEDULE:-}" ] && schedule=(--max-steps "$SCHEDULE" --stop-after "$steps" --warmup-steps 500)
setsid nohup "${OA[@]}" pretrain "${common[@]}" --output "$WORK/$RUN" --learning-rate "$LR" "${schedule[@]}" \
    --eval-data "$WORK/heldout_examples" --eval-every 2000 \
    --save-every 1000 --keep-last 1 --log-every 50 --seed 41 >"$WORK/$RUN.log" 2>&1 </dev/null &
echo "$RUN: $steps steps of $BATCH, launched (log $WORK/$RUN.log)"
