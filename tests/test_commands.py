"""The command-line programs: pyproject's console scripts, the bin/ wrappers, and the installed scripts as a user runs
them (every bin/X.py is also valle-X)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
BIN_NAMES = {"trainer": "train"}  # bin/X.py -> valle.commands.<module> where the two names differ
ENV = {**{k: v for k, v in os.environ.items() if k != "VALLE_PROG"}, "OMP_NUM_THREADS": "1"}  # train.sh sets it


def test_every_bin_script_is_a_console_script():
    modules = {BIN_NAMES.get(p.stem, p.stem) for p in (REPO / "bin").glob("*.py")}
    assert len(modules) == 16
    assert SCRIPTS == {"valle-" + m.replace("_", "-"): f"valle.commands.{m}:entry" for m in modules}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_targets_are_callable(name):
    module_name, attr = SCRIPTS[name].split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr)) and callable(module.main)


@pytest.mark.parametrize("path", sorted((REPO / "bin").glob("*.py")), ids=lambda p: p.name)
def test_bin_scripts_are_thin_wrappers(path):
    text = path.read_text()
    assert f"from valle.commands.{BIN_NAMES.get(path.stem, path.stem)} import entry" in text
    assert "sys.path" not in text


def installed(name: str) -> str:
    script = Path(sys.executable).parent / name
    if not script.exists():
        pytest.fail(f"{script} is missing: reinstall the package (pip install -e .) after editing [project.scripts]")
    return str(script)


@pytest.mark.parametrize("name", ["valle-infer", "valle-train", "valle-plot-curves"])
def test_installed_console_scripts_print_their_help(name, tmp_path):
    result = subprocess.run([installed(name), "--help"], capture_output=True, text=True, cwd=tmp_path, env=ENV,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {name} ")


def test_an_installed_console_script_refuses_a_bad_flag_in_one_line(tmp_path):
    result = subprocess.run([installed("valle-infer"), "--no-such-flag"], capture_output=True, text=True,
                            cwd=tmp_path, env=ENV, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "valle-infer: error: unrecognized arguments: --no-such-flag (see valle-infer --help)"]
