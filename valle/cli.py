"""What every CLI in bin/ shares: user errors as one line, strict booleans."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


class UserError(Exception):
    """A mistake the user can fix (bad path, bad flag, bad file): shown as one line, no traceback."""


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def str2bool(value: str | bool) -> bool:
    """Parse a boolean flag strictly: true/false/1/0/yes/no/on/off, anything else is an error."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false/1/0/yes/no), got {value!r}")


def run_main(main: Callable[[], int | None]) -> None:
    """Run a CLI entry point; a UserError becomes `error: <message>` on stderr and exit code 2."""
    try:
        code = main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
