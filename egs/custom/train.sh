#!/usr/bin/env bash
# Fine-tune the released VALL-E X checkpoint on data/tokenized, made by ./prepare.sh in the current folder:
#   ./train.sh --model-name ar     then     ./train.sh --model-name nar
# Add --num-gpus N for several GPUs, or any trainer flag (./train.sh --help lists them with this recipe's values).
set -euo pipefail
export VALLE_PROG=${VALLE_PROG:-$0}
# With --codec-weights (the codec the data was prepared with) the evaluation probe runs every 200 steps:
# eval/* series in tensorboard and exp/<half>/best-eval.pt (see docs/evaluation.md, "During training").
passed_on=()               # every option goes on to ../shared/train.sh
. "$(dirname "$0")/../shared/parse_options.sh"
probe=()
if codec=$(passed_on_value --codec-weights) && [ "$codec" != none ]; then
  probe=(--eval-interval 200)
fi
exec "$(dirname "$0")/../shared/train.sh" --manifest-dir data/tokenized --max-duration 40 --valid-interval 200 \
  --early-stop-patience 5 "${probe[@]}" "${passed_on[@]}"
