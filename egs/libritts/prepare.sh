#!/usr/bin/env bash
# LibriTTS -> data/tokenized/cuts_{train,dev,test}.jsonl.gz (dev-clean -> dev, test-clean -> test).
#   ./prepare.sh --dataset-parts "dev-clean test-clean train-clean-100"
# Working folder: download/ and data/ are relative to the folder you run this from, as every recipe script
# does; run train.sh from the same folder. No activated environment is needed (../shared/env.sh finds it).
# Each stage below is one command you can also run by hand. A stage that finished leaves data/.<stage>.done
# holding its options; a rerun skips it unless they changed (valle/data/stages.py).
# One run at a time per data folder: a second one refuses, naming the run that holds it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../shared/env.sh"  # $PYTHON, $VALLE_BIN, log, take_data_lock

stage=-1                   # first stage to run: -1 download, 0 scan, 1 normalize, 2 check, 3 codes, 4 text, 5 split
stop_stage=5               # last stage to run
# every preparation option with its default and help (--dataset-parts, --language, --data-dir, ...):
# valle/data/options.py
PREPARE_OPTIONS=$("$PYTHON" -m valle.data.options --shell libritts)
eval "$PREPARE_OPTIONS"
num_jobs=4                 # parallel processes for the lhotse manifests and the normalize stage (LibriTTS is large)

help_message="usage: $0 [--dataset-parts \"dev-clean test-clean train-clean-100\"] [--download-dir download] [options]
Writes --download-dir and --data-dir in the folder it is run from; stages: -1 download, 0 scan, 1 normalize,
2 codes, 3 text, 4 split."
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"
read -r -a parts <<< "$dataset_parts"
take_data_lock

if [ "$stage" -le -1 ] && [ "$stop_stage" -ge -1 ]; then
  # download with lhotse (needs internet) the parts not already in download/LibriTTS
  "$PYTHON" "$VALLE_BIN/prepare_corpus.py" download-libritts --download-dir "$download_dir" --parts "${parts[@]}"
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  # lhotse manifests of the parts -> data/manifests/entries_<part>.jsonl
  "$PYTHON" "$VALLE_BIN/prepare_corpus.py" libritts --corpus-dir "$download_dir/LibriTTS" --parts "${parts[@]}" \
    --data-dir "$data_dir" --num-jobs "$num_jobs"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  # check every file, downmix to mono, resample to 24 kHz -> data/manifests/cuts_<part>.jsonl.gz, rejected.tsv
  "$PYTHON" "$VALLE_BIN/prepare_corpus.py" normalize --data-dir "$data_dir" --min-duration "$min_duration" \
    --max-duration "$max_duration" --silence-db "$silence_db" --loudness-normalize "$loudness_normalize" \
    --num-jobs "$num_jobs"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  # flag suspect files (listed, not removed unless --drop-flagged), minutes per speaker, a verdict
  # -> data/check.html, data/check.json; the transcripts too with --check-asr pocketsphinx (slower)
  "$PYTHON" -m valle.commands.check_data --data-dir "$data_dir" --language "$language" --check-asr "$check_asr" \
    --drop-flagged "$drop_flagged"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  # Encodec 24 kHz codes (resumable) -> data/tokenized/codes_<part>.h5
  # in --num-workers shards at once; with --num-gpus > 1 under torchrun, one process per GPU running as many
  torchrun=()
  if [ "$num_gpus" -gt 1 ]; then torchrun=(-m torch.distributed.run --standalone --nproc-per-node "$num_gpus"); fi
  "$PYTHON" "${torchrun[@]}" "$VALLE_BIN/compute_codes.py" --data-dir "$data_dir" --codec-weights "$codec_weights" \
    --device "$device" --batch-seconds "$batch_seconds" --num-workers "$num_workers"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  # text tokens (g2p failures -> rejected.tsv) -> data/tokenized/cuts_<part>_text.jsonl.gz
  "$PYTHON" "$VALLE_BIN/compute_text_tokens.py" --data-dir "$data_dir" --tokenizer "$tokenizer" \
    --language "$language" ${symbols:+--symbols "$symbols"}
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  # dev-* parts -> dev, test-* -> test, the rest -> train: data/tokenized/cuts_{train,dev,test}.jsonl.gz
  "$PYTHON" "$VALLE_BIN/split_cuts.py" --data-dir "$data_dir" --dev-ratio "$dev_ratio" --test-ratio "$test_ratio" \
    --seed "$seed" --heldout-speakers "$heldout_speakers"
  if [ "$format" = shar ]; then
    # lhotse Shar shards of the splits (rewritten from them) -> data/shar/<split>/; train with --shar-dir data/shar
    "$PYTHON" "$VALLE_BIN/export_shar.py" --data-dir "$data_dir" --shar-shard-size "$shar_shard_size" \
      --shar-audio "$shar_audio"
  fi
fi
log "done: $data_dir/tokenized/cuts_{train,dev,test}.jsonl.gz"
if [ -f "$data_dir/check.json" ]; then "$PYTHON" -m valle.commands.check_data --data-dir "$data_dir" --verdict; fi
