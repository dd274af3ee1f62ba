#!/usr/bin/env bash
# The one system package we need: espeak-ng (libespeak-ng for phonemizer, the espeak-ng CLI for the demo corpus).
set -euo pipefail
if command -v espeak-ng >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing espeak-ng (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
else
    echo "espeak-ng is missing. Install it, then rerun:" >&2
    echo "    sudo apt-get install espeak-ng      # Debian/Ubuntu" >&2
    echo "    brew install espeak-ng              # macOS" >&2
    exit 1
fi
