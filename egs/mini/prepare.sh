#!/usr/bin/env bash
# The offline demo data: generate the mini corpus with espeak-ng (once), then run the custom recipe on it
# with random Encodec weights (no download; codes are meaningless, the pipeline is real).
#   ./prepare.sh [--corpus-dir corpus] [--data-dir data] [--per-speaker 10] [any ../custom/prepare.sh option]
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

corpus_dir=corpus
data_dir=data
per_speaker=10
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --per-speaker) per_speaker=$2; shift 2 ;;
    -h|--help) sed -n '2,4p' "$0"; exec ../custom/prepare.sh --help ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ -f "$corpus_dir/.complete" ]; then
  echo "$(date '+%F %T') (prepare.sh) mini corpus: $corpus_dir exists, not regenerated ($(cat "$corpus_dir/.complete"))"
else
  echo "$(date '+%F %T') (prepare.sh) mini corpus: generating $corpus_dir with espeak-ng"
  "$PYTHON" make_corpus.py --output "$corpus_dir" --per-speaker "$per_speaker"
fi
exec ../custom/prepare.sh --corpus "$corpus_dir" --data-dir "$data_dir" --language en --codec-weights random \
  --dev-ratio 0.1 --test-ratio 0.05 "${args[@]}"
