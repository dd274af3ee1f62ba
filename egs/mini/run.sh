#!/usr/bin/env bash
# The whole chain, offline, on the mini corpus: prepare -> fine-tune AR -> fine-tune NAR -> synthesize -> curves.
# (`make demo` runs this.) Random Encodec weights: the wav is noise-like by design; the point is the pipeline.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

./prepare.sh
./train.sh --model-name ar "$@"
./train.sh --model-name nar "$@"
text="The fine tuned model speaks this sentence."
"$PYTHON" ../../bin/infer.py --checkpoint exp/nar/best-valid-loss.pt --text "$text" --language en \
  --codec-weights random --output exp/demo.wav --save-codes exp/demo_codes.npy --seed 0
"$PYTHON" ../../bin/plot_curves.py exp --output exp/curves.png

echo
echo "demo finished:"
echo "  synthesized wav:   $(pwd)/exp/demo.wav"
echo "  training curves:   $(pwd)/exp/curves.png"
echo "  tensorboard logs:  tensorboard --logdir $(pwd)/exp"
