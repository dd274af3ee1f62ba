#!/usr/bin/env bash
# The offline demo data: generate the mini corpus with espeak-ng (stage -1, once), then run the custom recipe's
# stages 0-5 on it with random Encodec weights (no download; codes are meaningless, the pipeline is real).
#   ./prepare.sh [--corpus-dir corpus] [--data-dir data] [--per-speaker 10] [any ../custom/prepare.sh option]
# Working folder: corpus/ and data/ are relative to the folder you run this from, as every recipe script does.
set -euo pipefail
HERE="$(dirname "${BASH_SOURCE[0]}")"
. "$HERE/../shared/env.sh"  # $PYTHON, log, take_data_lock

stage=-1                   # first stage to run: -1 the mini corpus, then the custom recipe's 0 scan ... 5 split
stop_stage=5               # last stage to run
corpus_dir=corpus          # where the generated mini corpus goes
data_dir=data              # output folder of the custom recipe
per_speaker=10             # utterances per espeak-ng voice
passed_on=()               # the other options go to ../custom/prepare.sh
help_message="usage: $0 [--corpus-dir corpus] [--data-dir data] [--per-speaker 10] [any ../custom/prepare.sh option]"
. "$HERE/../shared/parse_options.sh"
# The demo's values, which differ from the defaults on purpose: random Encodec weights (offline: no download; the
# codes are meaningless, the pipeline is real) and a larger dev share (the corpus is tiny). Later flags override.
demo=(--language en --codec-weights random --dev-ratio 0.1 --test-ratio 0.05)
if passed_on_value --help >/dev/null; then
  print_help
  echo "and those of ../custom/prepare.sh, which this runs with ${demo[*]}:"
  exec "$HERE/../custom/prepare.sh" --help
fi
take_data_lock  # before the corpus is made: two demo runs in one folder do not generate it at once

if [ "$stage" -le -1 ] && [ "$stop_stage" -ge -1 ]; then
  # the mini corpus: 4 espeak-ng voices, many audio formats, 2 bad files (kept when it is complete)
  if [ -f "$corpus_dir/.corpus.done" ]; then
    log "stage -1 (mini corpus): $corpus_dir exists, not regenerated ($(cat "$corpus_dir/.corpus.done"))"
  else
    "$PYTHON" "$HERE/make_corpus.py" --output "$corpus_dir" --per-speaker "$per_speaker"
  fi
fi

# stages 0-4: the custom recipe on the mini corpus, with the demo's values
[ "$stop_stage" -ge 0 ] || exit 0
exec "$HERE/../custom/prepare.sh" --corpus "$corpus_dir" --data-dir "$data_dir" --stage "$((stage < 0 ? 0 : stage))" \
  --stop-stage "$stop_stage" "${demo[@]}" "${passed_on[@]}"
