#!/usr/bin/env bash
# Your own recordings -> data/tokenized/cuts_{train,dev,test}.jsonl.gz, ready for ./train.sh.
#   ./prepare.sh --corpus /path/to/folder_or_metadata.txt --language en
# Working folder: data/ (--data-dir) is written in the folder you run this from, as every recipe script does;
# run train.sh from the same folder. No activated environment is needed (../shared/env.sh finds it).
# --corpus: a folder of audio files (.wav .flac .mp3 .ogg, any rate, mono or stereo) each with a same-stem
#   transcript (.txt, .lab or .normalized.txt), speaker = parent folder name (symlinked folders are followed);
#   or a metadata file of `path|text` / `path|text|speaker` lines (paths relative to the file), or LJSpeech
#   `id|text|normalized` (an id without extension is read from wavs/ID.wav). A line with a '|' inside its text
#   is reported as ambiguous in data/rejected.tsv, never cut (see the README).
# Stages: 0 read the corpus, 1 normalize, 2 Encodec codes, 3 text tokens, 4 train/dev/test split.
# Reports: data/rejected.tsv (file<TAB>reason), data/conversions.tsv, data/summary.json.
# One run at a time per data folder: a second one refuses, naming the run that holds it.
set -euo pipefail

stage=0                    # first stage to run (0 corpus, 1 normalize, 2 codes, 3 text, 4 split)
stop_stage=4               # last stage to run
corpus=""                  # folder of audio + transcripts, or a metadata file (required for stage 0)
language=en                # language of the transcripts: en, zh or ja
data_dir=data              # output folder, relative to where you run this
codec_weights=pretrained   # Encodec weights: pretrained (downloaded once), random (tests only), or a file path
device=auto                # where Encodec runs: auto (cuda when available), cpu, cuda, cuda:1, ...
batch_seconds=0            # padded audio per Encodec call (longer files go in chunks); 0: 120 on a GPU, 15 on a CPU
tokenizer=vallex           # vallex (fine-tuning the released model) or espeak (training from scratch)
symbols=""                 # espeak only: an existing unique_text_tokens.k2symbols; empty: one built from the corpus
min_duration=0.5           # reject recordings shorter than this many seconds
max_duration=20            # reject recordings longer than this many seconds
silence_db=-60             # reject recordings whose RMS level is below this many dBFS
dev_ratio=0.05             # share of the utterances for the dev set (at least one)
test_ratio=0.05            # share of the utterances for the test set (0 for none)
seed=42                    # seed of the random train/dev/test split
heldout_speakers=""        # space-separated speakers whose utterances all go to test
num_jobs=1                 # parallel processes for the normalize stage

help_message="usage: $0 --corpus DIR_OR_METADATA_FILE [--language en] [--codec-weights pretrained|random|PATH] [options]
Writes --data-dir (default data/) in the folder it is run from; stages 0-4 (see the top of this script)."
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"
case "$language" in
  en|zh|ja) ;;
  *) echo "$0: --language $language: the corpus language must be en, zh or ja" >&2; exit 2 ;;
esac
# inputs are checked before anything in data_dir changes (markers included)
if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ -z "$corpus" ]; then
    echo "$0: --corpus is required (a folder of audio + transcripts, or a metadata file); see --help" >&2
    exit 1
  elif [ ! -e "$corpus" ]; then
    echo "error: --corpus $corpus: no such folder or metadata file (nothing in $data_dir was changed)" >&2
    exit 2
  fi
fi
. "$(dirname "${BASH_SOURCE[0]}")/../shared/prepare_stages.sh"
take_data_lock

sig="corpus=$(realpath -m "${corpus:-none}")"
if stage_todo 0 "$sig" "read $corpus -> $data_dir/manifests/entries_all.jsonl"; then
  "$PYTHON" "$VALLE_BIN/prepare_corpus.py" scan --corpus "$corpus" --data-dir "$data_dir"
  stage_done 0 "$sig"
fi
run_shared_stages
log "done: $data_dir/tokenized/cuts_{train,dev,test}.jsonl.gz"
