#!/usr/bin/env bash
# Evaluate the demo checkpoints (exp/{ar,nar}/best-valid-loss.pt) on the mini test sentences -> exp/eval/report.html.
# The demo codec is random, so every output is flagged `noise` and the ground truth is not: that is the check.
set -euo pipefail
exec "$(dirname "$0")/../shared/evaluate.sh" --codec-weights random --device cpu --asr-model none \
  --max-frames 375 --seed 0 "$@"
