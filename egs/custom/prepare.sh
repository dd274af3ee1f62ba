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
# Stages: 0 read the corpus, then normalize, Encodec codes, text tokens, train/dev/test split (--help lists them).
# Options and their defaults: valle/data/options.py (--help lists them all).
# Reports: data/rejected.tsv (file<TAB>reason), data/conversions.tsv, data/summary.json.
# One run at a time per data folder: a second one refuses, naming the run that holds it.
set -euo pipefail
# the stage list, every preparation option with its default (--corpus, --language, --data-dir, ...) and the stages
. "$(dirname "${BASH_SOURCE[0]}")/../shared/prepare_stages.sh" custom

stage=0                    # first stage to run (see the stages above)
stop_stage=4               # last stage to run

help_message="usage: $0 --corpus DIR_OR_METADATA_FILE [--language en] [--codec-weights pretrained|random|PATH] [options]
Writes --data-dir (default data/) in the folder it is run from; stages: $(stage_list)."
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"
check_language
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
take_data_lock

sig="corpus=$(realpath -m "${corpus:-none}")"  # the corpus stage's signature is the recipe's own
if stage_todo 0 "$sig" "$corpus"; then
  "$PYTHON" "$VALLE_BIN/prepare_corpus.py" scan --corpus "$corpus" --data-dir "$data_dir"
  stage_done 0 "$sig"
fi
run_shared_stages
log "done: $data_dir/tokenized/cuts_{train,dev,test}.jsonl.gz"
