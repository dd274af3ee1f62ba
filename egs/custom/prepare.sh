#!/usr/bin/env bash
# Your own recordings -> data/tokenized/cuts_{train,dev,test}.jsonl.gz, ready for ./train.sh.
# Run it in this folder (or any folder: data/ is written where you run it):
#   ./prepare.sh --corpus /path/to/folder_or_metadata.txt --language en
# --corpus: a folder of audio files (.wav .flac .mp3 .ogg, any rate, mono or stereo) each with a same-stem
#   transcript (.txt, .lab or .normalized.txt), speaker = parent folder name; or a metadata file of
#   `path|text` / `path|text|speaker` lines (paths relative to the file), or LJSpeech `id|text|normalized`
#   (an id without extension is read from wavs/ID.wav).
# Stages: 0 read the corpus, 1 normalize, 2 Encodec codes, 3 text tokens, 4 train/dev/test split.
# Reports: data/rejected.tsv (file<TAB>reason), data/conversions.tsv, data/summary.json.
set -euo pipefail

stage=0
stop_stage=4
corpus=""
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
num_jobs=1

help_message="usage: $0 --corpus DIR_OR_METADATA_FILE [--language en] [--codec-weights pretrained|random|PATH] [options]"
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../shared/prepare_stages.sh"
case "$language" in
  en|zh|ja) ;;
  *) echo "$0: --language $language: the corpus language must be en, zh or ja" >&2; exit 2 ;;
esac
mkdir -p "$data_dir"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ] && [ -z "$corpus" ]; then
  echo "$0: --corpus is required (a folder of audio + transcripts, or a metadata file); see --help" >&2
  exit 1
fi
sig="corpus=$(realpath -m "${corpus:-none}")"
if stage_todo 0 "$sig" "read $corpus -> $data_dir/manifests/entries_all.jsonl"; then
  "$PYTHON" "$VALLE_BIN/prepare_corpus.py" scan --corpus "$corpus" --data-dir "$data_dir"
  stage_done 0 "$sig"
fi
run_shared_stages
log "done: $data_dir/tokenized/cuts_{train,dev,test}.jsonl.gz"
