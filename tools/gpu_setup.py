#!/usr/bin/env python3
"""The GPU machine's setup steps for bench/gpu_check.py: the toolkit's dependencies installed from the wheels of
`.whl/` (made by tools/gpu_wheels.py on a machine with a package index; the GPU machine has only torch & co.),
and the tests marked `cuda` run with pytest. Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
SITE = WHEELS / "site"
# What the checks import beyond the GPU machine's preinstalled torch, numpy, h5py, tensorboard, safetensors, hub.
NEEDED = ("lhotse", "urllib3", "encodec", "soundfile", "eng_to_ipa", "inflect", "unidecode", "pypinyin", "jieba",
          "cn2an", "pytest", "yaml", "tqdm", "fastapi", "uvicorn", "python_multipart", "httpx")


def _use_site() -> None:
    """.whl/site first on the path, here and in the subprocesses (pytest, the recipes, the trainer)."""
    if str(SITE) not in sys.path:
        sys.path.insert(0, str(SITE))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))


def ensure_dependencies() -> dict:
    """Install .whl/*.whl into .whl/site when something in NEEDED is missing; put .whl/site on the path."""
    if SITE.is_dir():
        _use_site()
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if not missing:
        return {"installed_wheels": 0}
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"missing modules {missing} and no wheels in {WHEELS}: run `make gpu-wheels` on a "
                           "machine with a package index and copy .whl/ here")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target",
                    str(SITE), *map(str, wheels)], check=True)
    _use_site()
    importlib.invalidate_caches()
    still = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if still:
        raise RuntimeError(f"modules {still} are still missing after installing {len(wheels)} wheels from {WHEELS}")
    return {"installed_wheels": len(wheels), "missing_before": missing}


def run_cuda_tests() -> list[dict]:
    """pytest -m cuda over the test files that have such tests; RuntimeError with its output when one fails."""
    files = sorted(str(p) for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    if proc.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"pytest -m cuda failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return [{"files": len(files), "summary": tail[0]}]
