"""The page: Data, Train, Synthesize and Compare tabs over valle.app.prepare / training / synthesis / compare.

Every handler returns its outcome in the tab's status line; a mistake (UserError) is shown there as one
readable line, anything unexpected as its type and message (the traceback goes to the app's terminal only).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from valle.app import compare, long_recordings, prepare, synthesis, training
from valle.app.workspace import Workspace
from valle.config import LANGUAGES
from valle.data.segment.cuts import MAX_SEGMENT
from valle.data.segment.pipeline import TRANSCRIBE, SegmentOptions
from valle.errors import UserError
from valle.models.precision import PRECISIONS
from valle.text import INPUT_LANGUAGES

log = logging.getLogger("valle.app")
REFRESH_SECONDS = 2.0
CHECKPOINT_PATTERNS = ("**/*.pt", "**/*.safetensors")
PRESET_PATTERNS = ("**/*.npz",)


def error_text(message: str) -> str:
    return f"**Error:** {message}"


def guarded(fn, status: int = 0, outputs: int = 1):
    """Wrap a handler: a raised error becomes the status output (index `status` of `outputs`), the rest unchanged."""

    @functools.wraps(fn)  # keeps the signature: Gradio still sees a `progress` parameter
    def handler(*args, **kw):
        try:
            return fn(*args, **kw)
        except UserError as e:
            message = str(e)
        except Exception as e:  # noqa: BLE001  (the page shows one line; the terminal gets the traceback)
            log.exception("unexpected error in %s", fn.__name__)
            message = f"unexpected {type(e).__name__}: {e} (the traceback is in the app's terminal)"
        if outputs == 1:
            return error_text(message)
        values = [gr.skip()] * outputs
        values[status] = error_text(message)
        return tuple(values)

    return handler


class App:
    """The state shared by every browser session: the workspace, training jobs, the loaded model."""

    def __init__(self, ws: Workspace, device: str = "auto"):
        from valle.device import resolve_device

        self.ws = ws
        self.device = resolve_device(device)  # auto -> cuda when a GPU is visible, else cpu
        self.jobs = training.Jobs()
        self.synth = synthesis.Synthesis(ws, device)
        self.last_exp_dir: str | None = None  # the folder of the last job started here: a reloaded page shows it
        self.out_dir = Path(tempfile.mkdtemp(prefix="valle-app-"))  # files handed to the page

    def for_page(self, path: Path) -> str:
        """A copy in the app's temporary folder: Gradio serves from there, never from the workspace."""
        copy = Path(tempfile.mkdtemp(dir=self.out_dir)) / Path(path).name  # a folder each: names may repeat
        shutil.copyfile(path, copy)
        return str(copy)

    # ---- Data ------------------------------------------------------------------------------------

    def prepare(self, uploads, upload_name, corpus, data_dir, language, tokenizer, codec, min_dur, max_dur,
                silence_db, dev_ratio, test_ratio, seed, progress=gr.Progress(track_tqdm=True)):
        if uploads:
            corpus = prepare.import_uploads(self.ws, [getattr(u, "name", u) for u in uploads], upload_name)
        if not (corpus or "").strip():
            raise UserError("corpus: upload audio files with transcripts, or type a folder or metadata file "
                            "of the workspace")
        opts = prepare.PrepareOptions(corpus, data_dir, language, tokenizer, codec, float(min_dur), float(max_dur),
                                      float(silence_db), float(dev_ratio), float(test_ratio), int(seed), self.device)
        result = prepare.run_prepare(self.ws, opts, lambda fraction, desc: progress(fraction, desc=desc))
        status = f"prepared `{data_dir}` from `{corpus}`: " + "; ".join(result.stages)
        return (status, corpus, result.summary_text, result.rejected, result.conversions, result.verdict,
                result.flagged)

    def segment(self, uploads, reference, name, num_speakers, transcribe, language, segment_max,
                progress=gr.Progress(track_tqdm=True)):
        out_dir, lines, rows = long_recordings.run_segment(
            self.ws, [getattr(u, "name", u) for u in uploads or []], name, getattr(reference, "name", reference),
            num_speakers, transcribe, language, segment_max)
        kept = sum(r[0] == "yes" for r in rows)
        status = (f"{len(rows)} segments in `{out_dir}` ({kept} kept): " + "; ".join(lines)
                  + ". Edit keep/text below, listen by clicking a row, then save.")
        return status, out_dir, rows

    def save_segments(self, out_dir, rows):
        rows = rows.values.tolist() if hasattr(rows, "values") else rows
        metadata = long_recordings.apply_table(self.ws, out_dir, rows)
        return f"saved; `{metadata}` is the corpus: press Prepare", metadata

    def play_segment(self, out_dir, rows, evt: gr.SelectData):
        rows = rows.values.tolist() if hasattr(rows, "values") else rows
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        segment_id = rows[row][long_recordings.COLUMNS.index("id")]
        return self.for_page(long_recordings.clip(self.ws, out_dir, segment_id)), ""

    def reports(self, data_dir):
        result = prepare.read_reports(self.ws, self.ws.path(data_dir, "data folder"))
        return "", result.summary_text, result.rejected, result.conversions, result.verdict, result.flagged

    # ---- Train -----------------------------------------------------------------------------------

    def start(self, resume: bool, overwrite: bool, *values):
        opts = training.TrainOptions(*values)
        message = self.jobs.start(self.ws, opts, resume=resume, overwrite=overwrite)
        self.last_exp_dir = opts.exp_dir
        return message

    def stop(self, exp_dir):
        return self.jobs.stop(self.ws.path(exp_dir, "experiment folder"))

    def watch(self, exp_dir, seen):
        """The Train tab's live view; unchanged parts are skipped (no redraw every tick)."""
        folder = self.ws.path(exp_dir, "experiment folder")
        records = training.read_metrics(folder)
        state = self.jobs.state(folder)
        console = folder / training.CONSOLE
        events = sum(f.stat().st_size for f in folder.glob("tensorboard/events.*"))  # grows when tensorboard flushes
        key = (str(folder), len(records), state, console.stat().st_size if console.is_file() else 0, events)
        if key == seen:
            return (key,) + (gr.skip(),) * 5
        data = training.curves(records)
        sample = gr.skip()  # tensorboard is read again only when its files grew
        if seen is None or seen[0] != key[0] or seen[4] != events:
            sample = training.valid_sample(folder, self.out_dir)
        return (key, training.summary(folder, records, state), data, data, training.log_tail(folder, 12),
                sample)

    # ---- Synthesize ------------------------------------------------------------------------------

    def synthesize(self, *values):
        wav, npy, message = self.synth.synthesize(synthesis.SynthOptions(*values))
        return message, self.for_page(wav), [self.for_page(wav), self.for_page(npy)]

    def save_preset(self, name, *values):
        message = self.synth.save_preset(synthesis.SynthOptions(*values), name)
        return message, gr.update(choices=self.ws.find(PRESET_PATTERNS))

    # ---- Compare ---------------------------------------------------------------------------------

    def compare(self, checkpoints, data_dir, output, num_utterances, prompt, seed, max_frames, codec, speaker_model,
                progress=gr.Progress(track_tqdm=True)):
        opts = compare.CompareOptions(list(checkpoints or []), data_dir, output, int(num_utterances), prompt or "",
                                      int(seed), int(max_frames), codec, speaker_model)
        r = compare.run_compare(self.ws, opts, self.device)
        grid = [(utt, text, [(name, self.for_page(wav)) for name, wav in systems]) for utt, text, systems in r.grid]
        return r.message, r.summary, self.for_page(r.chart), [self.for_page(p) for p in r.files], grid

    def checkpoints(self):
        """Fresh choices for the checkpoint and adapter pickers."""
        found = self.ws.find(CHECKPOINT_PATTERNS)
        return gr.update(choices=["vallex"] + found), gr.update(choices=found)

    def on_load(self):
        """A (re)loaded page: fresh file lists, and the options of the last run started here (so that
        the page shows that run, and Resume continues it with the same options)."""
        ckpts = ["vallex"] + self.ws.find(CHECKPOINT_PATTERNS)
        presets = self.ws.find(PRESET_PATTERNS)
        lists = (gr.update(choices=ckpts), gr.update(choices=ckpts[1:]), gr.update(choices=presets),
                 gr.update(choices=ckpts), gr.update(choices=["same-speaker"] + presets))
        saved = None
        if self.last_exp_dir:
            saved = training.saved_options(self.ws.path(self.last_exp_dir, "experiment folder"))
        init_choices = ["auto", "vallex", "none"] + ckpts[1:]
        if saved is None:
            rest = len(dataclasses.fields(training.TrainOptions)) - 4
            return lists + (gr.skip(),) * 3 + (gr.update(choices=init_choices),) + (gr.skip(),) * rest
        values = dataclasses.astuple(saved)
        return lists + values[:3] + (gr.update(choices=init_choices, value=values[3]),) + values[4:]


def build(app: App) -> gr.Blocks:
    with gr.Blocks(title="VALL-E X fine-tuning", analytics_enabled=False) as page:
        gr.Markdown(f"## VALL-E X fine-tuning\nWorkspace: `{app.ws.root}` (every path below is inside it)")
        with gr.Tab("Data", id="data"):
            data = _data_tab(app)
        with gr.Tab("Train", id="train"):
            train = _train_tab(app)
        with gr.Tab("Synthesize", id="synthesize"):
            synth = _synth_tab(app)
        with gr.Tab("Compare", id="compare"):
            comp = _compare_tab(app)
        page.load(app.on_load, None, [synth["checkpoint"], synth["adapters"], synth["preset"], comp["checkpoints"],
                                      comp["prompt"], *train["options"]])
        page.load(guarded(app.reports, outputs=6), [data["data_dir"]], data["report_outputs"])
    return page


def _data_tab(app: App) -> dict:
    gr.Markdown("Upload recordings with same-name `.txt` transcripts (or one metadata file of `path|text` lines "
                "with its audio), or type a corpus folder of the workspace. Every file becomes mono 24 kHz; "
                "what is converted or rejected is listed below. A rerun skips the stages already done.")
    with gr.Row():
        with gr.Column():
            uploads = gr.File(label="Audio + transcripts (or a metadata file)", file_count="multiple",
                              type="filepath", height=220, elem_id="data-uploads")
            upload_name = gr.Textbox("my_voice", label="Name for the uploaded corpus (written to uploads/NAME)")
            corpus = gr.Textbox(label="Corpus in the workspace (a folder or a metadata file)",
                                placeholder="uploads/my_voice", elem_id="data-corpus")
        with gr.Column():
            data_dir = gr.Textbox("data", label="Data folder (written)", elem_id="data-dir")
            language = gr.Dropdown(list(LANGUAGES), value="en", label="Language of the transcripts")
            tokenizer = gr.Radio(["vallex", "espeak"], value="vallex", elem_id="data-tokenizer",
                                 label="Text tokenizer (vallex: fine-tune the released model; espeak: from scratch)")
            codec = gr.Dropdown(["pretrained", "random"], value="pretrained", allow_custom_value=True,
                                label="Encodec weights (pretrained, a file, or random: demo only, noise)",
                                elem_id="data-codec")
            with gr.Accordion("More options", open=False):
                with gr.Row():
                    min_dur = gr.Number(0.5, label="Min duration (s)")
                    max_dur = gr.Number(20.0, label="Max duration (s)")
                    silence_db = gr.Number(-60.0, label="Silence below (dBFS)")
                with gr.Row():
                    dev_ratio = gr.Number(0.05, label="Dev share")
                    test_ratio = gr.Number(0.05, label="Test share")
                    seed = gr.Number(42, label="Split seed", precision=0)
    _long_recordings(app, corpus)
    run = gr.Button("Prepare", variant="primary", elem_id="data-prepare")
    status = gr.Markdown(elem_id="data-status")
    summary = gr.Textbox(label="Summary", lines=8, interactive=False, elem_id="data-summary")
    rejected = gr.Dataframe(headers=["file", "reason"], label="Rejected (rejected.tsv)", interactive=False,
                            wrap=True, column_widths=["35%", "65%"], elem_id="data-rejected")
    conversions = gr.Dataframe(headers=["file", "conversion"], label="Converted (conversions.tsv)",
                               interactive=False, wrap=True, column_widths=["35%", "65%"])
    verdict = gr.Markdown(elem_id="data-verdict")
    flagged = gr.Dataframe(headers=["file", "flags"], label="Flagged by the check (check.html; listed, not removed)",
                           interactive=False, wrap=True, column_widths=["35%", "65%"], elem_id="data-flagged")
    report_outputs = [status, summary, rejected, conversions, verdict, flagged]
    run.click(guarded(app.prepare, outputs=7),
              [uploads, upload_name, corpus, data_dir, language, tokenizer, codec, min_dur, max_dur, silence_db,
               dev_ratio, test_ratio, seed], [status, corpus, summary, rejected, conversions, verdict, flagged])
    return {"data_dir": data_dir, "report_outputs": report_outputs}


def _long_recordings(app: App, corpus: gr.Textbox) -> None:
    """Long recordings -> segments (valle.data.segment) -> the table edited here -> the corpus to prepare."""
    with gr.Accordion("Long recordings: cut at pauses, transcribe or align, keep one voice, review", open=False):
        gr.Markdown("Upload long recordings (a podcast, an audiobook chapter with a same-name `.txt` of its "
                    "text, an interview). They are cut at pauses, transcribed (Whisper if installed, else "
                    "pocketsphinx for English) or aligned to their text; other voices and noise are set aside. "
                    "Click a row to listen, fix the text or set keep to no, save, then press Prepare.")
        with gr.Row():
            recordings = gr.File(label="Long recordings (+ same-name .txt when the text is known)",
                                 file_count="multiple", type="filepath", height=160, elem_id="long-uploads")
            reference = gr.File(label="A few seconds of the voice to keep (optional)", type="filepath", height=160)
        with gr.Row():
            name = gr.Textbox("my_voice", label="Name (segments/NAME)")
            d = SegmentOptions()  # the defaults and bounds are the options' own (checked there)
            num_speakers = gr.Number(d.num_speakers, label="Speakers to separate (0: off)", precision=0, minimum=0)
            transcribe = gr.Dropdown(list(TRANSCRIBE), value=d.transcribe, label="Transcribe")
            language = gr.Textbox(d.language, label="Language (or auto)")
            segment_max = gr.Number(d.cut.segment_max, label="Longest segment (s)", minimum=d.cut.segment_min,
                                    maximum=MAX_SEGMENT)
        go = gr.Button("Segment", elem_id="long-segment")
        status = gr.Markdown(elem_id="long-status")
        out_dir = gr.Textbox(label="Segments folder", interactive=False)
        rows = gr.Dataframe(headers=long_recordings.COLUMNS, label="Segments (edit keep and text)",
                            interactive=True, wrap=True, elem_id="long-table")
        player = gr.Audio(label="Selected segment", type="filepath", interactive=False)
        save = gr.Button("Save edits and use the kept segments as the corpus", elem_id="long-save")
    go.click(guarded(app.segment, outputs=3), [recordings, reference, name, num_speakers, transcribe, language,
                                               segment_max], [status, out_dir, rows])
    rows.select(guarded(app.play_segment, status=1, outputs=2), [out_dir, rows], [player, status])
    save.click(guarded(app.save_segments, outputs=2), [out_dir, rows], [status, corpus])


def _train_tab(app: App) -> dict:
    d = training.TrainOptions()
    with gr.Row():
        data_dir = gr.Textbox(d.data_dir, label="Data folder (prepared in the Data tab)", elem_id="train-data")
        exp_dir = gr.Textbox(d.exp_dir, label="Experiment folder (checkpoints, logs)", elem_id="train-exp")
        model_name = gr.Radio(["ar", "nar", "both"], value=d.model_name, label="Half to train")
        init = gr.Dropdown(["auto", "vallex", "none"], value=d.init_checkpoint, allow_custom_value=True,
                           elem_id="train-init",
                           label="Start from (auto, vallex = released model, none = from scratch, or a checkpoint)")
    with gr.Row():
        base_lr = gr.Number(d.base_lr, label="Learning rate (0: default)")
        max_steps = gr.Number(d.max_steps, label="Max steps (0: no limit)", precision=0, elem_id="train-steps")
        num_epochs = gr.Number(d.num_epochs, label="Epochs", precision=0)
        max_duration = gr.Number(d.max_duration, label="Batch duration (s)", elem_id="train-batch")
        patience = gr.Number(d.early_stop_patience, label="Early stop after N validations (0: off)", precision=0)
        valid_interval = gr.Number(d.valid_interval, label="Validate every N steps", precision=0,
                                   elem_id="train-valid")
    with gr.Row():
        codec = gr.Dropdown(["none", "pretrained", "random"], value=d.codec_weights, allow_custom_value=True,
                            label="Encodec for the validation audio sample (none: no sample)", elem_id="train-codec")
        extra = gr.Textbox(label="More trainer flags", placeholder="--d-model 64 --nhead 4 --num-layers 2",
                           elem_id="train-extra")
        adapter = gr.Radio(["none", "lora"], value=d.adapter, label="Adapter (lora: small data, the base stays frozen)")
        lora_rank = gr.Number(d.lora_rank, label="LoRA rank", precision=0)
        overwrite = gr.Checkbox(False, label="Start over (delete the earlier run in this folder)")
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        resume = gr.Button("Resume", elem_id="train-resume")
    status = gr.Markdown(elem_id="train-status")
    progress = gr.Markdown(elem_id="train-progress")
    with gr.Row():
        loss = gr.LinePlot(x="step", y="loss", color="split", title="loss", height=260, elem_id="train-loss")
        acc = gr.LinePlot(x="step", y="top10_acc", color="split", title="top-10 accuracy", height=260)
    with gr.Row():
        tail = gr.Textbox(label="Log (last lines)", lines=12, max_lines=24, interactive=False, elem_id="train-log")
        sample = gr.Audio(label="Validation sample (latest)", type="filepath", interactive=False,
                          elem_id="train-sample")
    seen = gr.State(None)
    options = [data_dir, exp_dir, model_name, init, base_lr, max_steps, num_epochs, max_duration, patience,
               valid_interval, codec, adapter, lora_rank, extra]
    start.click(guarded(lambda ow, *v: app.start(False, ow, *v)), [overwrite, *options], status)
    resume.click(guarded(lambda *v: app.start(True, False, *v)), options, status)
    stop.click(guarded(app.stop), exp_dir, status)
    timer = gr.Timer(REFRESH_SECONDS)
    timer.tick(guarded(app.watch, status=1, outputs=6), [exp_dir, seen], [seen, progress, loss, acc, tail, sample])
    return {"options": options}


def _synth_tab(app: App) -> dict:
    d = synthesis.SynthOptions("vallex", "")
    with gr.Row():
        with gr.Column():
            with gr.Row():
                checkpoint = gr.Dropdown(["vallex"], value="vallex", allow_custom_value=True, scale=4,
                                         label="Checkpoint (vallex = the released model)", elem_id="synth-ckpt")
                refresh = gr.Button("Refresh lists", scale=1, size="sm")
            adapters = gr.Dropdown([], multiselect=True, allow_custom_value=True, elem_id="synth-adapters",
                                   label="LoRA adapters of that checkpoint (optional; one per half)")
            text = gr.Textbox(label="Text", lines=3, elem_id="synth-text")
            language = gr.Dropdown(list(INPUT_LANGUAGES), value=d.language, label="Language")
            prompt = gr.Radio(["none", "preset", "recording"], value="none", label="Voice prompt",
                              elem_id="synth-prompt")
            preset = gr.Dropdown([], label="Preset (.npz)", allow_custom_value=True, visible=False)
            prompt_audio = gr.Audio(sources=["upload", "microphone"], type="filepath", visible=False,
                                    label="Recording of the voice (up to 15 s)")
            prompt_text = gr.Textbox(label="What is said in the recording", visible=False)
            prompt_language = gr.Dropdown(list(LANGUAGES), value=d.prompt_language, label="Language of the recording",
                                          visible=False)
        with gr.Column():
            with gr.Accordion("Sampling", open=False):
                top_k = gr.Number(d.top_k, label="Top-k (1: greedy, 0: off)", precision=0)
                top_p = gr.Number(d.top_p, label="Top-p (1: off)")
                temperature = gr.Number(d.temperature, label="Temperature")
                seed = gr.Number(d.seed, label="Seed", precision=0)
                max_frames = gr.Number(d.max_frames, label="Max frames (75 per second; 0: the model's limit)",
                                       precision=0, elem_id="synth-max-frames")
            codec = gr.Dropdown(["pretrained", "random"], value=d.codec_weights, allow_custom_value=True,
                                label="Encodec weights (pretrained, a file, or random: noise)", elem_id="synth-codec")
            precision = gr.Dropdown(list(PRECISIONS), value="fp32", elem_id="synth-precision",
                                    label="Precision (int8: weight-only int8 linears, CPU only)")
            run = gr.Button("Synthesize", variant="primary", elem_id="synth-run")
            status = gr.Markdown(elem_id="synth-status")
            audio = gr.Audio(label="Result", type="filepath", interactive=False, elem_id="synth-audio")
            files = gr.File(label="Download: wav and codes (.npy, frames x 8)", file_count="multiple",
                            interactive=False, elem_id="synth-files")
            with gr.Row():
                preset_name = gr.Textbox("voice", label="Preset name", scale=3)
                save = gr.Button("Save the recording as a preset", scale=2)
    recording = [prompt_audio, prompt_text, prompt_language]
    prompt.change(lambda choice: ([gr.update(visible=choice == "preset")]
                                  + [gr.update(visible=choice == "recording")] * 3),
                  prompt, [preset, *recording])
    options = [checkpoint, text, language, prompt, preset, prompt_audio, prompt_text, prompt_language, top_k, top_p,
               temperature, seed, max_frames, codec, adapters, precision]
    run.click(guarded(app.synthesize, outputs=3), options, [status, audio, files])
    save.click(guarded(app.save_preset, outputs=2), [preset_name, *options], [status, preset])
    refresh.click(app.checkpoints, None, [checkpoint, adapters])
    return {"checkpoint": checkpoint, "adapters": adapters, "preset": preset}


def _compare_tab(app: App) -> dict:
    d = compare.CompareOptions([])
    gr.Markdown("The same test sentences from several checkpoints, with the same prompts and seeds, scored the way "
                "`valle evaluate` scores them (failure flags, speaker similarity, MCD; no ASR here).")
    with gr.Row():
        checkpoints = gr.Dropdown(["vallex"], multiselect=True, allow_custom_value=True, scale=3,
                                  label="Checkpoints to compare", elem_id="compare-ckpts")
        data_dir = gr.Textbox(d.data_dir, label="Data folder (its test sentences, else dev)")
        output = gr.Textbox(d.output, label="Report folder (written)")
    with gr.Row():
        num_utterances = gr.Number(d.num_utterances, label="Sentences (0: all)", precision=0)
        prompt = gr.Dropdown(["same-speaker"], value=d.prompt, allow_custom_value=True,
                             label="Prompt (same-speaker: another utterance of that speaker; or a preset)")
        seed = gr.Number(d.seed, label="Seed", precision=0)
        max_frames = gr.Number(d.max_frames, label="Max frames (0: the model's limit)", precision=0,
                               elem_id="compare-max-frames")
        codec = gr.Dropdown(["pretrained", "random"], value=d.codec_weights, allow_custom_value=True,
                            label="Encodec weights", elem_id="compare-codec")
        speaker_model = gr.Radio(["resemblyzer", "none"], value=d.speaker_model, label="Speaker similarity",
                                 elem_id="compare-speaker")
    run = gr.Button("Compare", variant="primary", elem_id="compare-run")
    status = gr.Markdown(elem_id="compare-status")
    summary = gr.Dataframe(headers=compare.SUMMARY_HEADERS, label="Summary (means)", interactive=False)
    with gr.Row():
        chart = gr.Image(label="Metrics", type="filepath", interactive=False)
        files = gr.File(label="Report (open report.html to listen with the scores)", file_count="multiple",
                        interactive=False)
    grid = gr.State([])
    run.click(guarded(app.compare, outputs=5),
              [checkpoints, data_dir, output, num_utterances, prompt, seed, max_frames, codec, speaker_model],
              [status, summary, chart, files, grid])

    with gr.Column(elem_id="compare-grid"):
        @gr.render(inputs=grid)
        def side_by_side(items):
            for utterance, text, systems in items:
                gr.Markdown(f"**{utterance}**: {text}")
                with gr.Row():
                    for name, wav in systems:
                        gr.Audio(wav, label=name, type="filepath", interactive=False)

    return {"checkpoints": checkpoints, "prompt": prompt}
