"""The recipes end to end as a user runs them (bash + bin/ CLIs in subprocesses), offline."""

import os
import subprocess
import sys

import numpy as np
import pytest
from lhotse import CutSet

from conftest import REPO
from valle.audio import SAMPLE_RATE, num_frames
from valle.config import LANGUAGE_IDS
from valle.data.tokenize import code_frames

# one OpenMP thread: the machine running the tests may be busy, and these are tiny workloads
ENV = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
       "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}


def run(args, cwd, check=True):
    proc = subprocess.run(["bash", *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """egs/mini/prepare.sh on a small mini corpus (2 utterances per voice + the 2 bad examples)."""
    tmp = tmp_path_factory.mktemp("mini")
    proc = run([REPO / "egs/mini/prepare.sh", "--corpus-dir", tmp / "corpus", "--data-dir", tmp / "data",
                "--per-speaker", "2"], cwd=tmp)
    return tmp, proc.stdout + proc.stderr


def test_mini_prepare_end_to_end(mini):
    tmp, output = mini
    data = tmp / "data"
    splits = {s: CutSet.from_file(data / "tokenized" / f"cuts_{s}.jsonl.gz").to_eager() for s in ("train", "dev", "test")}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [6, 1, 1]
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
    assert "split: train 6 cuts" in output


def test_mini_rerun_skips_finished_stages(mini):
    tmp, _ = mini
    proc = run([REPO / "egs/mini/prepare.sh", "--corpus-dir", tmp / "corpus", "--data-dir", tmp / "data"], cwd=tmp)
    assert "not regenerated" in proc.stdout
    for n, name in enumerate(["corpus", "normalize", "codes", "text", "split"]):
        assert f"stage {n} ({name}): done before with the same options, skipping" in proc.stdout


def test_changed_option_reruns_only_its_stage(mini):
    tmp, _ = mini
    before = {s: CutSet.from_file(tmp / "data/tokenized" / f"cuts_{s}.jsonl.gz").ids for s in ("dev", "test")}
    proc = run([REPO / "egs/mini/prepare.sh", "--corpus-dir", tmp / "corpus", "--data-dir", tmp / "data",
                "--seed", "7"], cwd=tmp)
    assert "stage 3 (text): done before" in proc.stdout and "stage 4 (split): split" in proc.stdout
    after = {s: CutSet.from_file(tmp / "data/tokenized" / f"cuts_{s}.jsonl.gz").ids for s in ("dev", "test")}
    assert before != after
    run([REPO / "egs/mini/prepare.sh", "--corpus-dir", tmp / "corpus", "--data-dir", tmp / "data"], cwd=tmp)


def test_custom_prepare_needs_a_corpus(tmp_path):
    proc = run([REPO / "egs/custom/prepare.sh"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "--corpus is required" in proc.stderr
    proc = run([REPO / "egs/custom/prepare.sh", "--corpus", tmp_path / "nowhere", "--stop-stage", "0"],
               cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no such folder or metadata file" in proc.stderr
    assert not (tmp_path / "data" / ".corpus.done").exists()
    proc = run([REPO / "egs/custom/prepare.sh", "--corpus", tmp_path, "--language", "fr"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--language fr" in proc.stderr and "en, zh or ja" in proc.stderr


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
