#!/usr/bin/env bash
# Fine-tune the released VALL-E X checkpoint on data/tokenized, made by ./prepare.sh in the current folder:
#   ./train.sh --model-name ar     then     ./train.sh --model-name nar
# Add --num-gpus N for several GPUs, or any trainer flag (./train.sh --help lists them with this recipe's values).
set -euo pipefail
export VALLE_PROG=${VALLE_PROG:-$0}
# The settings no flag gives are chosen from the hours of speech (docs/training.md, "Settings from the data").
exec "$(dirname "$0")/../shared/train.sh" --manifest-dir data/tokenized --max-duration 80 "$@"
