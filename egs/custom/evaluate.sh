#!/usr/bin/env bash
# Evaluate your fine-tuned checkpoints on your test sentences (data/tokenized/cuts_test.jsonl.gz, else dev):
#   ./evaluate.sh                                               # exp/{ar,nar}/best-valid-loss.pt
#   ./evaluate.sh --checkpoint exp/nar/best-valid-loss.pt vallex   # against the released model
# Use the codec weights you prepared with (--codec-weights PATH if not pretrained). Report: exp/eval/report.html.
set -euo pipefail
exec "$(dirname "$0")/../shared/evaluate.sh" --num-utterances 20 "$@"
