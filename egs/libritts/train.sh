#!/usr/bin/env bash
# Fine-tune the released VALL-E X checkpoint on data/tokenized (made by ./prepare.sh):
#   ./train.sh --model-name ar     then     ./train.sh --model-name nar
# Add --num-gpus N for several GPUs, or any bin/trainer.py flag (python ../../bin/trainer.py --help).
set -euo pipefail
cd "$(dirname "$0")"
exec ../shared/train.sh --manifest-dir data/tokenized --max-duration 80 --valid-interval 1000 --num-epochs 20 "$@"
