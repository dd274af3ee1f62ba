"""The web app's functions, without a browser: workspace confinement, upload limits, data preparation
(markers shared with the recipe, resume, the lock), the trainer's command line, the job's state and
stop, the Train tab's views, synthesis and presets, readable errors, and the host check."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from valle.app import prepare, synthesis, training
from valle.app.workspace import Workspace, safe_name
from valle.data.stages import stage_run
from valle.errors import UserError
from valle.locks import folder_lock

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "vallex_tiny"


@pytest.fixture
def ws(tmp_path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    return Workspace(root)


# ------------------------------------------------------------------------------------------ workspace


def test_paths_typed_in_the_page_stay_inside_the_workspace(ws, tmp_path):
    assert ws.path("data/tokenized", "data folder") == ws.root / "data" / "tokenized"
    assert ws.path(str(ws.root / "exp"), "experiment folder") == ws.root / "exp"
    for outside in ("../elsewhere", "/etc/passwd", "data/../../x", "~"):
        with pytest.raises(UserError, match=r"data folder .* is outside the workspace"):
            ws.path(outside, "data folder")
    (tmp_path / "secret").mkdir()
    (ws.root / "link").symlink_to(tmp_path / "secret")  # a symlink does not lead out either
    with pytest.raises(UserError, match="outside the workspace"):
        ws.path("link/key", "checkpoint")
    with pytest.raises(UserError, match="checkpoint: empty"):
        ws.path("  ", "checkpoint")
    with pytest.raises(UserError, match="does not exist"):
        ws.path("nope.pt", "checkpoint", must_exist=True)
    with pytest.raises(UserError, match="--workspace .*no such folder"):
        Workspace(tmp_path / "missing")


def test_uploads_have_a_size_limit_and_plain_names(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    ws = Workspace(root, max_upload_mb=0.001)  # 1 KiB
    small, big = tmp_path / "small.txt", tmp_path / "big.wav"
    small.write_text("hello")
    big.write_bytes(b"\0" * 2048)
    assert ws.take_upload(small, root / "up").read_text() == "hello"
    with pytest.raises(UserError,
                       match=r"upload big.wav: 0.0 MB is over the limit of 0 MB \(valle app --max-upload-mb\)"):
        ws.take_upload(big, root / "up")
    assert safe_name("../../etc/passwd") == "passwd" and safe_name("a\\b.wav") == "b.wav"
    for bad in (".hidden", "..", ""):
        with pytest.raises(UserError, match="cannot be a file name"):
            safe_name(bad)


def test_uploads_become_a_corpus_folder_or_a_metadata_file(ws, tmp_path, write_audio):
    src = tmp_path / "src"
    wav = write_audio(src / "a.wav", seconds=0.6)
    (src / "a.txt").write_text("Hello there.")
    assert prepare.import_uploads(ws, [wav, src / "a.txt"], "mine") == "uploads/mine"
    (src / "meta.csv").write_text("a.wav|Hello there.\n")
    assert prepare.import_uploads(ws, [wav, src / "meta.csv"], "meta") == "uploads/meta/meta.csv"
    (src / "more.list").write_text("a.wav|Hi.\n")
    with pytest.raises(UserError, match="2 metadata files uploaded"):
        prepare.import_uploads(ws, [wav, src / "meta.csv", src / "more.list"], "two")
    with pytest.raises(UserError, match="no files uploaded"):
        prepare.import_uploads(ws, [], "none")


# ---------------------------------------------------------------------------------------------- data


@pytest.mark.slow  # the mini corpus
def test_stage_markers_are_the_recipes(mini_data):
    """The page writes and reads the same .<stage>.done signatures as the recipe's stage CLIs."""
    data_dir = mini_data.parent
    corpus = (data_dir.parent / "corpus").resolve()
    opts = prepare.PrepareOptions(str(corpus), codec_weights="random", dev_ratio=0.1, test_ratio=0.05)
    for name in prepare.STAGES:
        run = stage_run(name, data_dir, opts)
        assert (data_dir / f".{name}.done").read_text().rstrip("\n") == run.signature


def test_prepare_runs_resumes_and_takes_the_data_lock(ws, write_audio, single_thread):
    corpus = ws.root / "corpus" / "spk"
    for i, text in enumerate(["Hello there.", "Good morning.", "See you soon.", "Thank you."]):
        write_audio(corpus / f"u{i}.wav", seconds=0.8, rate=16000)
        (corpus / f"u{i}.txt").write_text(text)
    write_audio(corpus / "quiet.wav", silent=True)
    (corpus / "quiet.txt").write_text("Nothing.")
    opts = prepare.PrepareOptions("corpus", "data", tokenizer="espeak", codec_weights="random", device="cpu")
    seen = []
    result = prepare.run_prepare(ws, opts, lambda fraction, desc: seen.append((fraction, desc)))
    assert [line.split(":")[0] for line in result.stages] == [f"stage {i} ({n})" for i, n in enumerate(prepare.STAGES)]
    assert all("done in" in line for line in result.stages) and seen[-1] == (1.0, "done")
    assert result.rejected == [("corpus/spk/quiet.wav", "silence: RMS level -inf dBFS is below --silence-db -60.0")]
    assert len(result.conversions) == 4 and "resampled" in result.conversions[0][1]
    assert result.summary_text.startswith("kept: 4 utterances") and "data/rejected.tsv" in result.summary_text
    # the data check: the four files hold the same synthetic speech-like signal, without pauses (nothing usable)
    assert re.fullmatch(r"all 4 files are flagged \(low signal-to-noise \(4\), duplicate audio \(3\)\): .*; "
                        r"see data/check\.html", result.verdict)
    assert [path for path, _ in result.flagged] == [f"corpus/spk/u{i}.wav" for i in range(4)]
    codes = (ws.root / "data" / "tokenized" / "codes_all.h5").stat().st_mtime_ns

    again = prepare.run_prepare(ws, opts)  # same options: nothing runs again
    assert all("skipped" in line for line in again.stages)
    opts.dev_ratio = 0.3  # only the split stage runs again
    third = prepare.run_prepare(ws, opts)
    assert ["skipped" in line for line in third.stages] == [True, True, True, True, True, False]
    assert (ws.root / "data" / "tokenized" / "codes_all.h5").stat().st_mtime_ns == codes

    with folder_lock(ws.root / "data", "data preparation"):  # e.g. the recipe running on the same folder
        with pytest.raises(UserError, match=r"data is in use by pid \d+ .*wait for that data preparation"):
            prepare.run_prepare(ws, opts)
    with pytest.raises(UserError, match="corpus 'nowhere'.* does not exist"):
        prepare.run_prepare(ws, prepare.PrepareOptions("nowhere"))
    with pytest.raises(UserError, match="^--language fr: use en, zh or ja$"):  # PrepareOptions checks itself
        prepare.PrepareOptions("corpus", language="fr")


# --------------------------------------------------------------------------------------------- train


def test_trainer_command_line(ws):
    opts = training.TrainOptions(exp_dir="exp/ar", init_checkpoint="none", max_steps=6, extra="--d-model 64 --nhead 4")
    with pytest.raises(UserError, match="data folder 'data': .* does not exist"):
        training.trainer_argv(ws, opts)
    (ws.root / "data" / "tokenized").mkdir(parents=True)
    with pytest.raises(UserError,
                       match="data/tokenized/cuts_train.jsonl.gz not found: prepare the data in the Data tab"):
        training.trainer_argv(ws, opts)
    (ws.root / "data" / "tokenized" / "cuts_train.jsonl.gz").touch()
    argv = training.trainer_argv(ws, opts, resume=True)
    assert argv[:4] == [sys.executable, "-m", "valle", "train"]
    pairs = dict(zip(argv[4::2], argv[5::2]))
    assert pairs["--manifest-dir"] == str(ws.root / "data" / "tokenized")
    assert pairs["--exp-dir"] == str(ws.root / "exp" / "ar") and pairs["--init-checkpoint"] == "none"
    assert pairs["--max-steps"] == "6" and pairs["--d-model"] == "64" and pairs["--resume"] == "true"
    assert "--overwrite" not in argv and "--overwrite" in training.trainer_argv(ws, opts, overwrite=True)

    for extra, message in [("--exp-dir /tmp/x", "--exp-dir is not a trainer flag the page passes on"),
                           ("--init-checkpoint=/etc/x", "--init-checkpoint=/etc/x is not a trainer flag"),
                           ("d-model 64", "'d-model' is not a flag"), ("--d-model '64", "No closing quotation")]:
        with pytest.raises(UserError, match=message):
            training.trainer_argv(ws, training.TrainOptions(extra=extra))
    with pytest.raises(UserError, match="start checkpoint '../x.pt' is outside the workspace"):
        training.trainer_argv(ws, training.TrainOptions(init_checkpoint="../x.pt"))


def _fake_trainer(exp_dir: Path, *names: str) -> subprocess.Popen:
    """A process whose command line names the trainer, holding exp_dir's lock the way the trainer does."""
    # SIGINT as the real trainer handles it, even when the test runs as a background job (SIGINT ignored there)
    code = ("import signal, sys, time; from valle.locks import folder_lock\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "with folder_lock(sys.argv[1], 'training'):\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(exp_dir), *(names or ("valle", "train"))],
                            stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline() == b"locked\n"
    return proc


@pytest.mark.parametrize("names", [("/usr/local/bin/valle", "train"), ("-m", "valle", "train")])
def test_a_trainer_started_as_module_or_console_script_is_found(ws, names):
    exp_dir = ws.root / "exp" / "nar"
    proc = _fake_trainer(exp_dir, *names)
    try:
        assert training.running_pid(exp_dir) == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_running_job_is_found_from_its_folder_and_stopped(ws):
    exp_dir = ws.root / "exp" / "ar"
    jobs = training.Jobs()  # a fresh app (or a reloaded page) knows of no job
    assert training.running_pid(exp_dir) is None and jobs.state(exp_dir) == "not running"
    proc = _fake_trainer(exp_dir)
    try:
        assert training.running_pid(exp_dir) == proc.pid and jobs.state(exp_dir) == "running"
        (ws.root / "data" / "tokenized").mkdir(parents=True)
        (ws.root / "data" / "tokenized" / "cuts_train.jsonl.gz").touch()
        with pytest.raises(UserError, match=r"exp/ar is in use by pid \d+ .*stop that training first"):
            jobs.start(ws, training.TrainOptions(exp_dir="exp/ar"))
        assert "SIGINT to pid" in jobs.stop(exp_dir)
        assert proc.wait(30) != 0  # KeyboardInterrupt
        jobs.started[exp_dir] = proc  # as if the page had started it
        assert jobs.state(exp_dir) == "stopped (Resume continues from last.pt, the last step saved)"
    finally:
        proc.kill()
        proc.wait()
    assert training.running_pid(exp_dir) is None  # the lock file still names the pid, which is gone
    with pytest.raises(UserError, match="no training is running in ar"):
        jobs.stop(exp_dir)
    (exp_dir / ".lock").write_text(f"pid {os.getpid()} on {socket.gethostname()} since now: pytest\n")
    assert training.running_pid(exp_dir) is None  # alive, but not a trainer (even if run as pytest test_trainer.py)


def _wait(condition, what: str, timeout: float = 240.0):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.mark.slow  # two trainer start-ups
def test_stop_is_clean_and_resume_continues(ws, write_audio, single_thread):
    """Stop = SIGINT: the trainer finishes its step and writes last.pt; Resume continues from that step."""
    corpus = ws.root / "corpus" / "spk"
    for i, text in enumerate(["Hello there.", "Good morning.", "See you soon.", "Thank you."]):
        write_audio(corpus / f"u{i}.wav", seconds=1.0)
        (corpus / f"u{i}.txt").write_text(text)
    prepare.run_prepare(ws, prepare.PrepareOptions("corpus", tokenizer="espeak", codec_weights="random", device="cpu"))
    exp_dir = ws.root / "exp" / "ar"
    jobs = training.Jobs()
    opts = training.TrainOptions(exp_dir="exp/ar", init_checkpoint="none", max_steps=1000, max_duration=30,
                                 extra="--d-model 32 --nhead 2 --num-layers 1 --num-workers 0 --log-interval 1 "
                                       "--device cpu --num-buckets 2")
    jobs.start(ws, opts)
    _wait(lambda: len([r for r in training.read_metrics(exp_dir) if r["split"] == "train"]) >= 2, "two steps")
    assert jobs.state(exp_dir) == "running"
    jobs.stop(exp_dir)
    _wait(lambda: jobs.state(exp_dir) != "running", "the stop", 120)
    assert jobs.state(exp_dir) == "stopped (Resume continues from last.pt, the last step saved)"
    from valle.models.checkpoint import load_checkpoint

    stopped_at = load_checkpoint(exp_dir / "last.pt").train_state["progress"]["step"]
    steps = [r["step"] for r in training.read_metrics(exp_dir) if r["split"] == "train"]
    assert stopped_at == steps[-1] >= 2 and stopped_at < 1000
    assert "SIGINT: stopping after this step" in training.log_tail(exp_dir, 50)

    opts.max_steps = stopped_at + 2
    jobs.start(ws, opts, resume=True)
    _wait(lambda: jobs.state(exp_dir) != "running", "the resumed run")
    assert jobs.state(exp_dir) == "finished", training.log_tail(exp_dir)
    steps = [r["step"] for r in training.read_metrics(exp_dir) if r["split"] == "train"]
    assert steps == list(range(1, stopped_at + 3))  # each step logged once, continuing where it stopped


def test_train_tab_views(tmp_path):
    exp = tmp_path / "exp"
    (exp / "log").mkdir(parents=True)
    records = [{"split": "valid", "step": 0, "epoch": 1, "loss": 7.0, "top10_acc": 0.1},
               {"split": "train", "step": 1, "epoch": 1, "loss": 6.5, "top10_acc": 0.2, "lr": 0.01},
               {"split": "valid", "step": 2, "epoch": 1, "loss": 6.0, "top10_acc": 0.3},
               {"split": "train", "step": 3, "epoch": 2, "loss": 5.5, "top10_acc": 0.4, "lr": 0.01},
               {"split": "valid", "step": 4, "epoch": 2, "loss": 6.2, "top10_acc": 0.35}]
    lines = [json.dumps(r) for r in records] + ['{"split": "tra']  # a line being written
    (exp / "log" / "metrics.jsonl").write_text("\n".join(lines))
    read = training.read_metrics(exp)
    assert read == records
    table = training.curves(read)
    assert list(table.columns) == ["step", "split", "loss", "top10_acc"] and len(table) == 5
    (exp / "best-valid-loss.pt").touch()
    text = training.summary(exp, read, "running")
    assert text == ("**running** · step 3 (epoch 2): train loss 5.5000, top-10 acc 0.400 · valid loss 6.2000 at "
                    "step 4; best 6.0000 at step 2 · best checkpoint: `best-valid-loss.pt` in this folder")
    line = "fine-tuning did not beat the released model on your voice: SIM 0.61 vs 0.63; keep the released model ..."
    (exp / "verdict.json").write_text(json.dumps({"beaten": False, "verdict": line}))
    assert training.summary(exp, read, "finished").endswith(f"in this folder · ⚠ {line}")
    (exp / "verdict.json").write_text(json.dumps({"beaten": True, "verdict": "fine-tuning beat ..."}))
    assert training.summary(exp, read, "finished").endswith("in this folder")  # nothing to warn about
    (exp / training.CONSOLE).write_text("start\nepoch 1: 0step [00:00, ?step/s]\rINFO step 1\n\nepoch 1: 3step "
                                        "[00:01,  2.5step/s]   \nerror: boom\n")
    assert training.log_tail(exp) == "start\nINFO step 1\nerror: boom"
    assert training.log_tail(exp, lines=1) == "error: boom"


def test_the_latest_validation_sample_comes_from_tensorboard(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    exp = tmp_path / "exp"
    assert training.valid_sample(exp, tmp_path / "out") is None
    writer = SummaryWriter(str(exp / "tensorboard"))
    for step, seconds in ((2, 0.5), (4, 0.25)):
        writer.add_audio("valid/sample", torch.zeros(1, int(24000 * seconds)), step, sample_rate=24000)
    writer.close()
    path = training.valid_sample(exp, tmp_path / "out")
    assert path.endswith("step4.wav")
    info = sf.info(path)
    assert info.samplerate == 24000 and info.frames == 6000


# ---------------------------------------------------------------------------------------- synthesize


@pytest.fixture
def tiny_ws(ws):
    import shutil

    shutil.copy(TINY / "tiny.pt", ws.root / "tiny.pt")
    shutil.copy(TINY / "prompt.npz", ws.root / "voice.npz")
    return ws


@pytest.mark.slow  # the vallex g2p loads
def test_synthesize_with_a_preset_and_save_a_recording_as_preset(tiny_ws, tmp_path, write_audio, single_thread,
                                                                   random_codec):
    synth = synthesis.Synthesis(tiny_ws, device="cpu")
    synth._codec = ("random", random_codec)  # built once per test session
    opts = synthesis.SynthOptions("tiny.pt", "Hello world.", prompt="preset", preset="voice.npz", top_k=1,
                                  max_frames=20, codec_weights="random")
    wav, npy, message = synth.synthesize(opts)
    codes = np.load(npy)
    assert codes.ndim == 2 and codes.shape[1] == 8 and 0 < len(codes) <= 20
    assert sf.info(str(wav)).frames == len(codes) * 320 and wav.parent == tiny_ws.root / "synth"
    assert message.startswith(f"synth/{wav.name}: ") and f"{len(codes)} frames" in message
    again, _, _ = synth.synthesize(opts)  # greedy: the same codes (and the model stayed loaded)
    assert np.array_equal(sf.read(str(again))[0], sf.read(str(wav))[0])

    recording = write_audio(tmp_path / "me.wav", seconds=1.0, rate=44100, channels=2)
    rec = synthesis.SynthOptions("tiny.pt", "x", prompt="recording", prompt_audio=str(recording),
                                 prompt_text="Hello there.", codec_weights="random")
    assert synth.save_preset(rec, "my voice").startswith("saved presets/my voice.npz: 1.00 s")
    from valle.inference import load_prompt

    preset = load_prompt(tiny_ws.root / "presets" / "my voice.npz")
    assert preset.codes.shape == (75, 8) and preset.language == "en"


def test_synthesis_errors_name_the_field(tiny_ws):
    synth = synthesis.Synthesis(tiny_ws, device="cpu")
    cases = [
        (dict(text="  "), "text: empty"),
        (dict(top_p=0.0), "top-p 0.0"),
        (dict(checkpoint="../../x.pt"), "checkpoint '../../x.pt' is outside the workspace"),
        (dict(checkpoint="missing.pt"), "checkpoint 'missing.pt': .* does not exist"),
        (dict(prompt="recording"), "voice prompt: upload or record the voice first"),
        (dict(prompt="preset"), "voice prompt: pick a preset"),
    ]
    for change, message in cases:
        opts = synthesis.SynthOptions(**{**dict(checkpoint="tiny.pt", text="Hi.", codec_weights="random"), **change})
        with pytest.raises(UserError, match=message):
            synth.synthesize(opts)
    with pytest.raises(UserError, match="choose 'recording' as the voice prompt"):
        synth.save_preset(synthesis.SynthOptions("tiny.pt", "Hi."), "v")


@pytest.mark.slow  # the mini corpus
def test_compare_two_checkpoints_on_the_same_sentences(mini_data, tiny_ws, single_thread):
    from valle.app.compare import SUMMARY_HEADERS, CompareOptions, run_compare

    (tiny_ws.root / "data").mkdir()
    (tiny_ws.root / "data" / "tokenized").symlink_to(mini_data)
    (tiny_ws.root / "other.pt").write_bytes((tiny_ws.root / "tiny.pt").read_bytes())
    opts = CompareOptions(["tiny.pt", "other.pt"], num_utterances=2, prompt="voice.npz", max_frames=30,
                          codec_weights="random", speaker_model="none")
    result = run_compare(tiny_ws, opts)
    assert result.message == ("2 checkpoint(s) on 2 sentences of data/tokenized/cuts_test.jsonl.gz; "
                              "report in eval/")
    assert [row[0] for row in result.summary] == ["ground_truth", "ws-tiny", "ws-other"]  # folder-name labels
    assert all(len(row) == len(SUMMARY_HEADERS) and row[4] == "–" for row in result.summary)  # no SIM asked for
    assert [p.name for p in result.files] == ["report.html", "report.json", "utterances.tsv"] and result.chart.is_file()
    assert len(result.grid) == 2
    for _utterance, text, systems in result.grid:
        assert text and [name for name, _ in systems] == ["ground_truth", "ws-tiny", "ws-other"]
        assert all(wav.is_file() and wav.parent.parent.parent == tiny_ws.root / "eval" for _, wav in systems)
    # the same weights, prompt and seed: the two checkpoints say exactly the same
    first = result.grid[0][2]
    assert np.array_equal(sf.read(str(first[1][1]))[0], sf.read(str(first[2][1]))[0])
    with pytest.raises(UserError, match="checkpoints: pick one or more"):
        run_compare(tiny_ws, CompareOptions([]))
    with pytest.raises(UserError, match="checkpoint '/etc/hosts' is outside the workspace"):
        run_compare(tiny_ws, CompareOptions(["/etc/hosts"]))


# ------------------------------------------------------------------------------------ page and CLI


@pytest.mark.slow  # importing gradio
def test_handlers_show_errors_as_one_line():
    pytest.importorskip("gradio")
    from valle.app.ui import guarded

    def mistake(x):
        raise UserError(f"corpus {x!r}: no such folder")

    def bug(x):
        raise KeyError("frames")

    assert guarded(mistake)("a") == "**Error:** corpus 'a': no such folder"
    status, skipped = guarded(bug, status=1, outputs=2)("a")[::-1]
    assert status == "**Error:** unexpected KeyError: 'frames' (the traceback is in the app's terminal)"
    assert guarded(lambda x: x * 2)(2) == 4


def test_listening_beyond_localhost_needs_a_flag(capsys):
    from valle.commands.app import check_host

    assert check_host("127.0.0.1", False) == "127.0.0.1"
    with pytest.raises(UserError, match="--host 0.0.0.0: .* unless you also pass --listen-all"):
        check_host("0.0.0.0", False)
    assert check_host("0.0.0.0", True) == "0.0.0.0"
    assert "WARNING: listening on 0.0.0.0: anyone who can reach this machine" in capsys.readouterr().err


def test_the_cli_refuses_a_missing_workspace(tmp_path):
    result = subprocess.run([sys.executable, "-m", "valle", "app", "--workspace", str(tmp_path / "no")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: --workspace {tmp_path / 'no'}: no such folder; " \
                                                      "create it or pass another one"


# ------------------------------------------------------------------------------------------ long recordings


@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None, reason="espeak-ng makes the recording")
def test_long_recordings_segment_edit_and_hand_over_to_prepare(ws, tmp_path):
    from long_recording import write_recording, write_reference

    from valle.app import long_recordings

    truth = write_recording(tmp_path / "talk.wav", 30, seed=4, interrupt=False, gaps=False)
    ref = write_reference(tmp_path / "ref.wav")
    out_dir, lines, rows = long_recordings.run_segment(ws, [str(tmp_path / "talk.wav")], "me", str(ref), 0, "none",
                                                       "en", 15.0)
    assert out_dir == "segments/me" and len(rows) == len(truth) and any(x.startswith("talk.wav: ") for x in lines)
    assert (ws.root / "uploads" / "me_long" / "talk.wav").is_file()
    others = [r for r in rows if "other_speaker" in r[-1]]
    assert len(others) == sum(t.voice != 0 for t in truth)
    target = [r for r in rows if "other_speaker" not in r[-1]]
    for k, r in enumerate(target):  # the page's edits: text typed in, kept; one row left out
        r[:2] = ["yes", f"Line {k + 1}, corrected."]
    target[1][0] = "no"
    metadata = long_recordings.apply_table(ws, out_dir, rows)
    assert metadata == "segments/me/metadata.txt"
    assert (ws.root / metadata).read_text().splitlines() == [
        f"clips/{r[2]}.wav|{r[1]}|talk" for r in target if r[0] == "yes"]
    saved = {r[2]: r[:2] for r in long_recordings.table(ws.root / out_dir)}
    assert all(saved[r[2]] == r[:2] for r in rows)
    assert long_recordings.clip(ws, out_dir, rows[0][2]).is_file()
    rows[2][0] = "maybe"
    with pytest.raises(UserError, match="keep is 'maybe'; write yes or no"):
        long_recordings.apply_table(ws, out_dir, rows)
    result = prepare.run_prepare(ws, prepare.PrepareOptions(metadata, "data", tokenizer="espeak", dev_ratio=0.2,
                                                            test_ratio=0.2, codec_weights="random", device="cpu"))
    assert result.stages[0].startswith("stage 0 (scan): done") and "split:" in result.summary_text
