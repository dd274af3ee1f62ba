#!/usr/bin/env bash
# Fine-tune the released VALL-E X checkpoint on data/tokenized, made by ./prepare.sh in the current folder:
#   ./train.sh --model-name ar     then     ./train.sh --model-name nar
# Add --num-gpus N for several GPUs, or any trainer flag (./train.sh --help lists them with this recipe's values).
set -euo pipefail
export VALLE_PROG=${VALLE_PROG:-$0}
# LoRA or full fine-tuning, the learning rate, the steps and the validation and probe intervals are chosen from
# the minutes of speech and the speakers (printed at the start, kept in exp/<half>/plan.json; docs/training.md);
# any of their flags overrides its choice. With --codec-weights (the codec the data was prepared with) the
# evaluation probe runs: step 0 is the released model on your voice, the baseline best-eval.pt must beat.
exec "$(dirname "$0")/../shared/train.sh" --manifest-dir data/tokenized --max-duration 40 --early-stop-patience 5 "$@"
