"""The one stage runner (valle.data.stages.run_stages) driven from Python: skip, redo, markers, the data lock."""

from pathlib import Path

import pytest

from valle.data.stages import STAGE_NAMES, StageRun, run_stages, signature
from valle.errors import UserError
from valle.locks import folder_lock


def recorder(ran: list, name: str, fail: bool = False):
    def work():
        ran.append(name)
        if fail:
            raise UserError(f"{name} failed")
    return work


def runs(ran: list, seed: int = 42) -> list[StageRun]:
    """Every stage, with the split stage's signature depending on `seed`."""
    values = {"min_duration": 0.5, "max_duration": 20.0, "silence_db": -60.0, "codec_weights": "random",
              "tokenizer": "vallex", "language": "en", "symbols": None, "dev_ratio": 0.05, "test_ratio": 0.05,
              "seed": seed, "heldout_speakers": "", "loudness_normalize": False, "check_asr": "none",
              "drop_flagged": False}
    sigs = ["corpus=/c"] + [signature(name, values) for name in STAGE_NAMES[1:]]
    return [StageRun(name, sig, recorder(ran, name)) for name, sig in zip(STAGE_NAMES, sigs)]


def markers(data):
    return {p.name: p.read_text() for p in data.glob(".*.done")}


def test_runs_then_skips_then_redoes_only_what_changed(tmp_path, capsys):
    data, ran = tmp_path / "data", []
    lines = run_stages(data, runs(ran))
    assert ran == list(STAGE_NAMES) and all("done in" in line for line in lines)
    assert markers(data)[".split.done"] == "dev_ratio=0.05 test_ratio=0.05 seed=42 heldout_speakers=\n"
    assert markers(data)[".text.done"] == "tokenizer=vallex language=en symbols=\n"  # None is written as nothing
    assert "stage 5 (split): split ->" in capsys.readouterr().out

    ran.clear()
    lines = run_stages(data, runs(ran))
    assert ran == [] and lines[0] == "stage 0 (scan): done before with the same options, skipped"
    assert f"(delete {data / '.scan.done'} to redo)" in capsys.readouterr().out

    run_stages(data, runs(ran, seed=7))
    assert ran == ["split"] and "seed=7" in markers(data)[".split.done"]


def test_a_stage_that_runs_drops_the_later_markers_only_once_it_has_finished(tmp_path):
    data, ran = tmp_path / "data", []
    run_stages(data, runs(ran))
    before = markers(data)
    failing = StageRun("normalize", "min_duration=1 max_duration=20 silence_db=-60", recorder(ran, "n", fail=True))
    with pytest.raises(UserError, match="n failed"):
        run_stages(data, [failing])
    after = markers(data)
    assert ".normalize.done" not in after  # its own marker goes first: a rerun redoes it
    assert {k: v for k, v in before.items() if k != ".normalize.done"} == after  # the later ones stay
    run_stages(data, [StageRun(failing.name, failing.signature, recorder(ran, "n"))])
    assert sorted(markers(data)) == [".normalize.done", ".scan.done"]  # codes, text and split are stale now


def test_a_marker_an_older_version_wrote_is_one_line_and_the_stage_runs_again(tmp_path, caplog):
    data, ran = tmp_path / "data", []
    data.mkdir()
    (data / ".scan.done").write_text('{"corpus": "/c"}\n')  # JSON, as the codes shards' markers once were
    run_stages(data, runs(ran)[:1])
    assert ran == ["scan"] and markers(data) == {".scan.done": "corpus=/c\n"}
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.getMessage() == f"{data / '.scan.done'} was written by an older version of the toolkit: " \
                                  "running that work again"


def test_one_run_per_data_folder(tmp_path):
    data, ran = tmp_path / "data", []
    with folder_lock(data, "data preparation"):  # e.g. the recipe, or the page, on the same folder
        with pytest.raises(UserError, match=r"data is in use by pid \d+ .*wait for that data preparation to finish"):
            run_stages(data, runs(ran))
    assert ran == [] and markers(data) == {}


def valle_imports() -> dict[str, set[str]]:
    """module -> the valle modules it imports, anywhere in its code (imports inside functions too)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (root / "valle").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = ".".join(name.split(".")[: -node.level] + [node.module]) if node.level else node.module
                found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_imports_draw_no_cycle_and_no_data_module_knows_training():
    import graphlib

    graph = valle_imports()
    assert len(graph) > 50 and "valle.data.stage_list" in graph["valle.data.rejections"]
    assert [(m, d) for m, deps in graph.items() if m.startswith("valle.data") for d in deps
            if d.startswith("valle.training")] == []
    graphlib.TopologicalSorter(graph).prepare()  # CycleError naming the modules of a cycle
