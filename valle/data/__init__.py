"""Data preparation and training data. One module per concern:

sources (folder, metadata, LJSpeech, LibriTTS tree) -> normalize (mono 24 kHz cuts) -> codes (Encodec, HDF5)
-> text_tokens -> split; rejections (rejected.tsv, summary.json), files (whole-file writes, cut manifests);
stages (the stage list and the one runner: markers, signatures, the lock) and options (their options and
defaults); pipeline (the stage functions);
dataset (the training Dataset, collate and samplers).
"""
