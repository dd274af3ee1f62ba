"""What every CLI in bin/ shares: user errors as one line, strict booleans."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from valle.config import str2bool  # noqa: F401  (re-exported for the CLIs)
from valle.errors import UserError


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


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows each flag's default, and the description as written."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line and a pointer to --help, not the whole usage first. Flags must be
    spelled out: a prefix such as --max-step (for --max-steps) is an error, not a guess."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
