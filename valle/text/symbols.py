"""Symbol tables: the released VALL-E X phoneme table, and k2's `symbol id` text format (no k2 needed)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from valle.errors import UserError


def load_vallex_table() -> dict[str, int]:
    """The 70-entry phoneme table of the released tokenizer ({symbol: id}), from package data."""
    text = resources.files("valle.text").joinpath("phoneme_ids.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    table = {symbol: int(idx) for idx, symbol in rows[1:]}  # rows[0] is the header
    assert sorted(table.values()) == list(range(len(table))), "phoneme_ids.tsv: ids must be 0..N-1"
    return table


def read_k2_symbols(path: str | Path) -> dict[str, int]:
    """Read a k2 SymbolTable text file: one `symbol id` per line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: symbol table not found; pass the unique_text_tokens.k2symbols of your data")
    table: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise UserError(f"{path}:{n}: expected 'symbol id', got {line!r}")
        if fields[0] in table or int(fields[1]) in table.values():
            raise UserError(f"{path}:{n}: duplicate symbol or id in {line!r}")
        table[fields[0]] = int(fields[1])
    return table


def write_k2_symbols(table: dict[str, int], path: str | Path) -> None:
    """Write {symbol: id} as k2 SymbolTable text, sorted by id."""
    bad = [s for s in table if not s or len(s.split()) != 1]
    if bad:
        raise ValueError(f"symbols with whitespace cannot be written to a k2 table: {bad}")
    lines = [f"{s} {i}\n" for s, i in sorted(table.items(), key=lambda kv: kv[1])]
    Path(path).write_text("".join(lines), encoding="utf-8")
