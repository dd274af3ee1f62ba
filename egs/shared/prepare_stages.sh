#!/usr/bin/env bash
# What every prepare.sh shares. A recipe sources this first, naming itself:
#   . ../shared/prepare_stages.sh custom
# It finds the environment (env.sh) and reads, in one call of `python -m valle.data.stages --shell RECIPE`
# (no torch: a fraction of a second), the stage list (STAGE_NAMES, STAGE_DOES, STAGE_WRITES, STAGE_OPTIONS),
# every preparation option with its default (valle.data.options: data_dir=data, language=en, ...) and their help
# (OPTION_HELP, which --help lists). The recipe then declares its own options (stage, stop_stage, ...; a default
# that differs on purpose, with a comment saying why), parses the command line, runs its stage 0 (the corpus ->
# data_dir/manifests/entries_<part>.jsonl) and calls run_shared_stages for the others:
#   stage 1: normalize   every file checked, downmixed to mono, resampled to 24 kHz; rejected.tsv, summary
#   stage 2: codes       Encodec 24 kHz codes (resumable)
#   stage 3: text        text tokens (g2p failures -> rejected.tsv)
#   stage 4: split       cuts_{train,dev,test}.jsonl.gz
# A stage that finished leaves data_dir/.<name>.done holding its options (STAGE_OPTIONS); a rerun skips it unless
# the options changed. A stage that runs removes its own marker first, and those of the stages after it once it
# has finished (so a run that fails early, e.g. on a mistyped path, leaves the later markers alone).
# Working folder: data_dir (default data/) is relative to the folder the script is run from.

. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
_stages=$("$PYTHON" -m valle.data.stages --shell "$1") || exit 2
eval "$_stages"
unset _stages

log() {
  echo "$(date '+%F %T') ($(basename "$0")) $*"
}

# stage_list: "0 corpus, 1 normalize, ..." for the recipes' --help
stage_list() {
  local n out=""
  for n in "${!STAGE_NAMES[@]}"; do
    out+="${out:+, }$n ${STAGE_NAMES[$n]}"
  done
  echo "$out"
}

# check_language: --language must be a corpus language (valle.config.LANGUAGES)
check_language() {
  local lang
  for lang in "${PREPARE_LANGUAGES[@]}"; do
    [ "$language" = "$lang" ] && return 0
  done
  echo "$0: --language $language: the corpus language must be $PREPARE_LANGUAGES_TEXT" >&2
  exit 2
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

# stage_signature N: what stage N's marker holds, "name=value" of its options (as valle.data.stages.signature)
stage_signature() {
  local name sig=""
  for name in ${STAGE_OPTIONS[$1]}; do
    sig+="${sig:+ }$name=${!name}"
  done
  echo "$sig"
}

# stage_todo N SIGNATURE [DETAIL]: true when stage N is selected and not already done with SIGNATURE
stage_todo() {
  local n=$1 signature=$2 marker="$data_dir/.${STAGE_NAMES[$1]}.done"
  if [ "$stage" -gt "$n" ] || [ "$stop_stage" -lt "$n" ]; then
    return 1
  fi
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$signature" ]; then
    log "stage $n (${STAGE_NAMES[$n]}): done before with the same options, skipping (delete $marker to redo)"
    return 1
  fi
  log "stage $n (${STAGE_NAMES[$n]}): ${STAGE_DOES[$n]}${3:+ ($3)} -> $data_dir/${STAGE_WRITES[$n]}"
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
  sig=$(stage_signature 1)
  if stage_todo 1 "$sig"; then
    "$PYTHON" "$VALLE_BIN/prepare_corpus.py" normalize --data-dir "$data_dir" --min-duration "$min_duration" \
      --max-duration "$max_duration" --silence-db "$silence_db" --num-jobs "$num_jobs"
    stage_done 1 "$sig"
  fi
  sig=$(stage_signature 2)
  if stage_todo 2 "$sig" "$codec_weights weights"; then
    local launcher=("$PYTHON")  # several GPUs: one torchrun rank each, with --num-workers shards
    [ "$num_gpus" -gt 1 ] && launcher=("$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$num_gpus")
    "${launcher[@]}" "$VALLE_BIN/compute_codes.py" --data-dir "$data_dir" --codec-weights "$codec_weights" \
      --device "$device" --batch-seconds "$batch_seconds" --num-workers "$num_workers"
    stage_done 2 "$sig"
  fi
  sig=$(stage_signature 3)
  if stage_todo 3 "$sig" "$tokenizer, $language"; then
    "$PYTHON" "$VALLE_BIN/compute_text_tokens.py" --data-dir "$data_dir" --tokenizer "$tokenizer" --language "$language" \
      ${symbols:+--symbols "$symbols"}
    stage_done 3 "$sig"
  fi
  sig=$(stage_signature 4)
  if stage_todo 4 "$sig"; then
    "$PYTHON" "$VALLE_BIN/split_cuts.py" --data-dir "$data_dir" --dev-ratio "$dev_ratio" --test-ratio "$test_ratio" \
      --seed "$seed" --heldout-speakers "$heldout_speakers"
    stage_done 4 "$sig"
  fi
  if [ "$format" = shar ] && [ "$stop_stage" -ge 4 ]; then  # written anew from the splits: no marker of its own
    log "Shar shards of $shar_shard_size cuts (audio: $shar_audio) -> $data_dir/shar"
    "$PYTHON" "$VALLE_BIN/export_shar.py" --data-dir "$data_dir" --shar-shard-size "$shar_shard_size" \
      --shar-audio "$shar_audio"
  fi
}
