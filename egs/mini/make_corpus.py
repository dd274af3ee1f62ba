#!/usr/bin/env python3
"""Generate the mini demo corpus offline with espeak-ng: a folder per voice, one audio file and one
transcript per utterance, in the formats users really have. With --layout libritts: a corpus in LibriTTS's
layout instead (for egs/libritts and the scale benchmark; see make_libritts).

Files cycle through mono/stereo, 8/16/22.05/24/44.1/48 kHz, 8-bit, 16-bit, 24-bit and float WAV, FLAC,
MP3 and OGG, and through .txt/.lab/.normalized.txt transcripts, so the custom recipe has something to
downmix, resample and report. Two files are bad on purpose (--no-bad-examples leaves them out):
one has no transcript and one is pure silence; both must end up in data/rejected.tsv.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from valle.config import str2bool  # noqa: E402
from valle.markers import marker_line, write_marker  # noqa: E402

VOICES = {  # speaker folder -> espeak-ng voice (+variant)
    "us_adam": "en-us",
    "gb_fiona": "en-gb+f3",
    "scot_ewan": "en-gb-scotland+m3",
    "us_ruth": "en-us+f2",
}
SENTENCES = [
    "The small boat drifted slowly toward the quiet harbor.",
    "Please bring the blue folder to the second meeting.",
    "A warm breeze moved through the open kitchen window.",
    "Seven children waited patiently for the morning train.",
    "He painted the old fence a bright shade of green.",
    "The library closes early on the first Friday.",
    "She counted the coins twice before paying the driver.",
    "Fresh bread was cooling on the wooden table.",
    "Our neighbor grows tomatoes behind the garage.",
    "The river rose quickly after three days of rain.",
    "Turn left at the bakery and walk two blocks.",
    "The concert started twenty minutes late.",
    "A tall lamp stood in the corner of the room.",
    "They planted a row of young trees along the road.",
    "The letter arrived on a cold Tuesday afternoon.",
    "Nobody remembered where the spare key was hidden.",
    "The kettle whistled just as the phone rang.",
    "We watched the clouds gather over the hills.",
    "His bicycle needed a new chain and a bell.",
    "The museum added a room full of old maps.",
    "Light snow covered the empty parking lot.",
    "The cat slept all day on the sunny windowsill.",
    "Thank you for waiting, the doctor will see you now.",
    "The team practiced late into the evening.",
    "She wrote the recipe on the back of an envelope.",
    "A single candle lit the narrow hallway.",
    "The bus was full, so we decided to walk.",
    "He fixed the radio with a borrowed screwdriver.",
    "The garden looked different after the storm.",
    "Every spring the swallows return to the barn.",
    "Put the heavy boxes near the front door.",
    "The soup needs a little more salt and pepper.",
]
# (sample rate, channels, extension, soundfile subtype): cycled over the utterances
FORMATS = [
    (16000, 1, "wav", "PCM_16"),
    (22050, 2, "wav", "PCM_16"),
    (44100, 1, "flac", "PCM_16"),
    (48000, 2, "flac", "PCM_24"),
    (24000, 1, "wav", "PCM_16"),
    (22050, 1, "wav", "PCM_U8"),
    (44100, 2, "wav", "FLOAT"),
    (16000, 1, "mp3", "MPEG_LAYER_III"),
    (22050, 1, "ogg", "VORBIS"),
    (8000, 1, "wav", "PCM_16"),
    (48000, 1, "wav", "PCM_16"),
]
TRANSCRIPT_SUFFIXES = [".txt", ".txt", ".lab", ".normalized.txt"]
COMPLETE = ".corpus.done"  # its done-marker (valle.markers), written last: a folder without it is regenerated


def synthesize(text: str, voice: str, tmp: Path) -> tuple[np.ndarray, int]:
    """espeak-ng -> (samples,) float32 at its native 22050 Hz."""
    out = tmp / "utt.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
    data, rate = sf.read(str(out), dtype="float32")
    return data, rate


def convert(wave: np.ndarray, rate: int, target_rate: int, channels: int) -> np.ndarray:
    """Resample; a second channel is a quieter copy delayed by 1 ms (so downmixing changes something)."""
    x = torchaudio.functional.resample(torch.from_numpy(wave), rate, target_rate).numpy()
    if channels == 1:
        return x
    delay = target_rate // 1000
    right = 0.7 * np.concatenate([np.zeros(delay, dtype=x.dtype), x[:-delay]])
    return np.stack([x, right], axis=1)  # (T, 2)


def make_corpus(out: Path, per_speaker: int, bad_examples: bool) -> int:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is missing: sudo apt-get install espeak-ng (or brew install espeak-ng)")
    if out.exists():
        shutil.rmtree(out)
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for s, (speaker, voice) in enumerate(VOICES.items()):
            folder = out / speaker
            folder.mkdir(parents=True)
            for i in range(per_speaker):
                text = SENTENCES[(s * per_speaker + i) % len(SENTENCES)]
                rate, channels, ext, subtype = FORMATS[n % len(FORMATS)]
                wave, native = synthesize(text, voice, Path(tmp))
                stem = f"utt{i:03d}"
                sf.write(str(folder / f"{stem}.{ext}"), convert(wave, native, rate, channels), rate, subtype=subtype)
                (folder / f"{stem}{TRANSCRIPT_SUFFIXES[n % len(TRANSCRIPT_SUFFIXES)]}").write_text(text + "\n")
                n += 1
        if bad_examples:
            folder = out / next(iter(VOICES))
            wave, native = synthesize("This file has no transcript.", VOICES[folder.name], Path(tmp))
            sf.write(str(folder / "no_transcript.wav"), wave, native)
            sf.write(str(folder / "silence.wav"), np.zeros(2 * 16000, dtype=np.float32), 16000)
            (folder / "silence.txt").write_text("This recording is silent.\n")
    write_marker(out / COMPLETE, marker_line({"utterances": n, "per_speaker": per_speaker}))
    return n


LIBRITTS_PARTS = ("dev-clean", "test-clean", "train-clean-100")


def make_libritts(out: Path, parts: list[str], per_speaker: int) -> float:
    """LibriTTS's layout, as lhotse's prepare_libritts reads it: out/LibriTTS/<part>/<speaker>/<chapter>/ with
    <speaker>_<chapter>_<paragraph>_<sentence>.wav (mono 24 kHz 16-bit, like LibriTTS: referenced, not copied),
    .normalized.txt and .original.txt per utterance, and the chapter's .trans.tsv and .book.tsv. Every part has
    the 4 voices as speakers of its own (numbered by part). An utterance is one or two sentences. Returns hours."""
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is missing: sudo apt-get install espeak-ng (or brew install espeak-ng)")
    root = out / "LibriTTS"
    if root.exists():
        shutil.rmtree(root)
    seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for p, part in enumerate(parts):
            for s, voice in enumerate(VOICES.values()):
                speaker, chapter = str(100 * (p + 1) + s), str(1000 * (p + 1) + s)
                folder = root / part / speaker / chapter
                folder.mkdir(parents=True)
                rows = []
                for i in range(per_speaker):
                    n = len(SENTENCES)
                    text = " ".join(SENTENCES[(i + k * 7 + s) % n] for k in range(1 + i % 2))
                    wave, native = synthesize(text, voice, Path(tmp))
                    utt = f"{speaker}_{chapter}_{i // 10:06d}_{i % 10:06d}"
                    sf.write(str(folder / f"{utt}.wav"), convert(wave, native, 24000, 1), 24000, subtype="PCM_16")
                    seconds += len(wave) / native
                    (folder / f"{utt}.normalized.txt").write_text(text)
                    (folder / f"{utt}.original.txt").write_text(text.upper())
                    rows.append(f"{utt}\t{text.upper()}\t{text}")
                (folder / f"{speaker}_{chapter}.trans.tsv").write_text("\n".join(rows) + "\n")
                (folder / f"{speaker}_{chapter}.book.tsv").write_text(
                    "\n".join(f"{r}\t0\t0\t0\t20.0" for r in rows) + "\n")
    return seconds / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("corpus"), help="corpus folder to (re)create")
    parser.add_argument("--per-speaker", type=int, default=10, help=f"utterances per voice ({len(VOICES)} voices)")
    parser.add_argument("--bad-examples", type=str2bool, default=True,
                        help="add a file without transcript and a silent file (true/false)")
    parser.add_argument("--layout", choices=("mini", "libritts"), default="mini",
                        help="mini: a folder per voice, mixed formats (the custom recipe's input); libritts: "
                             "OUTPUT/LibriTTS/<part>/<speaker>/<chapter>/ as LibriTTS is laid out (egs/libritts)")
    parser.add_argument("--parts", nargs="+", default=list(LIBRITTS_PARTS), help="--layout libritts: the parts")
    args = parser.parse_args()
    if args.layout == "libritts":
        hours = make_libritts(args.output, args.parts, args.per_speaker)
        print(f"LibriTTS-layout corpus: {len(args.parts)} parts x {len(VOICES)} speakers x {args.per_speaker} "
              f"utterances, {hours:.3f} h, in {args.output / 'LibriTTS'}")
        return
    n = make_corpus(args.output, args.per_speaker, args.bad_examples)
    print(f"mini corpus: {n} utterances by {len(VOICES)} voices in {args.output}")


if __name__ == "__main__":
    main()
