#!/usr/bin/env bash
# Fine-tune the released VALL-E X checkpoint on data/tokenized (made by ./prepare.sh):
#   ./train.sh --model-name ar     then     ./train.sh --model-name nar
# Add --num-gpus N for several GPUs, or any bin/trainer.py flag (python ../../bin/trainer.py --help).
set -euo pipefail
cd "$(dirname "$0")"
exec ../shared/train.sh --manifest-dir data/tokenized --max-duration 40 --valid-interval 200 --early-stop-patience 5 "$@"
