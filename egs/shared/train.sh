#!/usr/bin/env bash
# Shared by every recipe's train.sh. Usage (from a recipe folder):
#   ./train.sh --model-name ar|nar|both [--num-gpus N] [--exp-dir exp] [--init-checkpoint vallex|PATH|none]
#              [any flag of bin/trainer.py, see: python ../../bin/trainer.py --help]
# Each half trains in EXP_DIR/<model-name>. The NAR starts from EXP_DIR/ar/best-valid-loss.pt when it exists
# (so the final NAR checkpoint holds both fine-tuned halves), else from the recipe's default checkpoint.
# Several GPUs on one node: --num-gpus N (torchrun). Several nodes: see the README.
set -euo pipefail

PYTHON=${PYTHON:-python3}
TRAINER="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/bin/trainer.py"

model_name=ar
num_gpus=1
exp_dir=exp
init_checkpoint=""
default_init=auto
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model-name) model_name=$2; shift 2 ;;
    --num-gpus) num_gpus=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    --init-checkpoint) init_checkpoint=$2; shift 2 ;;
    --default-init) default_init=$2; shift 2 ;;
    -h|--help) exec "$PYTHON" "$TRAINER" --help ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ -z "$init_checkpoint" ]; then
  if [ "$model_name" = nar ] && [ -f "$exp_dir/ar/best-valid-loss.pt" ]; then
    init_checkpoint="$exp_dir/ar/best-valid-loss.pt"
  else
    init_checkpoint=$default_init
  fi
fi

echo "$(date '+%F %T') training $model_name from $init_checkpoint into $exp_dir/$model_name on $num_gpus process(es)"
if [ "$num_gpus" -gt 1 ]; then
  launcher=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$num_gpus")
else
  launcher=("$PYTHON")
fi
exec "${launcher[@]}" "$TRAINER" --model-name "$model_name" --exp-dir "$exp_dir/$model_name" \
  --init-checkpoint "$init_checkpoint" "${args[@]}"
