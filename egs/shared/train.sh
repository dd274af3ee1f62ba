#!/usr/bin/env bash
# Shared by every recipe's train.sh. Run it from the folder that holds data/ (where prepare.sh ran):
# data/tokenized is read and EXP_DIR (default exp/) is written in the current folder, as in icefall.
# Each half trains in EXP_DIR/<model-name>. The NAR starts from EXP_DIR/ar/best-valid-loss.pt when it exists
# (so the final NAR checkpoint holds both fine-tuned halves), else from the recipe's default checkpoint.
# With adapters (--adapter lora, or chosen from the data) each half trains adapters on the base checkpoint (the
# trainer starts NAR adapters on the base of the AR run's adapters): infer with --checkpoint BASE
# --adapter DIR/ar/best-valid-loss.pt DIR/nar/best-valid-loss.pt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
TRAINER=(-m valle train)
export VALLE_PROG=${VALLE_PROG:-$0}  # the name the trainer's --help and errors use

model_name=ar              # the half to train: ar, nar or both
num_gpus=1                 # GPUs of this node; above 1 the trainer runs under torchrun with DDP
num_nodes=1                # machines; above 1 torchrun's c10d rendezvous at master_addr:master_port joins them
node_rank=0                # this machine's number, 0 .. num_nodes-1
master_addr=127.0.0.1      # the machine of node 0, reachable from every node
master_port=29500          # a free TCP port there, for the rendezvous
exp_dir=exp                # experiments folder; each half goes to EXP_DIR/<model-name>
init_checkpoint=""         # vallex | PATH | none | auto; empty: the AR run for the NAR, else default_init
default_init=auto          # the recipe's starting checkpoint
ignore_ar_run=false        # let a NAR run start elsewhere although EXP_DIR/ar/best-valid-loss.pt exists
passed_on=()               # the trainer's options
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"

if passed_on_value --help >/dev/null; then
  cat <<HELP
usage: $VALLE_PROG --model-name ar|nar|both [--num-gpus N] [--num-nodes N --node-rank R --master-addr HOST
       --master-port P] [--exp-dir DIR] [--init-checkpoint X] [trainer options]

Run it from the folder where ./prepare.sh wrote data/: it reads data/tokenized there and writes DIR/<model-name>.
Recipe options (values in effect):
  --model-name ar|nar|both   the half to train (now: $model_name)
  --num-gpus N               GPUs of this node; above 1 the trainer runs under torchrun with DDP (now: $num_gpus)
  --num-nodes N              machines; above 1 run this script on each, with the same --master-addr/--master-port,
                             --exp-dir on a shared disk, and torchrun's c10d rendezvous starts them (now: $num_nodes)
  --node-rank R              this machine's number, 0 .. N-1 (now: $node_rank)
  --master-addr HOST         the machine of node 0, reachable from every node (now: $master_addr)
  --master-port P            a free TCP port there, for the rendezvous (now: $master_port)
  --exp-dir DIR              experiments folder; each half goes to DIR/<model-name> (now: $exp_dir)
  --init-checkpoint X        vallex | PATH | none | auto (now: ${init_checkpoint:-not given: for the NAR DIR/ar/best-valid-loss.pt
                             when it exists, else $default_init})
  --ignore-ar-run true       let a NAR run start elsewhere although DIR/ar/best-valid-loss.pt exists (now: $ignore_ar_run)

Trainer options (defaults shown are the values this recipe passes):
HELP
  "$PYTHON" "${TRAINER[@]}" "${passed_on[@]}" | sed -n '/^options:/,$p'
  exit 0
fi

adapter=$(passed_on_value --adapter) || adapter=none
ar_best="$exp_dir/ar/best-valid-loss.pt"
if [ "$adapter" != none ]; then  # adapters: every half on the base (the AR run's file holds adapters only)
  init_checkpoint=${init_checkpoint:-$default_init}
elif [ -z "$init_checkpoint" ]; then
  if [ "$model_name" = nar ] && [ -f "$ar_best" ]; then
    init_checkpoint=$ar_best
  else
    init_checkpoint=$default_init
  fi
elif [ "$model_name" = nar ] && [ -f "$ar_best" ] && [ "$init_checkpoint" != "$ar_best" ] && [ "$ignore_ar_run" != true ]; then
  echo "$VALLE_PROG: error: $ar_best holds your AR run, but --init-checkpoint $init_checkpoint starts the NAR elsewhere and its checkpoints would not hold that AR: leave out --init-checkpoint to start from it, or pass --ignore-ar-run true" >&2
  exit 2
fi

echo "$(date '+%F %T') training $model_name from $init_checkpoint into $exp_dir/$model_name on $num_nodes node(s) x $num_gpus process(es)"
if [ "$num_nodes" -gt 1 ]; then  # every node runs this; the c10d rendezvous at master-addr:master-port joins them
  launcher=("$PYTHON" -m torch.distributed.run --nnodes "$num_nodes" --node-rank "$node_rank"
            --nproc-per-node "$num_gpus" --rdzv-backend c10d --rdzv-endpoint "$master_addr:$master_port"
            --rdzv-id "valle-$model_name")
elif [ "$num_gpus" -gt 1 ]; then
  launcher=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$num_gpus")
else
  launcher=("$PYTHON")
fi
exec "${launcher[@]}" "${TRAINER[@]}" --model-name "$model_name" --exp-dir "$exp_dir/$model_name" \
  --init-checkpoint "$init_checkpoint" "${passed_on[@]}"
