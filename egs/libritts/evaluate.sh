#!/usr/bin/env bash
# Evaluate the fine-tuned checkpoints on LibriTTS test-clean (data/tokenized/cuts_test.jsonl.gz) with
# same-speaker prompts: ./evaluate.sh [--num-utterances 100] [--checkpoint ... vallex]. Report: exp/eval/report.html.
set -euo pipefail
exec "$(dirname "$0")/../shared/evaluate.sh" --num-utterances 100 "$@"
