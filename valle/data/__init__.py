"""Data preparation (corpus -> validated mono 24 kHz cuts -> codes + text tokens -> splits) and training data."""
