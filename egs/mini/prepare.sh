#!/usr/bin/env bash
# The offline demo data: generate the mini corpus with espeak-ng (once), then run the custom recipe on it
# with random Encodec weights (no download; codes are meaningless, the pipeline is real).
#   ./prepare.sh [--corpus-dir corpus] [--data-dir data] [--per-speaker 10] [any ../custom/prepare.sh option]
# Working folder: corpus/ and data/ are relative to the folder you run this from, as every recipe script does.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
. "$here/../shared/prepare_stages.sh" mini  # the environment, the option defaults (data_dir=data, ...), the lock

corpus_dir=corpus
per_speaker=10
# The demo's values, which differ from the defaults on purpose: random Encodec weights (offline: no download; the
# codes are meaningless, the pipeline is real) and a larger dev share (the corpus is tiny). Later flags override.
demo=(--language en --codec-weights random --dev-ratio 0.1 --test-ratio 0.05)
args=()
recipe_command="$0 $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --per-speaker) per_speaker=$2; shift 2 ;;
    -h|--help)
      sed -n '2,5p' "$0"
      echo "options of this script:"
      echo "  --corpus-dir         where the generated mini corpus goes (default: corpus)"
      echo "  --data-dir           output folder of the custom recipe (default: $data_dir)"
      echo "  --per-speaker        utterances per espeak-ng voice (default: 10)"
      echo "and those of ../custom/prepare.sh, which this runs with ${demo[*]}:"
      exec "$here/../custom/prepare.sh" --help ;;
    *) args+=("$1"); shift ;;
  esac
done
take_data_lock  # before the corpus is made: two demo runs in one folder do not generate it at once

if [ -f "$corpus_dir/.complete" ]; then
  log "mini corpus: $corpus_dir exists, not regenerated ($(cat "$corpus_dir/.complete"))"
else
  log "mini corpus: generating $corpus_dir with espeak-ng"
  "$PYTHON" "$here/make_corpus.py" --output "$corpus_dir" --per-speaker "$per_speaker"
fi
exec "$here/../custom/prepare.sh" --corpus "$corpus_dir" --data-dir "$data_dir" "${demo[@]}" "${args[@]}"
