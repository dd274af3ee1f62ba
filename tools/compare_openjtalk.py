"""Compare two OpenJTalk packagings through our Japanese g2p (valle/text/g2p_ja.py) on tools/ja_sentences.txt.

Run `dump` once in each environment (each with its own pyopenjtalk), then `diff` the two files anywhere:

    PYTHONPATH=. /tmp/venv-ja/bin/python tools/compare_openjtalk.py dump /tmp/original.json
    PYTHONPATH=. .venv/bin/python tools/compare_openjtalk.py dump /tmp/plus.json
    python tools/compare_openjtalk.py diff /tmp/original.json /tmp/plus.json   # a markdown table
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import sys
import types
from pathlib import Path

SENTENCES = Path(__file__).with_name("ja_sentences.txt")


def sentences() -> list[str]:
    lines = SENTENCES.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def packaging() -> str:
    """Which distribution provides the importable `pyopenjtalk`, with its version."""
    name = importlib.metadata.packages_distributions()["pyopenjtalk"][0]
    return f"{name} {importlib.metadata.version(name)}"


def dump(out: Path, vanilla: bool) -> None:
    import pyopenjtalk

    if vanilla:  # pyopenjtalk-plus without its own post-processing (its dictionary stays)
        fake = types.SimpleNamespace(
            extract_fullcontext=functools.partial(pyopenjtalk.extract_fullcontext, use_vanilla=True))
        sys.modules["pyopenjtalk"] = fake
    from valle.text.g2p_ja import japanese_to_ipa

    rows = {text: japanese_to_ipa(text) for text in sentences()}
    name = packaging() + (" (use_vanilla)" if vanilla else "")
    out.write_text(json.dumps({"packaging": name, "phonemes": rows}, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{out}: {len(rows)} sentences with {name}")


def diff(a: Path, b: Path) -> None:
    left, right = (json.loads(p.read_text(encoding="utf-8")) for p in (a, b))
    texts = list(left["phonemes"])
    differ = [t for t in texts if left["phonemes"][t] != right["phonemes"].get(t)]
    print(f"{len(texts) - len(differ)} of {len(texts)} sentences identical; {len(differ)} differ.\n")
    if differ:
        print(f"| text | {left['packaging']} | {right['packaging']} |\n|---|---|---|")
        for t in differ:
            print(f"| {t} | `{left['phonemes'][t]}` | `{right['phonemes'].get(t)}` |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="write the g2p output of every sentence with this environment's pyopenjtalk")
    d.add_argument("out", type=Path, help="the JSON file to write")
    d.add_argument("--vanilla", action="store_true",
                   help="pyopenjtalk-plus only: extract_fullcontext(use_vanilla=True)")
    c = sub.add_parser("diff", help="print the sentences whose phonemes differ between two dumps")
    c.add_argument("a", type=Path, help="a dump (the reference)")
    c.add_argument("b", type=Path, help="another dump")
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.out, args.vanilla)
    else:
        diff(args.a, args.b)


if __name__ == "__main__":
    main()
