"""Corpora of any size: sharded code extraction, lazy manifests, Shar, several processes and nodes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import train_metrics_so_far

from valle.data import codes, pipeline
from valle.data.codes import shard_path
from valle.data.files import open_cuts
from valle.data.normalize import NormalizeOptions

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture
def normalized(tmp_path, write_audio):
    """A data dir after the normalize stage: 8 cuts of 0.4-1.1 s by 2 speakers."""
    root, data = tmp_path / "corpus", tmp_path / "data"
    for i in range(8):
        write_audio(root / f"spk{i % 2}" / f"u{i}.wav", seconds=0.4 + 0.1 * i).with_suffix(".txt").write_text(
            f"Sentence number {i + 1}.")
    pipeline.stage_scan(root, data)
    pipeline.stage_normalize(data, NormalizeOptions(min_duration=0.1))
    return data


def codes_of(data) -> dict[str, np.ndarray]:
    cuts = open_cuts(data / "tokenized" / "cuts_all_codes.jsonl.gz")
    return {c.id: c.load_codes() for c in cuts}


class KilledCodec:
    """The random codec, counting the cuts it encodes (one per call), killed after `kill_after` of them: an error
    that is not Ctrl-C, so nothing is flushed (as with SIGKILL): what remains is the pieces written before."""

    def __init__(self, codec, kill_after: int | None = None):
        self.codec, self.kill_after, self.encoded = codec, kill_after, 0
        self.weights, self.max_batch_seconds = codec.weights, codec.max_batch_seconds

    def encode(self, waves):
        if self.encoded == self.kill_after:
            raise RuntimeError("killed")
        self.encoded += len(waves)
        return self.codec.encode(waves)


def test_two_shards_give_the_codes_of_one_and_a_killed_shard_resumes_from_its_pieces(normalized, random_codec,
                                                                                    tmp_path, monkeypatch):
    one = tmp_path / "one"
    shutil.copytree(normalized, one)
    pipeline.stage_codes(one, random_codec)
    h5 = normalized / "tokenized" / "codes_all.h5"
    shards = [shard_path(h5, k, 2) for k in range(2)]
    monkeypatch.setattr(codes, "PIECE_SECONDS", 1 / 75)  # a piece after every cut
    pieces = codes._pieces_dir(shards[0])
    with pytest.raises(RuntimeError, match="killed"):  # shard 0 (the first to run here) dies after 2 of its 4 cuts
        pipeline.stage_codes(normalized, KilledCodec(random_codec, 2), num_workers=1, rank=0, world_size=2)
    assert sorted(p.name for p in pieces.iterdir()) == ["1.h5", "2.h5"] and not shards[0].exists()
    counting = KilledCodec(random_codec)
    monkeypatch.setattr(codes, "PIECE_SECONDS", 600.0)
    for rank in (1, 0):  # every rank of a torchrun run of two processes; rank 0 writes the manifests
        pipeline.stage_codes(normalized, counting, num_workers=1, rank=rank, world_size=2)
    assert counting.encoded == 8 - 2  # the pieces' cuts were not encoded again
    assert all(s.is_file() and s.with_name(s.name + ".done").is_file() for s in shards) and not pieces.exists()
    sharded, single = codes_of(normalized), codes_of(one)
    assert sharded.keys() == single.keys() and len(sharded) == 8
    assert [k for k in single if not np.array_equal(sharded[k], single[k])] == []
    cuts = open_cuts(normalized / "tokenized" / "cuts_all_codes.jsonl.gz")
    assert {c.codes.array.storage_path for c in cuts} == {str(s) for s in shards}  # both shards have cuts


USER_ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}  # as users have it


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """A data folder after the normalize stage: 8 espeak-ng utterances of 2-5 s (near ties between codebook
    entries are common in real speech, rare in test tones) and one of about 11 s, three of them joined, which
    makes the shard that holds it the last to finish."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("spoken")
    subprocess.run([sys.executable, str(REPO / "egs" / "mini" / "make_corpus.py"), "--layout", "libritts",
                    "--output", str(root / "download"), "--per-speaker", "2", "--parts", "train-clean-100"],
                   check=True, capture_output=True, timeout=300)
    corpus = root / "download" / "LibriTTS" / "train-clean-100"
    waves = sorted(corpus.rglob("*.wav"))
    sf.write(str(corpus / "long.wav"), np.concatenate([sf.read(str(w))[0] for w in waves[:3]]), 24000)
    (corpus / "long.txt").write_text("Three sentences in one file.")
    pipeline.stage_scan(corpus, root / "data")
    pipeline.stage_normalize(root / "data", NormalizeOptions())
    return root / "data"


def compute_codes_cli(data, workers: int, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "valle", "prepare", "codes", "--data-dir", str(data),
                             "--codec-weights", "random", "--device", "cpu", "--num-workers", str(workers)],
                            env=USER_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def finished(proc: subprocess.Popen) -> None:
    with proc:  # its stderr pipe closed after
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]


@pytest.mark.slow  # three code stages of 40 s of speech, in processes of their own
def test_codes_are_the_same_from_one_process_two_workers_and_a_killed_and_resumed_run(spoken, tmp_path):
    # the default threads (torch's choice, as a user runs the command); one process and each of two workers
    # encoded with different thread counts, and a resumed shard alone with all of them: near-tie codes flipped
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(spoken, one)
    shutil.copytree(spoken, two)
    finished(compute_codes_cli(one, 1))
    killed = compute_codes_cli(two, 2, start_new_session=True)  # its workers are in its process group
    deadline = time.time() + 300
    while not list((two / "tokenized").glob("*.done")):  # the shorter shard is done, the other one is running
        assert killed.poll() is None and time.time() < deadline, killed.stderr.read()[-3000:]
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)
    with killed:
        killed.wait()
    assert len(list((two / "tokenized").glob("*.done"))) == 1
    finished(compute_codes_cli(two, 2))  # the killed shard runs again, alone
    single, resumed = codes_of(one), codes_of(two)
    assert len(single) == 9 and single.keys() == resumed.keys()
    assert [k for k in single if not np.array_equal(single[k], resumed[k])] == []


def test_a_data_folder_reads_the_same_from_any_folder_and_after_a_move(tmp_path, monkeypatch, write_audio, capsys):
    """The several-machines recipe runs the codes stage where prepare.sh did not run; a data folder is moved."""
    from valle.commands import compute_codes, prepare_corpus
    from valle.errors import UserError

    corpus, here, elsewhere = tmp_path / "corpus", tmp_path / "here", tmp_path / "elsewhere"
    write_audio(corpus / "a.wav", seconds=0.8).with_suffix(".txt").write_text("Referenced where it is.")
    write_audio(corpus / "b.wav", seconds=0.9, rate=16000).with_suffix(".txt").write_text("Converted into data.")
    for folder in (here, elsewhere):
        folder.mkdir()
    monkeypatch.chdir(here)
    prepare_corpus.main(["scan", "--corpus", str(corpus), "--data-dir", "data"])
    prepare_corpus.main(["normalize", "--data-dir", "data"])
    monkeypatch.chdir(elsewhere)
    compute_codes.main(["--data-dir", "../here/data", "--codec-weights", "random", "--device", "cpu"])
    moved = shutil.move(here / "data", tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    cuts = {c.id: c for c in open_cuts(Path(moved) / "tokenized" / "cuts_all_codes.jsonl.gz")}
    assert cuts["b"].recording.sources[0].source == str(Path(moved) / "audio" / "b.flac")
    assert all(c.load_audio().shape[1] == c.num_samples and len(c.load_codes()) for c in cuts.values())
    shutil.move(corpus, tmp_path / "renamed")  # the referenced file is gone: one line saying why
    (Path(moved) / ".codes.done").unlink()
    with pytest.raises(UserError, match=f"^{corpus / 'a.wav'} not found: cut a was prepared from it; if the corpus "
                                        "moved, prepare the data folder again from stage 0$"):
        compute_codes.main(["--data-dir", str(moved), "--codec-weights", "random", "--device", "cpu"])


# ----------------------------------------------------------------------------------------- training sources

def tiny_config(tmp_path, data, exp: str, **data_kw):
    from valle.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig

    data_cfg = DataConfig(**{"manifest_dir": str(data), "num_workers": 0, "num_buckets": 1, "shuffle": False,
                             "max_duration": 20, **data_kw})
    train = TrainConfig(exp_dir=str(tmp_path / exp), init_checkpoint="none", device="cpu", max_steps=4,
                        model_name="ar", codec_weights="none", log_interval=1, valid_interval=2)
    return ExperimentConfig(ModelConfig(d_model=64, nhead=4, num_layers=2), data_cfg, OptimConfig(), train)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """40 train and 6 dev cuts with random codes, and their Shar export (two shards a split at most)."""
    from valle.data.shar import export_shar
    from valle.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path_factory.mktemp("synthetic"), num_train=40, num_dev=6)
    export_shar(data, data / "shar", shard_size=40, audio=False)
    return data


def test_training_from_shar_gives_the_losses_of_jsonl_and_hdf5(synthetic, tmp_path, single_thread):
    from conftest import metrics

    from valle.training.trainer import Trainer

    Trainer(tiny_config(tmp_path, synthetic, "jsonl"), {}).fit()
    Trainer(tiny_config(tmp_path, synthetic, "shar", shar_dir=str(synthetic / "shar")), {}).fit()
    for split in ("train", "valid"):
        jsonl, shar = metrics(tmp_path / "jsonl", split), metrics(tmp_path / "shar", split)
        assert len(jsonl) >= 3 and [r["step"] for r in jsonl] == [r["step"] for r in shar]
        assert [r["loss"] for r in jsonl] == pytest.approx([r["loss"] for r in shar], rel=1e-6)
    assert (synthetic / "shar" / "train" / "duration_bins.json").is_file()


def test_reading_shar_leaves_no_file_open(synthetic, tmp_path, single_thread):
    # lhotse hands each shard file to tarfile, which never closes a file it was given: every epoch and every
    # validation left open files behind (ResourceWarning), held until garbage collection when training
    # stopped mid-shard. Training that stops mid-epoch, validation, and a whole split read lazily close them all.
    import gc
    import warnings

    from valle.data.shar import shar_cuts
    from valle.training.trainer import Trainer

    gc.collect()  # files left by earlier tests of this process are not this test's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(tiny_config(tmp_path, synthetic, "exp", shar_dir=str(synthetic / "shar")), {}).fit()
        assert all(c.load_codes().shape[1] == 8 for c in shar_cuts(synthetic / "shar" / "dev"))
        next(iter(shar_cuts(synthetic / "shar" / "train")))  # stopped after the first cut
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_truncated_shar_shard_is_one_line_naming_it(synthetic, tmp_path, damage):
    import shutil

    from valle.errors import UserError
    from valle.training.trainer import Trainer

    shar = tmp_path / "shar"
    shutil.copytree(synthetic / "shar", shar)
    shard = shar / "train" / "codes.000000.tar"
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:-700])
    with pytest.raises(UserError) as e:
        Trainer(tiny_config(tmp_path, synthetic, "exp", shar_dir=str(shar)), {})
    assert str(shard) in str(e.value) and damage in str(e.value) and "\n" not in str(e.value)


def test_training_from_shar_resumes_exactly(synthetic, tmp_path, single_thread):
    # a resume restores model, optimizer, scheduler, RNG and the position in the epoch: the epoch's shards are
    # read again in the same (seeded) order and the batches already trained on are dropped
    from conftest import metrics

    from valle.training.trainer import Trainer

    def run(exp: str, steps: int, resume: bool = False):
        cfg = tiny_config(tmp_path, synthetic, exp, shar_dir=str(synthetic / "shar"), shuffle=True)
        cfg.train.max_steps, cfg.train.resume = steps, resume
        Trainer(cfg, {}).fit()

    run("whole", 4)
    run("resumed", 2)
    run("resumed", 4, resume=True)
    whole, resumed = metrics(tmp_path / "whole", "train"), metrics(tmp_path / "resumed", "train")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in whole], rel=1e-6)


# ----------------------------------------------------------------------------------------- processes and nodes

def trainer_cli(data, exp, *extra) -> list[str]:
    return ["-m", "valle", "train", "--manifest-dir", str(data), "--exp-dir", str(exp), "--device", "cpu",
            "--num-workers", "0", "--init-checkpoint", "none", "--d-model", "64", "--nhead", "4", "--num-layers", "2",
            "--codec-weights", "none", "--num-buckets", "1", "--max-duration", "10", "--log-interval", "1", *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checksum(exp) -> str:
    lines = (exp / "log" / "train-rank0.log").read_text().splitlines()
    return [line.split("checksum ")[1] for line in lines if "parameter checksum" in line][-1]


@pytest.mark.slow  # three torchrun launches
def test_two_nodes_on_localhost_reach_the_parameters_of_one_node_with_two_processes(synthetic, tmp_path):
    # the recipe's train.sh: --num-gpus 2 (one node, two processes) vs --num-nodes 2 (c10d rendezvous, one each)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    train_sh = str(REPO / "egs" / "libritts" / "train.sh")

    def args(exp, *launch):  # trainer_cli's --exp-dir is train.sh's to set
        cli = trainer_cli(synthetic, exp, "--max-steps", "3", "--valid-interval", "3")[3:]
        i = cli.index("--exp-dir")
        return [train_sh, "--model-name", "ar", "--exp-dir", str(exp), *launch, *cli[:i], *cli[i + 2:]]

    proc = subprocess.run(args(tmp_path / "one", "--num-gpus", "2"), env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    port = str(free_port())
    nodes = [subprocess.Popen(args(tmp_path / "two", "--num-nodes", "2", "--node-rank", str(r), "--master-addr",
                                   "127.0.0.1", "--master-port", port), env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        errors = [node.communicate(timeout=300)[1] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [n.returncode for n in nodes] == [0, 0], errors
    assert checksum(tmp_path / "two" / "ar") == checksum(tmp_path / "one" / "ar")


@pytest.mark.slow  # two trainer processes
def test_a_rank_that_dies_stops_the_others_with_a_message(synthetic, tmp_path):
    exp, port = tmp_path / "exp", free_port()
    ranks = []
    for rank in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        ranks.append(subprocess.Popen([sys.executable, *trainer_cli(synthetic, exp, "--max-steps", "1000")], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.time() + 240
        while not train_metrics_so_far(exp):  # rank 0 has trained a step: both ranks are in the loop
            assert time.time() < deadline and ranks[0].poll() is None, "training did not start"
            time.sleep(0.5)
        ranks[1].kill()
        stderr = ranks[0].communicate(timeout=120)[1]  # no hang: it stops on its own
    finally:
        for r in ranks:
            r.kill()
    assert ranks[0].returncode == 2, stderr[-2000:]
    assert "error: rank 0 of 2: another rank died or stopped answering" in stderr.strip().splitlines()[-1], stderr
    assert "Traceback" not in stderr


# ----------------------------------------------------------------------------------------- the LibriTTS layout

@pytest.mark.slow  # espeak-ng voices, then every stage of egs/libritts
def test_libritts_layout_corpus_goes_through_every_stage_sharded_and_into_shar(tmp_path):
    import json

    import soundfile as sf
    from conftest import speechlike

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(REPO / "egs" / "mini" / "make_corpus.py"), "--layout", "libritts",
                    "--output", str(tmp_path / "download"), "--per-speaker", "3"], env=env, check=True, timeout=300)
    chapter = tmp_path / "download" / "LibriTTS" / "train-clean-100" / "300" / "3000"
    stereo = chapter / "300_3000_000000_000001.wav"
    sf.write(str(stereo), speechlike(1.5, 44100, channels=2), 44100)  # not as LibriTTS has it: converted
    proc = subprocess.run([str(REPO / "egs" / "libritts" / "prepare.sh"), "--stage", "0", "--download-dir",
                           str(tmp_path / "download"), "--data-dir", str(tmp_path / "data"), "--codec-weights",
                           "random", "--num-jobs", "1", "--num-workers", "2", "--format", "shar"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "data" / "summary.json").read_text())
    assert summary["normalize"]["kept"] == 36
    assert (summary["normalize"]["referenced_files"], summary["normalize"]["converted_files"]) == (35, 1)
    assert (tmp_path / "data" / "conversions.tsv").read_text().startswith(f"{stereo}\t2 channels at 44100 Hz")
    assert list((tmp_path / "data" / "audio").glob("*.flac")) == [tmp_path / "data" / "audio" / f"{stereo.stem}.flac"]
    split = summary["split"]
    assert split["dev"]["cuts"] == split["test"]["cuts"] == 12 and split["train"]["cuts"] == 12
    tokenized = tmp_path / "data" / "tokenized"
    assert len(list(tokenized.glob("codes_train-clean-100.*-of-00002.h5.done"))) == 2  # two shards, both done
    for name in ("train", "dev", "test"):
        assert (tmp_path / "data" / "shar" / name / "codes.000000.tar").is_file()


def test_training_cuts_are_lazy_and_duration_bins_are_stored_with_the_data(synthetic, tmp_path):
    import json
    import shutil

    from valle.config import DataConfig
    from valle.data.dataset import open_split

    data = tmp_path / "data"
    shutil.copytree(synthetic, data, ignore=shutil.ignore_patterns("shar", "*.duration_bins.json"))
    cfg = DataConfig(manifest_dir=str(data), num_buckets=3)
    split = open_split(cfg, "train", write_bins=True)
    assert split.cuts.is_lazy and len(split.bins) == 2
    store = data / "cuts_train.duration_bins.json"
    saved = json.loads(store.read_text())
    store.write_text(json.dumps({**saved, "bins": [1.5, 2.5]}))
    assert open_split(cfg, "train", write_bins=True).bins == [1.5, 2.5]  # estimated once, then read
    assert open_split(DataConfig(manifest_dir=str(data), num_buckets=4), "train", write_bins=False).bins != [1.5, 2.5]
    manifest = data / "cuts_train.jsonl.gz"
    os.utime(manifest, ns=(manifest.stat().st_atime_ns, manifest.stat().st_mtime_ns + 10**9))  # prepared again
    assert open_split(cfg, "train", write_bins=True).bins == split.bins
