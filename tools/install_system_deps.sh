#!/usr/bin/env bash
# System packages: espeak-ng (needed: libespeak-ng for phonemizer, the espeak-ng CLI for the demo corpus), and
# Debian's chromium + chromium-driver (optional: the tests that drive the web app and render the evaluation
# report in a headless browser; they are skipped without it), and a C++ compiler (torch.compile's CPU backend, used
# by the slow tests of the compiled decoding step and training forward), and ffmpeg (optional: the second decoder
# the speech API's streaming test checks its streams with).
set -euo pipefail
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
fi
if [[ " ${missing[*]} " == *" espeak-ng "* ]]; then
    echo "espeak-ng is missing. Install it, then rerun:" >&2
    echo "    sudo apt-get install espeak-ng      # Debian/Ubuntu" >&2
    echo "    brew install espeak-ng              # macOS" >&2
    exit 1
fi
echo "note: ${missing[*]} not installed: the browser and ffmpeg tests will be skipped, torch.compile tests need g++" \
    "(sudo apt-get install ${missing[*]})" >&2
