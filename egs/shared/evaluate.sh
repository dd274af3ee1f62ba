#!/usr/bin/env bash
# Shared by every recipe's evaluate.sh (the step after ./train.sh). Works in the folder it is run from:
# reads data/tokenized and exp/ there and writes the report to exp/eval (--output-dir).
#   ./evaluate.sh                                  # the trained checkpoints: exp/{ar,nar}/best-valid-loss.pt
#   ./evaluate.sh --checkpoint exp/nar/best-valid-loss.pt vallex --num-utterances 50
# Any flag of valle evaluate works (./evaluate.sh --help lists them).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

passed_on=()               # every option goes on to valle evaluate
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"
if passed_on_value --help >/dev/null; then
  exec "$PYTHON" -m valle evaluate --help
fi
checkpoints=()
if ! passed_on_value --checkpoint >/dev/null; then  # the trained checkpoints
  for f in exp/ar/best-valid-loss.pt exp/nar/best-valid-loss.pt exp/ar/best-eval.pt exp/nar/best-eval.pt; do
    [ -f "$f" ] && checkpoints+=("$f")
  done
  if [ ${#checkpoints[@]} -eq 0 ]; then
    echo "error: no checkpoint in $(pwd)/exp (exp/ar/best-valid-loss.pt, exp/nar/best-valid-loss.pt): run ./train.sh first, or pass --checkpoint PATH|vallex" >&2
    exit 2
  fi
  checkpoints=(--checkpoint "${checkpoints[@]}")
fi
echo "$(date '+%F %T') (evaluate.sh) evaluating in $(pwd)"
exec "$PYTHON" -m valle evaluate --output-dir exp/eval "${checkpoints[@]}" "${passed_on[@]}"
