"""Text tokenizers: `vallex` (the released checkpoint's) and `espeak` (lifeiteng-style phones), and the
tokenizer info saved with every experiment so that a mismatch is refused."""

from __future__ import annotations

import json
from pathlib import Path

from valle.errors import UserError
from valle.storage import atomic_write_text
from valle.text.base import INPUT_LANGUAGES, LANGUAGES, TextError, TextTokenizer, Tokenized

__all__ = [
    "INPUT_LANGUAGES", "LANGUAGES", "TextError", "TextTokenizer", "Tokenized", "TOKENIZER_NAMES",
    "get_tokenizer", "tokenizer_from_info", "save_tokenizer_info", "load_tokenizer_info", "check_same_tokenizer",
]
TOKENIZER_NAMES = ("vallex", "espeak")
INFO_FILE = "text_tokenizer.json"


def get_tokenizer(name: str, symbols: str | Path | None = None, vocab: dict | None = None) -> TextTokenizer:
    """`vallex`, or `espeak` with its table from `symbols` (a k2 file) or `vocab`; with neither, build it later."""
    if name == "vallex":
        from valle.text.vallex import VallexTokenizer

        return VallexTokenizer()
    if name == "espeak":
        from valle.text.espeak import EspeakTokenizer

        if symbols is not None:
            return EspeakTokenizer.from_k2symbols(symbols)
        return EspeakTokenizer.from_vocab(vocab) if vocab else EspeakTokenizer()
    raise UserError(f"unknown text tokenizer {name!r}; use one of {', '.join(TOKENIZER_NAMES)}")


def tokenizer_from_info(info: dict, where: str = "tokenizer info") -> TextTokenizer:
    """Rebuild the tokenizer that `to_dict()` described; refuses one whose vocabulary differs."""
    tokenizer = get_tokenizer(info["name"], vocab=info["vocab"] if info["name"] == "espeak" else None)
    check_same_tokenizer(tokenizer.to_dict(), info, where)
    return tokenizer


def save_tokenizer_info(tokenizer: TextTokenizer, dir: str | Path) -> Path:
    """Write `dir/text_tokenizer.json` (name + vocabulary)."""
    text = json.dumps(tokenizer.to_dict(), ensure_ascii=False, indent=1) + "\n"
    return atomic_write_text(Path(dir) / INFO_FILE, text)


def load_tokenizer_info(dir: str | Path) -> dict:
    """Read `dir/text_tokenizer.json`."""
    path = Path(dir) / INFO_FILE
    if not path.is_file():
        raise UserError(f"{path} not found; the data was not prepared by this toolkit or the preparation did not "
                        "finish")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); rerun the text-token stage") from e
    if not isinstance(info, dict) or not {"name", "vocab"} <= set(info):
        raise UserError(f"{path}: expected an object with 'name' and 'vocab'; rerun the text-token stage")
    return info


def _vocab_diff(a: dict[str, int], b: dict[str, int]) -> list[str]:
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    changed = sorted(s for s in set(a) & set(b) if a[s] != b[s])
    diff = [f"{len(only_a)} symbols only in the first {only_a[:5]}"] if only_a else []
    diff += [f"{len(only_b)} symbols only in the second {only_b[:5]}"] if only_b else []
    diff += ([f"{len(changed)} ids differ, e.g. " + ", ".join(f"{s!r}: {a[s]} vs {b[s]}" for s in changed[:5])]
             if changed else [])
    return diff


def check_same_tokenizer(a: dict, b: dict, where: str) -> None:
    """Raise UserError naming `where` and what differs when two tokenizer infos are not the same."""
    diff = [f"name {a['name']!r} vs {b['name']!r}"] if a["name"] != b["name"] else []
    diff += _vocab_diff(a["vocab"], b["vocab"])
    if diff:
        raise UserError(f"{where}: text tokenizer mismatch: {'; '.join(diff)}; "
                        "tokenize the data again with the tokenizer of the checkpoint (or train from scratch)")
