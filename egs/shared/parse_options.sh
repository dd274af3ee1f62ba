#!/usr/bin/env bash
# Command-line options for recipe scripts (icefall/Kaldi convention), to be sourced after the defaults:
#
#   stage=0                      # first stage to run
#   codec_weights=pretrained     # pretrained | random | PATH
#   . ../shared/parse_options.sh     # now --stage 2 --codec-weights=random set stage and codec_weights
#
# `--some-name VALUE` and `--some-name=VALUE` set the variable some_name, which the script must already
# define (so a typo is an error, not a silently ignored flag). Parsing stops at the first argument that
# does not start with --; the rest stays in "$@". --help prints $help_message (when the script sets one)
# and every option with the comment of its line and its default. $recipe_command keeps the command line
# as it was given (for messages and the data folder's lock). Options defined elsewhere (the prepare.sh options
# from valle.data.stages) are described by $OPTION_HELP, lines of NAME<TAB>TEXT, listed after the script's own.

recipe_command="$0 $*"

_po_help() {
  [ -n "${help_message:-}" ] && echo "$help_message"
  echo "options (each --name VALUE or --name=VALUE):"
  # the assignments the script made before sourcing this file are its options; `# text` after one describes it
  { awk '/parse_options\.sh/ {exit} /^[a-z][a-z0-9_]*=/ && !/^help_message=/ {
           name = $0; sub(/=.*/, "", name); text = ""
           if (match($0, /[ \t]#[ \t]*/)) text = substr($0, RSTART + RLENGTH)
           print name "\t" text }' "$0"
    printf '%s' "${OPTION_HELP:-}"
  } | awk -F'\t' '!seen[$1]++' |  # an option the script sets itself is described by its own line
  while IFS=$'\t' read -r _po_n _po_text; do
    printf '  --%-18s %s (default: %s)\n' "${_po_n//_/-}" "$_po_text" "${!_po_n:-\"\"}"
  done
}

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) _po_help; exit 0 ;;
    --*=*) _po_flag=${1%%=*}; _po_value=${1#*=}; shift ;;
    --*)
      if [ $# -lt 2 ]; then
        echo "$0: option $1 needs a value (try --help)" >&2; exit 1
      fi
      _po_flag=$1; _po_value=$2; shift 2 ;;
    *) break ;;
  esac
  _po_var=${_po_flag#--}
  _po_var=${_po_var//-/_}
  if [[ ! $_po_var =~ ^[a-z][a-z0-9_]*$ ]] || ! declare -p "$_po_var" >/dev/null 2>&1; then
    echo "$0: unknown option $_po_flag (try --help)" >&2; exit 1
  fi
  printf -v "$_po_var" '%s' "$_po_value"
done
unset _po_flag _po_value _po_var
