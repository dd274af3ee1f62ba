#!/usr/bin/env bash
# Sourced by every recipe script: finds the toolkit's Python so that the recipes work in a fresh shell.
#   1. $PYTHON when set (your own environment),
#   2. else the project's .venv (made by `make setup`),
#   3. else python3 when it can import the toolkit (`pip install -e .` into an active environment).
# Sets PYTHON, VALLE_ROOT, VALLE_BIN and VALLE_ENV_BIN (the environment's bin/: tensorboard, torchrun), first on PATH.
VALLE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VALLE_BIN="$VALLE_ROOT/bin"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$VALLE_ROOT/.venv/bin/python" ]; then
    PYTHON="$VALLE_ROOT/.venv/bin/python"
  else
    PYTHON=python3
  fi
fi
if ! "$PYTHON" -c "import valle, torch, lhotse" >/dev/null 2>&1; then
  echo "error: the toolkit's Python environment is missing ($PYTHON cannot import valle, torch and lhotse): run \`make setup\` in $VALLE_ROOT, or set PYTHON to an environment where \`pip install -e $VALLE_ROOT\` was run" >&2
  exit 2
fi
VALLE_ENV_BIN="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")"  # tensorboard, torchrun
PATH="$VALLE_ENV_BIN:$PATH"
export PYTHON VALLE_ROOT VALLE_BIN VALLE_ENV_BIN PATH
