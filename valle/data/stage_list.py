"""The preparation stages in order: each one's name (its marker DATA/.<name>.done, its key in summary.json, its
reports/rejected_<name>.tsv and its name in the logs), what it does and writes, and the options its marker's
signature holds. A table and nothing else: the stage runner (valle.data.stages) and the reports
(valle.data.rejections) both read it, and it imports nothing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str  # the marker DATA/.<name>.done, the key in summary.json and the name in the logs
    does: str  # what it does (logs)
    writes: str  # what it writes, relative to the data folder
    options: tuple[str, ...]  # the options of its signature (the scan stage's is the corpus it read)


STAGES = (
    Stage("scan", "read the corpus", "manifests/entries_*.jsonl", ()),
    Stage("normalize", "validate, downmix to mono, resample to 24 kHz", "manifests/cuts_*.jsonl.gz",
          ("min_duration", "max_duration", "silence_db", "loudness_normalize")),
    Stage("check", "flag suspect files, minutes per speaker, a verdict", "check.html",
          ("language", "check_asr", "drop_flagged")),
    Stage("codes", "Encodec codes", "tokenized/codes_*.h5", ("codec_weights",)),
    Stage("text", "text tokens", "tokenized/text_tokenizer.json", ("tokenizer", "language", "symbols")),
    Stage("split", "split", "tokenized/cuts_{train,dev,test}.jsonl.gz",
          ("dev_ratio", "test_ratio", "seed", "heldout_speakers")),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
