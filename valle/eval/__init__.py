"""Evaluation: speaker similarity, ASR error rates, distances to the ground truth, failure detectors, and the
report (JSON/TSV/HTML/PNG). `valle evaluate` runs it on checkpoints; the trainer runs a small probe
(`--eval-interval`)."""
