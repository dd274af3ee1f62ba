#!/usr/bin/env python3
"""The data check's targets (issue 27): about 60 espeak-ng utterances of 2 voices, a fifth of them damaged in known
ways (tests/check_corpus.py: clipping, noise at 5 dB SNR, wrong transcripts, one file of another voice, 3 s of
padding silence, a duplicate); scanned and normalized, then checked with each --asr given, twice in one process
(cold: imports and first calls included; warm: the speaker encoder loaded again, the rest done, as in a long
corpus). One JSON line per run: damaged files flagged with the right reason, clean files flagged, and times
faster than real time (the audio checked over the stage's wall time, and over its CPU time, which other work on a
loaded machine does not inflate), with the machine. A benchmark, not a test: it asserts nothing.

  python bench/check_data.py --work /tmp/checkbench [--asr none auto] [--voices en-gb+f4 en-us+m3 --seed 1]
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from check_corpus import REASONS, SPEAKERS, make_corpus  # noqa: E402

from bench.machine import machine  # noqa: E402

DAMAGES = {"clipping": 2, "noise": 2, "transcript": 3, "voice": 1, "silence": 3, "duplicate": 1}  # 12 of 61


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (emptied)")
    parser.add_argument("--per-speaker", type=int, default=30)
    parser.add_argument("--asr", nargs="+", default=["none", "auto"], help="--check-asr values to run")
    parser.add_argument("--voices", nargs=2, default=list(SPEAKERS.values()), help="the 2 espeak-ng voices "
                        f"[{' '.join(SPEAKERS.values())}]")
    parser.add_argument("--seed", type=int, default=0, help="which sentences, which files are damaged [0]")
    args = parser.parse_args()
    from valle.data.check import stage_check
    from valle.data.normalize import NormalizeOptions
    from valle.data.pipeline import stage_normalize, stage_scan

    shutil.rmtree(args.work, ignore_errors=True)
    speakers = dict(zip(SPEAKERS, args.voices))
    truth = {str(p): how for p, how in make_corpus(args.work / "corpus", args.per_speaker, DAMAGES, args.seed,
                                                   speakers).items()}
    data = args.work / "data"
    stage_scan(args.work / "corpus", data)
    stage_normalize(data, NormalizeOptions())
    for asr, run in [(asr, run) for asr in args.asr for run in ("cold", "warm")]:
        start, cpu = time.perf_counter(), time.process_time()
        result = stage_check(data, "en", asr)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        audio = sum(u.duration for u in result.utterances)
        flags = {u.path: u.flags for u in result.utterances}
        damaged = [p for p, how in truth.items() if how]
        right = {how: sum(any(f.startswith(REASONS[how]) for f in flags[p]) for p, h in truth.items() if h == how)
                 for how in DAMAGES}
        clean_flagged = [p for p, how in truth.items() if not how and flags[p]]
        print(json.dumps({
            "bench": "check_data", "check_asr": asr, "run": run, "voices": args.voices, "seed": args.seed,
            "files": len(truth), "damaged": len(damaged),
            "damaged_flagged_right": sum(right.values()), "damaged_right_share": round(sum(right.values())
                                                                                      / len(damaged), 3),
            "right_by_damage": {how: f"{right[how]}/{n}" for how, n in DAMAGES.items()},
            "clean_flagged": len(clean_flagged), "clean_flagged_share": round(len(clean_flagged)
                                                                              / (len(truth) - len(damaged)), 3),
            "audio_s": round(audio, 1), "check_s": round(seconds, 1), "x_real_time": round(audio / seconds, 1),
            "cpu_s": round(cpu, 1), "x_real_time_per_cpu_second": round(audio / cpu, 1),
            "notes": result.notes, "verdict": result.verdict, "machine": machine("cpu")}), flush=True)


if __name__ == "__main__":
    main()
