#!/usr/bin/env bash
# LibriTTS -> data/tokenized/cuts_{train,dev,test}.jsonl.gz (dev-clean -> dev, test-clean -> test).
#   ./prepare.sh --dataset-parts "dev-clean test-clean train-clean-100"
# Working folder: download/ and data/ are relative to the folder you run this from, as every recipe script
# does; run train.sh from the same folder. No activated environment is needed (../shared/env.sh finds it).
# Stages: -1 download (lhotse, needs internet; skipped for parts already in download/LibriTTS),
#          0 lhotse manifests, 1 normalize, 2 Encodec codes, 3 text tokens, 4 split.
# One run at a time per data folder: a second one refuses, naming the run that holds it.
set -euo pipefail

stage=-1                   # first stage to run (-1 download, 0 manifests, 1 normalize, 2 codes, 3 text, 4 split)
stop_stage=4               # last stage to run
dataset_parts="dev-clean test-clean train-clean-100"  # LibriTTS parts (dev-* -> dev, test-* -> test, the rest -> train)
download_dir=download      # where LibriTTS/ is downloaded and unpacked
language=en                # language of the transcripts
data_dir=data              # output folder, relative to where you run this
codec_weights=pretrained   # Encodec weights: pretrained (downloaded once), random (tests only), or a file path
device=auto                # where Encodec runs: auto (cuda when available), cpu, cuda, cuda:1, ...
batch_seconds=0            # padded audio per Encodec call (longer files go in chunks); 0: 120 on a GPU, 15 on a CPU
tokenizer=vallex           # vallex (fine-tuning the released model) or espeak (training from scratch)
symbols=""                 # espeak only: an existing unique_text_tokens.k2symbols; empty: one built from the corpus
min_duration=0.5           # reject recordings shorter than this many seconds
max_duration=20            # reject recordings longer than this many seconds
silence_db=-60             # reject recordings whose RMS level is below this many dBFS
dev_ratio=0.05             # share of train for dev when no dev-* part is given (at least one utterance)
test_ratio=0.05            # share of train for test when no test-* part is given (0 for none)
seed=42                    # seed of the random split
heldout_speakers=""        # space-separated speakers whose utterances all go to test
num_jobs=4                 # parallel processes for the lhotse manifests and the normalize stage

help_message="usage: $0 [--dataset-parts \"dev-clean test-clean train-clean-100\"] [--download-dir download] [options]
Writes --download-dir and --data-dir in the folder it is run from; stages -1..4 (see the top of this script)."
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
. "$(dirname "${BASH_SOURCE[0]}")/../shared/prepare_stages.sh"
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
sig="libritts=$(realpath -m "$download_dir") parts=$dataset_parts"
if stage_todo 0 "$sig" "lhotse manifests of $dataset_parts -> $data_dir/manifests/entries_*.jsonl"; then
  rm -f "$data_dir"/manifests/entries_*.jsonl
  "$PYTHON" "$VALLE_BIN/prepare_corpus.py" libritts --corpus-dir "$download_dir/LibriTTS" --parts "${parts[@]}" \
    --data-dir "$data_dir" --num-jobs "$num_jobs"
  stage_done 0 "$sig"
fi
run_shared_stages
log "done: $data_dir/tokenized/cuts_{train,dev,test}.jsonl.gz"
