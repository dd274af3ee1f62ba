#!/usr/bin/env bash
# Your own recordings -> data/tokenized/cuts_{train,dev,test}.jsonl.gz, ready for ./train.sh.
#   ./prepare.sh --corpus /path/to/folder_or_metadata.txt --language en
# Working folder: data/ (--data-dir) is written in the folder you run this from, as every recipe script does;
# run train.sh from the same folder. No activated environment is needed (../shared/env.sh finds it).
# --corpus: a folder of audio files (.wav .flac .mp3 .ogg, any rate, mono or stereo) each with a same-stem
#   transcript (.txt, .lab or .normalized.txt), speaker = parent folder name (symlinked folders are followed);
#   or a metadata file of `path|text` / `path|text|speaker` lines (paths relative to the file), or LJSpeech
#   `id|text|normalized` (an id without extension is read from wavs/ID.wav). A line with a '|' inside its text
#   is reported as ambiguous in data/rejected.tsv, never cut (see docs/data.md).
# Each stage below (and in ../shared/prepare_stages.sh: 1-4, shared by every recipe) is one command you can also
# run by hand. A stage that finished leaves data/.<stage>.done holding its options; a rerun skips it unless they
# changed (valle/data/stages.py). Every option is checked before anything runs (valle/data/options.py).
# Reports: data/rejected.tsv (file<TAB>reason), data/conversions.tsv, data/summary.json.
# One run at a time per data folder: a second one refuses, naming the run that holds it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../shared/env.sh"  # $PYTHON, log, check_options, take_data_lock

stage=-1                   # first stage: -1 segment (--long-recordings only), 0 scan, 1 normalize, 2 check, 3 codes, 4 text, 5 split
stop_stage=5               # last stage to run
# every preparation option with its default and help (--corpus, --language, --data-dir, ...): valle/data/options.py
PREPARE_OPTIONS=$("$PYTHON" -m valle.data.options --shell custom)
eval "$PREPARE_OPTIONS"

help_message="usage: $0 --corpus DIR_OR_METADATA_FILE [--language en] [--codec-weights pretrained|random|PATH] [options]
       $0 --long-recordings DIR_OR_FILE [--keep-speaker ME.wav] [--language en] [options]
Writes --data-dir (default data/) in the folder it is run from; stages: -1 segment (long recordings only), 0 scan,
1 normalize, 2 check, 3 codes, 4 text, 5 split."
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"

# long recordings: their segments (data/segments/metadata.txt, the kept rows) are the corpus
if [ -n "$long_recordings" ]; then
  if [ -n "$corpus" ]; then
    echo "$0: give --corpus or --long-recordings, not both (the long recordings' segments are the corpus)" >&2
    exit 2
  fi
  corpus="$data_dir/segments/metadata.txt"
fi
# inputs are checked before anything in data_dir changes (markers included)
if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ] && [ -z "$corpus" ]; then
  echo "$0: --corpus is required (a folder of audio + transcripts, or a metadata file); see --help" >&2
  exit 1
fi
check_options custom
take_data_lock

if [ "$stage" -le -1 ] && [ "$stop_stage" -ge -1 ] && [ -n "$long_recordings" ]; then
  # long recordings -> segments at pauses, transcribed or aligned to a same-stem .txt, one voice kept
  # -> data/segments/{segments.tsv,review.html,metadata.txt}; your edits of segments.tsv are kept on a rerun
  # (and a changed metadata.txt is scanned again)
  "$PYTHON" -m valle segment "$long_recordings" --out "$data_dir/segments" --language "$language" \
    ${keep_speaker:+--keep-speaker "$keep_speaker"}
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  # read the corpus -> data/manifests/entries_all.jsonl
  "$PYTHON" -m valle prepare scan --corpus "$corpus" --data-dir "$data_dir"
fi

# stages 1 normalize, 2 check, 3 codes, 4 text, 5 split: the same in every recipe
. "$(dirname "${BASH_SOURCE[0]}")/../shared/prepare_stages.sh"
