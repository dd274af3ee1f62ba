#!/usr/bin/env bash
# The stages every prepare.sh shares, sourced after its options are parsed and its stage 0 (the corpus ->
# data_dir/manifests/entries_<part>.jsonl) is defined:
#   stage 1: normalize   every file checked, downmixed to mono, resampled to 24 kHz; rejected.tsv, summary
#   stage 2: codes       Encodec 24 kHz codes (resumable)
#   stage 3: text        text tokens (g2p failures -> rejected.tsv)
#   stage 4: split       cuts_{train,dev,test}.jsonl.gz
# A stage that finished leaves data_dir/.<name>.done holding its options; a rerun skips it unless the
# options changed. A stage that runs removes its own marker first, and those of the stages after it once it
# has finished (so a run that fails early, e.g. on a mistyped path, leaves the later markers alone).
# Working folder: data_dir (default data/) is relative to the folder the script is run from.

. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
STAGE_NAMES=(corpus normalize codes text split)

log() {
  echo "$(date '+%F %T') ($(basename "$0")) $*"
}

# take_data_lock: one preparation at a time per data folder (valle/locks.py: a flock on data_dir/.lock, which the
# kernel releases when the last process holding it ends, however it ends). This shell opens the lock file as
# descriptor 9 and a short Python helper locks that open file; every command the script runs inherits it, and
# VALLE_LOCK_FD=9 tells the stage CLIs that the lock they take is already theirs (a child flock-ing the file anew
# would refuse itself). A second run stops here, saying who holds the folder. A script exec'd by another that
# holds the lock (egs/mini) keeps the inherited descriptor.
take_data_lock() {
  mkdir -p "$data_dir"
  if [ "${VALLE_LOCK_FD:-}" != 9 ] || ! [ /dev/fd/9 -ef "$data_dir/.lock" ]; then
    exec 9<>"$data_dir/.lock"
  fi
  "$PYTHON" -m valle.locks 9 "$data_dir" "data preparation" "$recipe_command" || exit 2
  export VALLE_LOCK_FD=9
}

# stage_todo N SIGNATURE DESCRIPTION: true when stage N is selected and not already done with SIGNATURE
stage_todo() {
  local n=$1 signature=$2 marker="$data_dir/.${STAGE_NAMES[$1]}.done"
  if [ "$stage" -gt "$n" ] || [ "$stop_stage" -lt "$n" ]; then
    return 1
  fi
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$signature" ]; then
    log "stage $n (${STAGE_NAMES[$n]}): done before with the same options, skipping (delete $marker to redo)"
    return 1
  fi
  log "stage $n (${STAGE_NAMES[$n]}): $3"
  rm -f "$marker"
  return 0
}

# stage_done N SIGNATURE: stage N finished with SIGNATURE; the stages after it must run again
stage_done() {
  local later
  for later in "${STAGE_NAMES[@]:$(($1 + 1))}"; do
    rm -f "$data_dir/.$later.done"
  done
  echo "$2" > "$data_dir/.${STAGE_NAMES[$1]}.done"
}

run_shared_stages() {
  local sig
  sig="min_duration=$min_duration max_duration=$max_duration silence_db=$silence_db"
  if stage_todo 1 "$sig" "validate, downmix to mono, resample to 24 kHz -> $data_dir/manifests/cuts_*.jsonl.gz"; then
    "$PYTHON" "$VALLE_BIN/prepare_corpus.py" normalize --data-dir "$data_dir" --min-duration "$min_duration" \
      --max-duration "$max_duration" --silence-db "$silence_db" --num-jobs "$num_jobs"
    stage_done 1 "$sig"
  fi
  sig="codec_weights=$codec_weights"
  if stage_todo 2 "$sig" "Encodec codes ($codec_weights weights) -> $data_dir/tokenized/codes_*.h5"; then
    "$PYTHON" "$VALLE_BIN/compute_codes.py" --data-dir "$data_dir" --codec-weights "$codec_weights" \
      --device "$device" --batch-seconds "$batch_seconds"
    stage_done 2 "$sig"
  fi
  sig="tokenizer=$tokenizer language=$language symbols=$symbols"
  if stage_todo 3 "$sig" "text tokens ($tokenizer, $language) -> $data_dir/tokenized/text_tokenizer.json"; then
    "$PYTHON" "$VALLE_BIN/compute_text_tokens.py" --data-dir "$data_dir" --tokenizer "$tokenizer" --language "$language" \
      ${symbols:+--symbols "$symbols"}
    stage_done 3 "$sig"
  fi
  sig="dev_ratio=$dev_ratio test_ratio=$test_ratio seed=$seed heldout_speakers=$heldout_speakers"
  if stage_todo 4 "$sig" "split -> $data_dir/tokenized/cuts_{train,dev,test}.jsonl.gz"; then
    "$PYTHON" "$VALLE_BIN/split_cuts.py" --data-dir "$data_dir" --dev-ratio "$dev_ratio" --test-ratio "$test_ratio" \
      --seed "$seed" --heldout-speakers "$heldout_speakers"
    stage_done 4 "$sig"
  fi
}
