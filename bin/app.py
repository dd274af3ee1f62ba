#!/usr/bin/env python3
"""The web app: Data, Train and Synthesize tabs in one page (same as the `valle-app` console script).

  python bin/app.py --workspace DIR [--port 7860]
"""

from valle.commands.app import entry

if __name__ == "__main__":
    entry()
