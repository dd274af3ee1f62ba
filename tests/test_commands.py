"""The one `valle` command: pyproject's console script, the table of subcommands, `python -m valle` as a user runs
it, and the installed script."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from valle import commands

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
ENV = {**{k: v for k, v in os.environ.items() if k != "VALLE_PROG"}, "OMP_NUM_THREADS": "1"}  # train.sh sets it
MODULES = {p.stem for p in (REPO / "valle" / "commands").glob("*.py")} - {"__init__"}


def valle(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "valle", *args], capture_output=True, text=True, cwd=cwd, env=ENV,
                          timeout=120)


def test_one_console_script_runs_the_dispatcher():
    assert SCRIPTS == {"valle": "valle.commands:entry"}
    assert callable(commands.entry)


def test_every_command_module_is_in_the_table_and_every_entry_has_a_main():
    # export_onnx and check_data are written on other branches: until they land, the table names them ahead
    assert {c.module for c in commands.COMMANDS.values()} - MODULES <= {"export_onnx", "check_data"}
    assert MODULES <= {c.module for c in commands.COMMANDS.values()}
    for module in MODULES:
        assert callable(importlib.import_module(f"valle.commands.{module}").main)


def test_no_command_imports_another_commands_main():
    for module in MODULES:
        tree = ast.parse((REPO / "valle" / "commands" / f"{module}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {name for name in imported if name and name.startswith("valle.commands")}, module


def test_the_help_lists_every_command_in_its_group(tmp_path):
    result = valle("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: valle <command> [options]")
    assert [line for line in lines if line.endswith(":")] == ["Data:", "Training:", "Synthesis:", "Quality:",
                                                              "Export:"]
    listed = [line.split("  ")[1].strip() for line in lines if line.startswith("  ")]
    assert listed == list(commands.COMMANDS)
    assert "  prepare codes " in result.stdout and "  export checkpoint " in result.stdout


@pytest.mark.parametrize(("args", "usage"), [(["infer"], "usage: valle infer "),
                                             (["prepare", "codes"], "usage: valle prepare codes "),
                                             (["prepare", "scan"], "usage: valle prepare scan "),
                                             (["plot-curves"], "usage: valle plot-curves ")])
def test_a_subcommand_prints_its_own_help_under_its_name(args, usage, capsys):
    with pytest.raises(SystemExit) as exit_, pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["valle"])  # the dispatcher names the program there
        commands.main([*args, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(usage)


@pytest.mark.parametrize(("args", "message"), [
    (["trian"], "error: valle trian: no such command; did you mean valle train? (valle --help lists them)"),
    (["prepare"], "error: valle prepare: use valle prepare scan|download-libritts|libritts|normalize|codes|"
                  "text-tokens|split|shar"),
    (["export", "tflite"], "error: valle export tflite: use valle export checkpoint|onnx"),
    (["infer", "--no-such-flag"], "valle infer: error: unrecognized arguments: --no-such-flag "
                                  "(see valle infer --help)"),
])
def test_a_wrong_command_or_flag_is_one_line(tmp_path, args, message):
    result = valle(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]


def test_a_command_not_in_this_version_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(commands.COMMANDS, "later", commands.Command("not_written_yet", "a command to come"))
    monkeypatch.setattr(sys, "argv", ["valle", "later"])
    with pytest.raises(SystemExit) as exit_:
        commands.entry()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: valle later: not in this version of the toolkit " \
                                      "(no valle.commands.not_written_yet)\n"


def test_the_installed_console_script_runs_a_subcommand(tmp_path):
    script = Path(sys.executable).parent / "valle"
    if not script.exists():
        pytest.fail(f"{script} is missing: reinstall the package (make setup, or pip install -e .) after editing "
                    "[project.scripts]")
    result = subprocess.run([str(script), "plot-curves", "--help"], capture_output=True, text=True, cwd=tmp_path,
                            env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: valle plot-curves ")


def test_running_a_command_module_directly_is_refused_with_the_command_to_use():
    """`python -m valle.commands.check_data` used to import the module and exit 0 having done nothing."""
    done = subprocess.run([sys.executable, "-m", "valle.commands.check_data", "--data-dir", "x"],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("error: python -m valle.commands.check_data runs nothing: use `valle check-data ...` "
                           "(`python -m valle ...` works too)\n")
    with pytest.raises(SystemExit):
        commands.refuse_module_run(["python", "-u", "-m", "valle.commands.prepare_corpus", "normalize"])
    for argv in (["python", "-m", "valle", "train"], ["python", "-m", "pytest", "-m", "slow"], ["valle", "infer"]):
        commands.refuse_module_run(argv)  # the command itself, pytest, the console script: nothing to refuse
