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
# find_spec checks that the packages are installed without importing torch (which takes seconds)
_env_bin=$("$PYTHON" -c 'import importlib.util as u, os, sys
sys.exit(1) if not all(u.find_spec(m) for m in ("valle", "torch", "lhotse")) else print(os.path.dirname(sys.executable))' \
  2>/dev/null) || {
  echo "error: the toolkit's Python environment is missing ($PYTHON cannot find valle, torch and lhotse): run \`make setup\` in $VALLE_ROOT, or set PYTHON to an environment where \`pip install -e $VALLE_ROOT\` was run" >&2
  exit 2
}
VALLE_ENV_BIN=$_env_bin  # the environment's bin/: tensorboard, torchrun
PATH="$VALLE_ENV_BIN:$PATH"
export PYTHON VALLE_ROOT VALLE_BIN VALLE_ENV_BIN PATH
