"""`python -m valle <command> ...`: the `valle` command (valle.commands), e.g. where no console script is on PATH
or under `torchrun -m valle train`."""

from valle.commands import entry

entry()
