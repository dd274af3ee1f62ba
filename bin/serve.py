#!/usr/bin/env python3
"""Serve fine-tuned voices over HTTP: an OpenAI-compatible speech API (see docs/serving.md)."""

from valle.commands.serve import entry

if __name__ == "__main__":
    entry()
