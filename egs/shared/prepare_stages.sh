#!/usr/bin/env bash
# Stages 1-5 of every recipe's prepare.sh, written once: sourced by egs/custom/prepare.sh and
# egs/libritts/prepare.sh after their own stages (-1 and 0, which read the corpus), with the options they set
# ($stage, $stop_stage, $data_dir, ... from valle/data/options.py). Each block is one command you can also run
# by hand; a stage that finished leaves $data_dir/.<stage>.done and a rerun skips it unless its options changed.

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  # check every file, downmix to mono, resample to 24 kHz -> data/manifests/cuts_<part>.jsonl.gz, rejected.tsv
  "$PYTHON" -m valle prepare normalize --data-dir "$data_dir" --min-duration "$min_duration" \
    --max-duration "$max_duration" --silence-db "$silence_db" --loudness-normalize "$loudness_normalize" \
    --num-jobs "$num_jobs"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  # flag suspect files (listed, not removed unless --drop-flagged), minutes per speaker, a verdict
  # -> data/check.html, data/check.json; English transcripts aligned to their audio (--check-asr auto)
  "$PYTHON" -m valle check-data --data-dir "$data_dir" --language "$language" --check-asr "$check_asr" \
    --drop-flagged "$drop_flagged"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  # Encodec 24 kHz codes (resumable) -> data/tokenized/codes_<part>.h5
  # in --num-workers shards at once; with --num-gpus > 1 under torchrun, one process per GPU running as many
  torchrun=()
  if [ "$num_gpus" -gt 1 ]; then torchrun=(-m torch.distributed.run --standalone --nproc-per-node "$num_gpus"); fi
  "$PYTHON" "${torchrun[@]}" -m valle prepare codes --data-dir "$data_dir" --codec-weights "$codec_weights" \
    --device "$device" --batch-seconds "$batch_seconds" --num-workers "$num_workers"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  # text tokens (g2p failures -> rejected.tsv) -> data/tokenized/cuts_<part>_text.jsonl.gz
  "$PYTHON" -m valle prepare text-tokens --data-dir "$data_dir" --tokenizer "$tokenizer" \
    --language "$language" ${symbols:+--symbols "$symbols"}
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  # train/dev/test split (a corpus's dev-* parts -> dev, test-* -> test, the rest -> train; else --dev-ratio and
  # --test-ratio of the utterances) -> data/tokenized/cuts_{train,dev,test}.jsonl.gz
  "$PYTHON" -m valle prepare split --data-dir "$data_dir" --dev-ratio "$dev_ratio" --test-ratio "$test_ratio" \
    --seed "$seed" --heldout-speakers "$heldout_speakers"
  if [ "$format" = shar ]; then
    # lhotse Shar shards of the splits (rewritten from them) -> data/shar/<split>/; train with --shar-dir data/shar
    "$PYTHON" -m valle prepare shar --data-dir "$data_dir" --shar-shard-size "$shar_shard_size" \
      --shar-audio "$shar_audio"
  fi
fi
log "done: $data_dir/tokenized/cuts_{train,dev,test}.jsonl.gz"
if [ -f "$data_dir/check.json" ]; then "$PYTHON" -m valle check-data --data-dir "$data_dir" --verdict; fi
