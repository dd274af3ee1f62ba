#!/usr/bin/env bash
# Sourced by every recipe script: finds the toolkit's Python so that the recipes work in a fresh shell.
#   1. $PYTHON when set (your own environment),
#   2. else the project's .venv (made by `make setup`),
#   3. else python3 when it can import the toolkit (`pip install -e .` into an active environment).
# Sets PYTHON, VALLE_ROOT and VALLE_ENV_BIN (the environment's bin/: tensorboard, torchrun), first on PATH.
# Puts this checkout first on PYTHONPATH. Defines log, and for prepare.sh check_options and take_data_lock (the data
# folder's lock).
VALLE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$VALLE_ROOT/.venv/bin/python" ]; then
    PYTHON="$VALLE_ROOT/.venv/bin/python"
  else
    PYTHON=python3
  fi
fi
# the toolkit of this checkout, whichever one the environment has installed: the scripts and the code they call
# come from the same place
export PYTHONPATH="$VALLE_ROOT${PYTHONPATH:+:$PYTHONPATH}"
# find_spec checks that the packages are installed without importing torch (which takes seconds)
_env_bin=$("$PYTHON" -c 'import importlib.util as u, os, sys
sys.exit(1) if not all(u.find_spec(m) for m in ("valle", "torch", "lhotse")) else print(os.path.dirname(sys.executable))' \
  2>/dev/null) || {
  echo "error: the toolkit's Python environment is missing ($PYTHON cannot find valle, torch and lhotse): run \`make setup\` in $VALLE_ROOT, or set PYTHON to an environment where \`pip install -e $VALLE_ROOT\` was run" >&2
  exit 2
}
VALLE_ENV_BIN=$_env_bin  # the environment's bin/: tensorboard, torchrun
PATH="$VALLE_ENV_BIN:$PATH"
export PYTHON VALLE_ROOT VALLE_ENV_BIN PATH

# log MESSAGE: a line with the time and the script's name, as the stage CLIs write theirs
log() {
  echo "$(date '+%F %T') ($(basename "$0")) $*"
}

# check_options RECIPE: every preparation option of the recipe through the one check of valle/data/options.py (as the
# stage commands and the web page do), before anything runs: a bad value is one `error: ...` line and exit 2
check_options() {
  local values=() name
  for name in "${PREPARE_FIELDS[@]}"; do values+=("--${name//_/-}" "${!name}"); done
  "$PYTHON" -m valle.data.options --check "$1" "${values[@]}" || exit 2
}

# take_data_lock: one preparation at a time per data folder (valle/locks.py: a flock on $data_dir/.lock, which the
# kernel releases when the last process holding it ends, however it ends). This shell opens the lock file as
# descriptor 9 and a short Python helper locks that open file; every command the script runs inherits it, and
# VALLE_LOCK_FD=9 tells the stage CLIs that the lock they take is already theirs (a child flock-ing the file anew
# would refuse itself). A second run stops here, saying who holds the folder. A script exec'd by another that
# holds the lock (egs/mini) keeps the inherited descriptor.
take_data_lock() {
  mkdir -p "$data_dir"
  if [ "${VALLE_LOCK_FD:-}" != 9 ] || ! [ /dev/fd/9 -ef "$data_dir/.lock" ]; then
    exec 9<>"$data_dir/.lock"
  fi
  "$PYTHON" -m valle.locks 9 "$data_dir" "data preparation" "$recipe_command" || exit 2
  export VALLE_LOCK_FD=9
}
