#!/usr/bin/env bash
# Train on the mini demo corpus (data/tokenized in the current folder) from a tiny random checkpoint
# (d 64, 4 heads, 2 layers, written to exp/init-tiny.pt): a CPU runs it in minutes.
#   ./train.sh --model-name ar     then     ./train.sh --model-name nar
set -euo pipefail
export VALLE_PROG=${VALLE_PROG:-$0}
. "$(dirname "$0")/../shared/env.sh"
passed_on=()               # every option goes on to ../shared/train.sh
. "$(dirname "$0")/../shared/parse_options.sh"
if ! passed_on_value --help >/dev/null && [ ! -f exp/init-tiny.pt ]; then
  "$PYTHON" -m valle init-checkpoint --output exp/init-tiny.pt --d-model 64 --nhead 4 --num-layers 2 --seed 0
fi
exec "$(dirname "$0")/../shared/train.sh" --default-init exp/init-tiny.pt --manifest-dir data/tokenized --device cpu \
  --max-duration 30 --num-buckets 2 --valid-interval 25 --save-every-n 50 --log-interval 5 --num-workers 0 \
  --adapter none --base-lr 0.05 --warmup-steps 20 --num-epochs 1000 --max-steps 150 "${passed_on[@]}"
