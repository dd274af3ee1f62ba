"""Text tokens: each supervision's text -> phonemes, token ids and per-token language ids (stored on the
supervision's `custom`); text the g2p cannot handle is rejected. An espeak tokenizer without a symbol table gets
one built from the corpus."""

from __future__ import annotations

import collections
import logging

from lhotse import CutSet
from tqdm import tqdm

from valle.config import LANGUAGE_IDS
from valle.data.rejections import Rejection

log = logging.getLogger(__name__)


def attach_text_tokens(cuts: CutSet, tokenizer, language: str):
    """Tokenize each supervision's text; store phonemes, ids and per-token language ids on the supervision.

    Returns (kept cuts, rejections for text the g2p cannot handle, Counter of unknown symbols).
    """
    from valle.text import TextError  # the text package loads g2p models: only when this stage runs

    kept, rejections, unknown = [], [], collections.Counter()
    for cut in tqdm(cuts, desc=f"text tokens ({tokenizer.name})"):
        sup = cut.supervisions[0]
        try:
            tokenized = tokenizer.encode(sup.text, language)
        except TextError as e:
            source = (sup.custom or {}).get("source", cut.id)
            rejections.append(Rejection(source, "g2p failed", str(e)))
            continue
        unknown.update(tokenized.unknown)
        sup.language = language
        sup.custom = {**(sup.custom or {}), "phonemes": tokenized.phonemes, "text_ids": list(tokenized.ids),
                      "text_langs": [LANGUAGE_IDS[lang] for lang in tokenized.languages]}
        kept.append(cut)
    return CutSet.from_cuts(kept), rejections, unknown


def build_espeak_table(tokenizer, cutsets: list[CutSet], language: str) -> None:
    """Give an espeak tokenizer without a symbol table one made from the transcripts of `cutsets`."""
    from valle.text.espeak import phonemize

    texts = [c.supervisions[0].text for cuts in cutsets for c in cuts]
    tokenizer.build_vocab(phonemize(t, language)[0] for t in tqdm(texts, desc="espeak symbol table"))
    log.info("espeak symbol table: %d phones from %d transcripts", len(tokenizer.phones), len(texts))
