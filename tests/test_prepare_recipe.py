"""The recipes end to end as a user runs them (bash + bin/ CLIs in subprocesses), offline."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from valle.audio import SAMPLE_RATE
from valle.codec import code_frames, num_frames
from valle.config import LANGUAGE_IDS
from valle.data.files import open_cuts

# one OpenMP thread: the machine running the tests may be busy, and these are tiny workloads
ENV = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
       "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}


def run(args, cwd, check=True):
    proc = subprocess.run(["bash", *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def mini(mini_data, tmp_path_factory):
    """The session's mini corpus (prepared once by conftest's mini_data: 10 utterances per voice + the 2 bad
    examples) with a copy of its data folder that these tests may rerun stages in -> (folder holding data/,
    corpus folder, what prepare.sh printed)."""
    prepared = mini_data.parents[1]
    tmp = tmp_path_factory.mktemp("mini")
    shutil.copytree(prepared / "data", tmp / "data")
    return tmp, prepared / "corpus", (prepared / "prepare.log").read_text()


def test_mini_prepare_end_to_end(mini):
    tmp, _, output = mini
    data = tmp / "data"
    splits = {s: open_cuts(data / "tokenized" / f"cuts_{s}.jsonl.gz").to_eager()
              for s in ("train", "dev", "test")}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [34, 4, 2]
    for cuts in splits.values():
        for cut in cuts:
            assert cut.recording.sampling_rate == SAMPLE_RATE and cut.recording.num_channels == 1
            assert len(cut.supervisions) == 1
            codes = cut.load_codes()
            assert codes.dtype == np.int16 and codes.shape == (code_frames(cut.duration), 8)
            assert abs(len(codes) - num_frames(cut.recording.num_samples)) <= 1
            custom = cut.supervisions[0].custom
            assert len(custom["text_ids"]) == len(custom["text_langs"]) > 0 and custom["phonemes"]
            assert set(custom["text_langs"]) == {LANGUAGE_IDS["en"]}
    rejected = (data / "rejected.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[1].split(":")[0] for line in rejected) == ["missing transcript", "silence"]
    assert (data / "tokenized" / "text_tokenizer.json").is_file()
    assert "RANDOM weights" in output and "downmixed from 2 channels" in output
    assert "split: train 34 cuts" in output


def test_mini_rerun_skips_finished_stages(mini):
    tmp, corpus, _ = mini
    proc = run([REPO / "egs/mini/prepare.sh", "--corpus-dir", corpus, "--data-dir", tmp / "data"], cwd=tmp)
    assert "not regenerated" in proc.stdout
    for n, name in enumerate(["scan", "normalize", "check", "codes", "text", "split"]):
        assert f"stage {n} ({name}): done before with the same options, skipping" in proc.stdout


def test_changed_option_reruns_only_its_stage(mini):
    tmp, corpus, _ = mini
    before = {s: open_cuts(tmp / "data/tokenized" / f"cuts_{s}.jsonl.gz").ids for s in ("dev", "test")}
    proc = run([REPO / "egs/mini/prepare.sh", "--corpus-dir", corpus, "--data-dir", tmp / "data",
                "--seed", "7"], cwd=tmp)
    assert "stage 4 (text): done before" in proc.stdout and "stage 5 (split): split" in proc.stdout
    after = {s: open_cuts(tmp / "data/tokenized" / f"cuts_{s}.jsonl.gz").ids for s in ("dev", "test")}
    assert before != after
    run([REPO / "egs/mini/prepare.sh", "--corpus-dir", corpus, "--data-dir", tmp / "data"], cwd=tmp)


def test_custom_prepare_needs_a_corpus(tmp_path):
    proc = run([REPO / "egs/custom/prepare.sh"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "--corpus is required" in proc.stderr
    markers = [tmp_path / "data" / f".{name}.done" for name in ("scan", "normalize", "codes", "text", "split")]
    for marker in markers:  # a prepared data folder
        marker.parent.mkdir(exist_ok=True)
        marker.write_text("done before\n")
    proc = run([REPO / "egs/custom/prepare.sh", "--corpus", tmp_path / "nowhere"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--corpus" in proc.stderr and "no such folder or metadata file" in proc.stderr
    assert all(m.read_text() == "done before\n" for m in markers)  # a mistyped path invalidates nothing
    proc = run([REPO / "egs/custom/prepare.sh", "--corpus", tmp_path, "--language", "fr"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--language fr" in proc.stderr and "en, zh or ja" in proc.stderr


def test_prepare_help_describes_every_option_with_its_default(tmp_path):
    for recipe in ("custom", "libritts", "mini"):
        out = run([REPO / f"egs/{recipe}/prepare.sh", "--help"], cwd=tmp_path).stdout
        assert "folder it is run from" in out
        options = [line for line in out.splitlines() if line.startswith("  --")]
        assert len(options) >= 17
        for line in options:
            name, _, rest = line.strip().partition(" ")
            assert rest.strip() and "(default: " in rest and not rest.strip().startswith("(default"), line
    out = run([REPO / "egs/custom/prepare.sh", "--help"], cwd=tmp_path).stdout
    assert "--min-duration       reject recordings shorter than this many seconds (default: 0.5)" in out


def small_corpus(root, n=3):
    """n mono 24 kHz clips with transcripts (no conversion needed)."""
    import soundfile as sf
    from conftest import speechlike

    for i in range(n):
        sf.write(str(root / f"u{i}.wav"), speechlike(0.8, 24000, f0=120 + 20 * i), 24000)
        (root / f"u{i}.txt").write_text(f"Sentence number {i}.")
    return root


@pytest.mark.slow
def test_prepare_works_in_a_fresh_shell_and_writes_where_it_runs(tmp_path):
    corpus = small_corpus(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    fresh = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "OMP_NUM_THREADS": "1"}  # no venv
    proc = subprocess.run(["bash", REPO / "egs/custom/prepare.sh", "--corpus", corpus, "--stop-stage", "0"], cwd=work,
                          env=fresh, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len((work / "data/manifests/entries_all.jsonl").read_text().splitlines()) == 3
    missing = subprocess.run(["bash", REPO / "egs/custom/prepare.sh", "--corpus", corpus, "--stop-stage", "0"],
                             cwd=work, env={**fresh, "PYTHON": str(tmp_path / "no-python")}, capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "make setup" in missing.stderr


@pytest.mark.slow
def test_one_preparation_per_data_folder(tmp_path):
    """While another process holds the data folder, prepare.sh and the stage CLIs refuse in one line naming it,
    and change nothing; prepare.sh's own stage CLIs run under its lock."""
    from valle.locks import folder_lock

    corpus, data = small_corpus(tmp_path), tmp_path / "data"
    with folder_lock(data, "data preparation"):
        proc = run([REPO / "egs/custom/prepare.sh", "--corpus", corpus, "--stop-stage", "0"], cwd=tmp_path, check=False)
        hand = subprocess.run([sys.executable, "-m", "valle", "prepare", "split", "--data-dir", data], cwd=tmp_path,
                              env=ENV, capture_output=True, text=True, timeout=300)
    for refused in (proc, hand):
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert f"data is in use by pid {os.getpid()}" in refused.stderr
        assert "wait for that data preparation to finish, or use another folder" in refused.stderr
    assert sorted(p.name for p in data.iterdir()) == [".lock"]


@pytest.mark.slow
def test_two_concurrent_prepares(tmp_path):
    """Started together on one data folder: the one that comes second refuses (naming the first), or, when the
    first had finished already, both succeed; the folder always ends with loadable cuts."""
    corpus = small_corpus(tmp_path, n=4)
    args = ["bash", REPO / "egs/custom/prepare.sh", "--corpus", corpus, "--stop-stage", "1", "--min-duration", "0.1"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    refused = [err for code, err in results if code != 0]
    assert len(refused) <= 1 and all(code in (0, 2) for code, _ in results), results
    for err in refused:
        assert "is in use by pid" in err and "prepare.sh" in err
    cuts = open_cuts(tmp_path / "data/manifests/cuts_all.jsonl.gz")
    assert len(cuts) == 4 and all(c.load_audio().shape[1] > 0 for c in cuts)


def test_defaults_have_one_source_and_a_skipped_stage_is_fast(tmp_path):
    """prepare.sh takes the option defaults from valle.data.options (one Python call without torch) and sets only
    those that differ on purpose; the stage CLIs take theirs from the same PrepareOptions, and decide to skip a
    finished stage without importing torch."""
    from valle.commands import compute_codes, compute_text_tokens, prepare_corpus, split_cuts
    from valle.data.options import PrepareOptions, recipe_fields

    script = tmp_path / "s.sh"
    script.write_text('eval "$(python -m valle.data.options --shell custom)"\n'
                      'echo "$corpus|$num_jobs|$language|$data_dir|$min_duration|${PREPARE_FIELDS[*]:0:3}"\n')
    assert run([script], cwd=tmp_path).stdout.strip() == "|1|en|data|0.5|corpus data_dir language"
    for recipe, own in [("custom", set()), ("libritts", {"num_jobs"})]:  # libritts: more jobs, LibriTTS is large
        text = (REPO / "egs" / recipe / "prepare.sh").read_text()
        assert {f.name for f in recipe_fields(recipe) if f"\n{f.name}=" in text} == own, recipe
    defaults = PrepareOptions()
    parsed = [prepare_corpus.parse_args(["normalize"]), compute_codes.parse_args([]),
              compute_text_tokens.parse_args([]), split_cuts.parse_args([])]
    for args in parsed:
        for name, value in vars(args).items():
            if name in ("data_dir",):
                assert str(value) == defaults.data_dir
            elif name in vars(defaults) and name != "symbols":
                assert value == getattr(defaults, name), name
    data = tmp_path / "data"
    data.mkdir()
    (data / ".codes.done").write_text("codec_weights=random\n")
    skip = subprocess.run([sys.executable, "-c", "import sys; from valle.commands import compute_codes; "
                           f"compute_codes.main(['--data-dir', {str(data)!r}, '--codec-weights', 'random']); "
                           "assert 'torch' not in sys.modules and 'lhotse' not in sys.modules"],
                          capture_output=True, text=True, env=ENV)
    assert skip.returncode == 0 and "stage 3 (codes): done before with the same options, skipping" in skip.stdout, \
        skip.stderr


def test_each_prepare_sh_shows_every_stage_as_a_guarded_block():
    """A reader finds each numbered stage, and the command it runs, as a guarded block: a recipe's own stages (-1,
    0: reading its corpus) in its prepare.sh, the stages every recipe shares (1-4) once, in
    egs/shared/prepare_stages.sh, which the recipes source."""
    from valle.data.stages import STAGE_NAMES

    def blocks(text: str, stages) -> None:
        for n in stages:
            guard = f'if [ "$stage" -le {n} ] && [ "$stop_stage" -ge {n} ]; then\n'
            assert text.count(guard) == 1, n
            assert "$PYTHON" in text.split(guard)[1].split("\nfi\n")[0], n  # one command a reader can copy

    shared = (REPO / "egs/shared/prepare_stages.sh").read_text()
    blocks(shared, range(1, len(STAGE_NAMES)))
    for recipe, first in [("custom", 0), ("libritts", -1), ("mini", -1)]:  # custom: -1 only with --long-recordings
        text = (REPO / "egs" / recipe / "prepare.sh").read_text()
        blocks(text, range(first, 0 if recipe == "mini" else 1))  # mini: its corpus, then the custom recipe's
        assert 'if [ "$stage" -le 1 ]' not in text and "$data_dir/." not in text  # the stage runner's markers
        assert (recipe == "mini") != text.endswith('. "$(dirname "${BASH_SOURCE[0]}")/../shared/prepare_stages.sh"\n')
    assert "../custom/prepare.sh" in (REPO / "egs/mini/prepare.sh").read_text()


def test_prepare_sh_checks_every_option_in_one_place_before_any_stage(tmp_path):
    """prepare.sh hands its options to PrepareOptions' own check (as the stage commands and the page do): a bad
    value is one line, before the corpus is read and before the data folder exists."""
    for recipe, extra in [("custom", ["--corpus", str(tmp_path)]), ("libritts", ["--stage", "0"])]:
        for flag, value, message in [("--num-workers", "0", "error: --num-workers 0: use 1 or more"),
                                     ("--language", "fr", "error: --language fr: use en, zh or ja"),
                                     ("--max-duration", "0.2", "error: --min-duration 0.5 --max-duration 0.2: "
                                                               "need 0 < min < max (seconds)")]:
            proc = run([REPO / "egs" / recipe / "prepare.sh", *extra, flag, value], cwd=tmp_path, check=False)
            assert (proc.returncode, proc.stderr.strip()) == (2, message), (recipe, proc.stderr)
            assert not (tmp_path / "data").exists()


def test_every_recipe_script_parses_options_one_way():
    """No script has its own option loop or `case " $* "` match: each sources egs/shared/parse_options.sh, or
    hands "$@" as it is to a script that does."""
    for script in sorted((REPO / "egs").glob("*/*.sh")):
        text = script.read_text()
        if script.name in ("parse_options.sh", "env.sh", "prepare_stages.sh"):  # sourced: no options of their own
            continue
        assert 'case " $* "' not in text and "while [ $# -gt 0 ]" not in text, script
        assert "parse_options.sh" in text or '"$@"' in text, script


def test_parse_options(tmp_path):
    script = tmp_path / "opts.sh"
    script.write_text("stage=0\nsome_name=default\n"
                      f". {REPO}/egs/shared/parse_options.sh\n"
                      'echo "stage=$stage some_name=$some_name rest=$*"\n')
    assert run([script, "--stage", "3", "--some-name=a b", "x"], cwd=tmp_path).stdout.strip() == \
        "stage=3 some_name=a b rest=x"
    assert run([script, "--stage=-1", "--some-name", "--x=y"], cwd=tmp_path).stdout.strip() == \
        "stage=-1 some_name=--x=y rest="
    bad = run([script, "--stgae", "3"], cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "unknown option --stgae" in bad.stderr
    missing = run([script, "--stage"], cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "needs a value" in missing.stderr
    helped = run([script, "--help"], cwd=tmp_path).stdout
    assert "--stage" in helped and "--some-name" in helped and "default" in helped


def test_parse_options_passes_the_others_on(tmp_path):
    """A script with passed_on=() keeps what it does not know, in order, and reads any of it in either spelling."""
    script = tmp_path / "wrap.sh"
    script.write_text("model_name=ar\npassed_on=()\n"
                      f". {REPO}/egs/shared/parse_options.sh\n"
                      'printf "%s|" "$model_name" "${passed_on[@]}"; echo\n'
                      'for name in --codec-weights --checkpoint --help --adapter; do\n'
                      '  passed_on_value $name || echo "$name: not given"\n'
                      'done\n')
    out = run([script, "--codec-weights=none", "--model-name=nar", "--checkpoint", "a.pt", "vallex", "--help"],
              cwd=tmp_path).stdout.splitlines()
    assert out == ["nar|--codec-weights=none|--checkpoint|a.pt|vallex|--help|", "none", "a.pt", "",
                   "--adapter: not given"]
    again = run([script, "--codec-weights", "random", "--codec-weights=none"], cwd=tmp_path).stdout.splitlines()
    assert again[1] == "none"  # the last one wins, as in argparse


def test_libritts_prepare_manifest_stage_offline(tmp_path, fake_libritts):
    fake_libritts(tmp_path / "download" / "LibriTTS", {"dev-clean": "84", "train-clean-5": "19"})
    proc = run([REPO / "egs/libritts/prepare.sh", "--dataset-parts=dev-clean train-clean-5",
                "--stop-stage=0", "--num-jobs", "1"], cwd=tmp_path)  # both spellings
    assert "every part is in download/LibriTTS, skipping" in proc.stdout
    for part, speaker in [("dev-clean", "84"), ("train-clean-5", "19")]:
        lines = (tmp_path / "data/manifests" / f"entries_{part}.jsonl").read_text().splitlines()
        assert len(lines) == 2 and f'"speaker": "{speaker}"' in lines[0] and f'"part": "{part}"' in lines[0]


def test_libritts_stage_0_checks_the_parts_before_changing_anything(tmp_path):
    proc = run([REPO / "egs/libritts/prepare.sh", "--stage", "0", "--dataset-parts", "dev-clean"], cwd=tmp_path,
               check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "download/LibriTTS/dev-clean not found: run stage -1 (download)" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".lock"]
