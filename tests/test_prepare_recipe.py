"""The recipes end to end as a user runs them (bash + bin/ CLIs in subprocesses), offline."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from lhotse import CutSet

from conftest import REPO
from valle.audio import SAMPLE_RATE
from valle.codec import code_frames, num_frames
from valle.config import LANGUAGE_IDS

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
    splits = {s: CutSet.from_file(data / "tokenized" / f"cuts_{s}.jsonl.gz").to_eager() for s in ("train", "dev", "test")}
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
    for n, name in enumerate(["corpus", "normalize", "codes", "text", "split"]):
        assert f"stage {n} ({name}): done before with the same options, skipping" in proc.stdout


def test_changed_option_reruns_only_its_stage(mini):
    tmp, corpus, _ = mini
    before = {s: CutSet.from_file(tmp / "data/tokenized" / f"cuts_{s}.jsonl.gz").ids for s in ("dev", "test")}
    proc = run([REPO / "egs/mini/prepare.sh", "--corpus-dir", corpus, "--data-dir", tmp / "data",
                "--seed", "7"], cwd=tmp)
    assert "stage 3 (text): done before" in proc.stdout and "stage 4 (split): split" in proc.stdout
    after = {s: CutSet.from_file(tmp / "data/tokenized" / f"cuts_{s}.jsonl.gz").ids for s in ("dev", "test")}
    assert before != after
    run([REPO / "egs/mini/prepare.sh", "--corpus-dir", corpus, "--data-dir", tmp / "data"], cwd=tmp)


def test_custom_prepare_needs_a_corpus(tmp_path):
    proc = run([REPO / "egs/custom/prepare.sh"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "--corpus is required" in proc.stderr
    markers = [tmp_path / "data" / f".{name}.done" for name in ("corpus", "normalize", "codes", "text", "split")]
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
        hand = subprocess.run([sys.executable, REPO / "bin/split_cuts.py", "--data-dir", data], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=300)
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
    cuts = CutSet.from_file(tmp_path / "data/manifests/cuts_all.jsonl.gz")
    assert len(cuts) == 4 and all(c.load_audio().shape[1] > 0 for c in cuts)


def test_stages_and_defaults_have_one_source(tmp_path):
    """prepare.sh takes the stage list, the option defaults and the marker signatures from valle.data.stages
    (one Python call without torch); the stage CLIs take their defaults from the same PrepareOptions."""
    from valle.commands import compute_codes, compute_text_tokens, prepare_corpus, split_cuts
    from valle.data.options import PrepareOptions
    from valle.data.stages import STAGE_NAMES, STAGES, signature

    script = tmp_path / "s.sh"
    script.write_text(f". {REPO}/egs/shared/prepare_stages.sh custom\n"
                      'echo "${STAGE_NAMES[*]}"; for n in 1 2 3 4; do stage_signature $n; done\n'
                      'echo "$corpus|$num_jobs|$language|$data_dir"; language=xx; check_language\n')
    proc = run([script], cwd=tmp_path, check=False)
    defaults = PrepareOptions()
    assert proc.stdout.splitlines() == [" ".join(STAGE_NAMES)] + [signature(s, vars(defaults)) for s in STAGES[1:]] \
        + ["|1|en|data"]
    assert proc.returncode == 2 and proc.stderr.strip().endswith("--language xx: the corpus language must be en, zh or ja")
    assert signature(STAGES[1], vars(defaults)) == "min_duration=0.5 max_duration=20 silence_db=-60"  # as markers hold it
    no_torch = subprocess.run([sys.executable, "-c", "import runpy, sys; sys.argv[1:] = ['--shell']; "
                               "runpy.run_module('valle.data.stages', run_name='__main__'); "
                               "assert 'torch' not in sys.modules and 'lhotse' not in sys.modules"],
                              capture_output=True, text=True, env=ENV)
    assert no_torch.returncode == 0 and "STAGE_NAMES=(" in no_torch.stdout, no_torch.stderr
    parsed = [prepare_corpus.parse_args(["normalize"]), compute_codes.parse_args([]),
              compute_text_tokens.parse_args([]), split_cuts.parse_args([])]
    for args in parsed:
        for name, value in vars(args).items():
            if name in ("data_dir",):
                assert str(value) == defaults.data_dir
            elif name in vars(defaults) and name != "symbols":
                assert value == getattr(defaults, name), name


def test_parse_options(tmp_path):
    script = tmp_path / "opts.sh"
    script.write_text("stage=0\nsome_name=default\n"
                      f". {REPO}/egs/shared/parse_options.sh\n"
                      'echo "stage=$stage some_name=$some_name rest=$*"\n')
    assert run([script, "--stage", "3", "--some-name=a b", "x"], cwd=tmp_path).stdout.strip() == \
        "stage=3 some_name=a b rest=x"
    bad = run([script, "--stgae", "3"], cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "unknown option --stgae" in bad.stderr
    missing = run([script, "--stage"], cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "needs a value" in missing.stderr
    helped = run([script, "--help"], cwd=tmp_path).stdout
    assert "--stage" in helped and "--some-name" in helped and "default" in helped


def test_libritts_prepare_manifest_stage_offline(tmp_path, fake_libritts):
    fake_libritts(tmp_path / "download" / "LibriTTS", {"dev-clean": "84", "train-clean-5": "19"})
    proc = run([REPO / "egs/libritts/prepare.sh", "--dataset-parts", "dev-clean train-clean-5",
                "--stop-stage", "0", "--num-jobs", "1"], cwd=tmp_path)
    assert "every part is in download/LibriTTS, skipping" in proc.stdout
    for part, speaker in [("dev-clean", "84"), ("train-clean-5", "19")]:
        lines = (tmp_path / "data/manifests" / f"entries_{part}.jsonl").read_text().splitlines()
        assert len(lines) == 2 and f'"speaker": "{speaker}"' in lines[0] and f'"part": "{part}"' in lines[0]
