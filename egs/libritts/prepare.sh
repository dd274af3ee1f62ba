#!/usr/bin/env bash
# LibriTTS -> data/tokenized/cuts_{train,dev,test}.jsonl.gz (dev-clean -> dev, test-clean -> test).
#   ./prepare.sh --dataset-parts "dev-clean test-clean train-clean-100"
# Stages: -1 download (lhotse, needs internet; skipped for parts already in download/LibriTTS),
#          0 lhotse manifests, 1 normalize, 2 Encodec codes, 3 text tokens, 4 split.
set -euo pipefail

stage=-1
stop_stage=4
dataset_parts="dev-clean test-clean train-clean-100"
download_dir=download
language=en
data_dir=data
codec_weights=pretrained
device=auto
batch_seconds=0  # 0: 120 on a GPU, 15 on a CPU
tokenizer=vallex
symbols=""  # espeak only: an existing unique_text_tokens.k2symbols (default: built from the corpus)
min_duration=0.5
max_duration=20
silence_db=-60
dev_ratio=0.05
test_ratio=0.05
seed=42
heldout_speakers=""
num_jobs=4

help_message="usage: $0 [--dataset-parts \"dev-clean test-clean train-clean-100\"] [--download-dir download] [options]"
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../shared/prepare_stages.sh"
mkdir -p "$data_dir"
read -r -a parts <<< "$dataset_parts"

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
sig="libritts=$(realpath -m "$download_dir") parts=$dataset_parts"
if stage_todo 0 "$sig" "lhotse manifests of $dataset_parts -> $data_dir/manifests/entries_*.jsonl"; then
  rm -f "$data_dir"/manifests/entries_*.jsonl
  "$PYTHON" "$VALLE_BIN/prepare_corpus.py" libritts --corpus-dir "$download_dir/LibriTTS" --parts "${parts[@]}" \
    --data-dir "$data_dir" --num-jobs "$num_jobs"
  stage_done 0 "$sig"
fi
run_shared_stages
log "done: $data_dir/tokenized/cuts_{train,dev,test}.jsonl.gz"
