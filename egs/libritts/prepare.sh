#!/usr/bin/env bash
# LibriTTS -> data/tokenized/cuts_{train,dev,test}.jsonl.gz (dev-clean -> dev, test-clean -> test).
#   ./prepare.sh --dataset-parts "dev-clean test-clean train-clean-100"
# Working folder: download/ and data/ are relative to the folder you run this from, as every recipe script
# does; run train.sh from the same folder. No activated environment is needed (../shared/env.sh finds it).
# Stages: -1 download (lhotse, needs internet; skipped for parts already in download/LibriTTS),
#          0 lhotse manifests, then normalize, Encodec codes, text tokens, split (--help lists them).
# Options and their defaults: valle/data/options.py (--help lists them all).
# One run at a time per data folder: a second one refuses, naming the run that holds it.
set -euo pipefail
# the stage list, every preparation option with its default (--dataset-parts, --language, --data-dir, ...) and
# the stages
. "$(dirname "${BASH_SOURCE[0]}")/../shared/prepare_stages.sh" libritts

stage=-1                   # first stage to run (-1 download, then the stages above)
stop_stage=4               # last stage to run
num_jobs=4                 # parallel processes for the lhotse manifests and the normalize stage (LibriTTS is large)

help_message="usage: $0 [--dataset-parts \"dev-clean test-clean train-clean-100\"] [--download-dir download] [options]
Writes --download-dir and --data-dir in the folder it is run from; stages: -1 download, $(stage_list)."
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"
read -r -a parts <<< "$dataset_parts"
# inputs are checked before anything in data_dir changes (markers included)
if [ "$stage" -eq 0 ] && [ "$stop_stage" -ge 0 ]; then
  for part in "${parts[@]}"; do
    if [ ! -d "$download_dir/LibriTTS/$part" ]; then
      echo "error: $download_dir/LibriTTS/$part not found: run stage -1 (download) or pass the --download-dir that holds LibriTTS/ (nothing in $data_dir was changed)" >&2
      exit 2
    fi
  done
fi
take_data_lock

if [ "$stage" -le -1 ] && [ "$stop_stage" -ge -1 ]; then
  missing=()
  for part in "${parts[@]}"; do
    [ -d "$download_dir/LibriTTS/$part" ] || missing+=("$part")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "stage -1 (download): LibriTTS ${missing[*]} -> $download_dir/LibriTTS"
    "$PYTHON" "$VALLE_BIN/prepare_corpus.py" download-libritts --download-dir "$download_dir" --parts "${missing[@]}"
  else
    log "stage -1 (download): every part is in $download_dir/LibriTTS, skipping"
  fi
fi
sig="libritts=$(realpath -m "$download_dir") parts=$dataset_parts"  # the corpus stage's signature is the recipe's own
if stage_todo 0 "$sig" "lhotse manifests of LibriTTS $dataset_parts"; then
  rm -f "$data_dir"/manifests/entries_*.jsonl
  "$PYTHON" "$VALLE_BIN/prepare_corpus.py" libritts --corpus-dir "$download_dir/LibriTTS" --parts "${parts[@]}" \
    --data-dir "$data_dir" --num-jobs "$num_jobs"
  stage_done 0 "$sig"
fi
run_shared_stages
log "done: $data_dir/tokenized/cuts_{train,dev,test}.jsonl.gz"
