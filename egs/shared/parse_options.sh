#!/usr/bin/env bash
# The command-line options of every recipe script (icefall/Kaldi convention), sourced after the defaults:
#
#   stage=0                      # first stage to run
#   codec_weights=pretrained     # pretrained | random | PATH
#   . ../shared/parse_options.sh     # now --stage 2 --codec-weights=random set stage and codec_weights
#
# `--some-name VALUE` and `--some-name=VALUE` set the variable some_name, which the script must already
# define (so a typo is an error, not a silently ignored flag). Parsing stops at the first argument that does
# not start with --; the rest stays in "$@". --help prints the help (print_help: $help_message when the script
# sets one, then every option with the comment of its line and its default). Options defined elsewhere (the
# prepare.sh options from valle.data.options) are described by $OPTION_HELP, lines of NAME<TAB>TEXT, listed
# after the script's own. $recipe_command keeps the command line as it was given (for messages and the data
# folder's lock).
#
# A script that hands the options it does not know to a program (train.sh to the trainer, evaluate.sh to
# valle evaluate) defines the array `passed_on=()` first: every other argument, --help included, then goes
# there in order, and `passed_on_value --name` prints the value the program gets for --name (in either
# spelling; the last one wins, as in argparse) or returns 1 when --name is not given.

recipe_command="$0 $*"

print_help() {
  [ -n "${help_message:-}" ] && echo "$help_message"
  echo "options (each --name VALUE or --name=VALUE):"
  # the assignments the script made before sourcing this file are its options; `# text` after one describes it
  { awk '/parse_options\.sh/ {exit} /^[a-z][a-z0-9_]*=/ && !/^(help_message|passed_on)=/ {
           name = $0; sub(/=.*/, "", name); text = ""
           if (match($0, /[ \t]#[ \t]*/)) text = substr($0, RSTART + RLENGTH)
           print name "\t" text }' "$0"
    printf '%s' "${OPTION_HELP:-}"
  } | awk -F'\t' '!seen[$1]++' |  # an option the script sets itself is described by its own line
  while IFS=$'\t' read -r _po_n _po_text; do
    printf '  --%-18s %s (default: %s)\n' "${_po_n//_/-}" "$_po_text" "${!_po_n:-\"\"}"
  done
}

passed_on_value() {
  local i found=1 value=""
  for ((i = 0; i < ${#passed_on[@]}; i++)); do
    case "${passed_on[i]}" in
      "$1") found=0; value=${passed_on[i + 1]:-} ;;
      "$1"=*) found=0; value=${passed_on[i]#*=} ;;
    esac
  done
  [ "$found" = 1 ] || echo "$value"
  return "$found"
}

_po_passing=false
declare -p passed_on >/dev/null 2>&1 && _po_passing=true
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help)
      if $_po_passing; then passed_on+=("$1"); shift; continue; fi
      print_help; exit 0 ;;
    --*=*) _po_flag=${1%%=*}; _po_value=${1#*=}; _po_width=1 ;;
    --*) _po_flag=$1; _po_value=${2:-}; _po_width=2 ;;
    *)
      if $_po_passing; then passed_on+=("$1"); shift; continue; fi
      break ;;
  esac
  _po_var=${_po_flag#--}
  _po_var=${_po_var//-/_}
  if [[ ! $_po_var =~ ^[a-z][a-z0-9_]*$ ]] || [ "$_po_var" = passed_on ] \
     || ! declare -p "$_po_var" >/dev/null 2>&1; then
    if $_po_passing; then passed_on+=("$1"); shift; continue; fi
    echo "${VALLE_PROG:-$0}: unknown option $_po_flag (try --help)" >&2; exit 1
  fi
  if [ "$_po_width" = 2 ] && [ $# -lt 2 ]; then
    echo "${VALLE_PROG:-$0}: option $1 needs a value (try --help)" >&2; exit 1
  fi
  printf -v "$_po_var" '%s' "$_po_value"
  shift "$_po_width"
done
unset _po_flag _po_value _po_var _po_width _po_passing
