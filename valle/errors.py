"""The user-facing error type of the library. The CLI layer (valle/cli.py) prints it as one line."""


class UserError(Exception):
    """A mistake the user can fix (bad path, bad flag, bad file): shown as one line, no traceback."""
