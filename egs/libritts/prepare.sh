#!/usr/bin/env bash
# LibriTTS -> data/tokenized/cuts_{train,dev,test}.jsonl.gz (dev-clean -> dev, test-clean -> test).
#   ./prepare.sh --dataset-parts "dev-clean test-clean train-clean-100"
# Working folder: download/ and data/ are relative to the folder you run this from, as every recipe script
# does; run train.sh from the same folder. No activated environment is needed (../shared/env.sh finds it).
# Each stage below (and in ../shared/prepare_stages.sh: 1-4, shared by every recipe) is one command you can also
# run by hand. A stage that finished leaves data/.<stage>.done holding its options; a rerun skips it unless they
# changed (valle/data/stages.py). Every option is checked before anything runs (valle/data/options.py).
# One run at a time per data folder: a second one refuses, naming the run that holds it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../shared/env.sh"  # $PYTHON, log, check_options, take_data_lock

stage=-1                   # first stage to run: -1 download, 0 scan, 1 normalize, 2 check, 3 codes, 4 text, 5 split
stop_stage=5               # last stage to run
# every preparation option with its default and help (--dataset-parts, --language, --data-dir, ...):
# valle/data/options.py
PREPARE_OPTIONS=$("$PYTHON" -m valle.data.options --shell libritts)
eval "$PREPARE_OPTIONS"
num_jobs=4                 # parallel processes of the normalize stage (LibriTTS is large)

help_message="usage: $0 [--dataset-parts \"dev-clean test-clean train-clean-100\"] [--download-dir download] [options]
Writes --download-dir and --data-dir in the folder it is run from; stages: -1 download, 0 scan, 1 normalize,
2 check, 3 codes, 4 text, 5 split."
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"
read -r -a parts <<< "$dataset_parts"
check_options libritts
take_data_lock

if [ "$stage" -le -1 ] && [ "$stop_stage" -ge -1 ]; then
  # download with lhotse (needs internet) the parts not already in download/LibriTTS
  "$PYTHON" -m valle prepare download-libritts --download-dir "$download_dir" --parts "${parts[@]}"
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  # read the parts (wav + .normalized.txt; anything else -> rejected.tsv) -> data/manifests/entries_<part>.jsonl
  "$PYTHON" -m valle prepare libritts --corpus-dir "$download_dir/LibriTTS" --parts "${parts[@]}" \
    --data-dir "$data_dir"
fi

# stages 1 normalize, 2 check, 3 codes, 4 text, 5 split: the same in every recipe
. "$(dirname "${BASH_SOURCE[0]}")/../shared/prepare_stages.sh"
