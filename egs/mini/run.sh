#!/usr/bin/env bash
# The whole chain, offline, on the mini corpus: prepare -> fine-tune AR -> fine-tune NAR -> synthesize -> curves.
# (`make demo` runs this.) Random Encodec weights: the wav is noise-like by design; the point is the pipeline.
# Like every recipe script it works in the folder it is run from (corpus/, data/ and exp/ go there).
# A rerun keeps the prepared data and trains again from the start (--overwrite true): curves of one run only.
set -euo pipefail
here="$(dirname "$0")"
. "$here/../shared/env.sh"

"$here/prepare.sh"
"$here/train.sh" --model-name ar --overwrite true "$@"
"$here/train.sh" --model-name nar --overwrite true "$@"
text="The fine tuned model speaks this sentence."
"$PYTHON" -m valle infer --checkpoint exp/nar/best-valid-loss.pt --text "$text" --language en \
  --codec-weights random --output exp/demo.wav --save-codes exp/demo_codes.npy --seed 0
"$PYTHON" -m valle plot-curves exp --output exp/curves.png

echo
echo "demo finished:"
echo "  synthesized wav:   $(pwd)/exp/demo.wav"
echo "  training curves:   $(pwd)/exp/curves.png"
echo "  tensorboard logs:  $VALLE_ENV_BIN/tensorboard --logdir $(pwd)/exp"

# Evaluation of the demo checkpoints: report.html flags every output as noise (the codec is random), not the ground truth.
"$here/evaluate.sh"
echo "  evaluation report: $(pwd)/exp/eval/report.html"
