"""The results of an evaluation: summary statistics (means, 95 % confidence intervals) and the files they go
to: report.json (per system: means, intervals, flag counts), utterances.tsv (one row per system and utterance),
metrics.png (bar chart) and report.html (tables and audio players for prompt, ground truth and every checkpoint,
side by side)."""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

import numpy as np

from valle.eval.detectors import FLAGS
from valle.storage import atomic_write, atomic_write_text

GROUND_TRUTH = "ground_truth"
# metric -> (title, better: "high" | "low" | "one" (closest to 1 is best))
METRICS = {
    "sim_target": ("SIM to the real recording", "high"),
    "sim_prompt": ("SIM to the prompt", "high"),
    "error_rate": ("WER/CER", "low"),
    "mcd": ("MCD (dB)", "low"),
    "stoi": ("STOI", "high"),
    "pesq": ("PESQ (wb)", "high"),
    "duration_ratio": ("duration / ground truth", "one"),
    "rate_ratio": ("duration / speaker's rate", "one"),
}
TSV_COLUMNS = ["system", "utterance", "speaker", "prompt", "language", "text", "seconds", "gt_seconds", "frames",
               "duration_ratio", "rate_ratio", "stopped_at_eos", "flags", "sim_target", "sim_prompt", "error_rate",
               "errors", "ref_units", "transcript", "mcd", "stoi", "pesq", "level_db", "silence_ratio", "flatness",
               "modulation_db", "wav"]


def _finite(values) -> np.ndarray:
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return x[np.isfinite(x)]


def mean_ci(values) -> dict | None:
    """Mean and 95 % confidence interval (Student t) of the finite values; None when there are none."""
    from scipy.stats import t

    x = _finite(values)
    if not len(x):
        return None
    half = float(t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return {"mean": float(x.mean()), "ci95": [float(x.mean() - half), float(x.mean() + half)], "n": int(len(x))}


def corpus_rate_ci(errors, units, seed: int = 0, resamples: int = 1000) -> dict | None:
    """All errors / all reference units, with a bootstrap 95 % interval over utterances."""
    e, n = _finite(errors), _finite(units)
    if not len(n) or len(e) != len(n):
        return None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(n), size=(resamples, len(n)))  # (R, N)
    boot = e[picks].sum(1) / np.maximum(n[picks].sum(1), 1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"mean": float(e.sum() / n.sum()), "ci95": [float(low), float(high)], "n": int(len(n))}


def summarize(rows: list[dict]) -> dict:
    """One system's rows -> {metrics: {name: mean/ci95/n}, flags: counts, flagged, eos_rate}."""
    metrics = {}
    for name in METRICS:
        if name == "error_rate":
            summary = corpus_rate_ci([r["errors"] for r in rows], [r["ref_units"] for r in rows])
        else:
            summary = mean_ci([r[name] for r in rows])
        if summary is not None:
            metrics[name] = summary
    flags = {f: sum(f in r["flags"].split(",") for r in rows) for f in FLAGS}
    eos = [r["stopped_at_eos"] for r in rows if r["stopped_at_eos"] is not None]
    return {"utterances": len(rows), "metrics": metrics, "flags": flags,
            "flagged": sum(bool(r["flags"]) for r in rows),
            "eos_rate": sum(eos) / len(eos) if eos else None}


def versus(system: dict, baseline: dict) -> dict[str, str]:
    """Per column both summaries have (the METRICS and "flagged", the flagged share): "better", "worse" or
    "same" than `baseline` (the model the checkpoints were fine-tuned from)."""
    def goodness(summary: dict, metric: str) -> float:
        if metric == "flagged":
            return -summary["flagged"] / max(summary["utterances"], 1)
        mean, better = summary["metrics"][metric]["mean"], METRICS[metric][1]
        return mean if better == "high" else -mean if better == "low" else -abs(mean - 1)

    shared = [m for m in METRICS if m in system["metrics"] and m in baseline["metrics"]] + ["flagged"]
    out = {}
    for m in shared:
        a, b = goodness(system, m), goodness(baseline, m)
        out[m] = "better" if a > b else "worse" if a < b else "same"
    return out


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_tsv(rows: list[dict], path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(TSV_COLUMNS)
            for r in rows:
                w.writerow([_fmt(r.get(c), 4) for c in TSV_COLUMNS])

    atomic_write(path, write)


def plot_metrics(report: dict, path: Path) -> Path:
    """Bars per system with 95 % intervals: one panel per metric that any system has, plus flagged share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = report["systems"]
    names = [s["name"] for s in systems]
    panels = [m for m in METRICS if any(m in s["metrics"] for s in systems)]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1) + 1, 3.6), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, metric in zip(axes[0], panels):
        means = [s["metrics"].get(metric, {}).get("mean", np.nan) for s in systems]
        lo = [m - s["metrics"].get(metric, {}).get("ci95", [np.nan])[0] for m, s in zip(means, systems)]
        hi = [s["metrics"].get(metric, {}).get("ci95", [np.nan, np.nan])[1] - m for m, s in zip(means, systems)]
        err = np.nan_to_num(np.array([lo, hi]), nan=0.0)
        ax.bar(range(len(names)), np.nan_to_num(means), yerr=err, color=colors[: len(names)], capsize=3)
        if np.nanmin(np.asarray(means, dtype=float), initial=0.0) >= 0:
            ax.set_ylim(bottom=0)
        title, better = METRICS[metric]
        hint = {"high": "higher", "low": "lower", "one": "near 1"}[better]
        ax.set_title(f"{title}\n({hint} is better)", fontsize=9)
    ax = axes[0][-1]
    ax.bar(range(len(names)), [s["flagged"] / max(s["utterances"], 1) for s in systems], color=colors[: len(names)])
    ax.set_title("flagged share\n(lower is better)", fontsize=9)
    ax.set_ylim(0, 1.05)
    for ax in axes[0]:
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;
padding:0 16px;line-height:1.4}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:.9em}.meta li{margin:2px 0}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f3f5f7}td.name,th.name{text-align:left;font-weight:600}
tr.gt td{background:#f7faf5}
.ci{color:#777;font-size:.85em}
.flag{display:inline-block;background:#fde2e1;color:#a1261f;border-radius:4px;padding:0 6px;margin:1px;font-size:.8em}
.ok{display:inline-block;background:#e3f4e1;color:#256029;border-radius:4px;padding:0 6px;font-size:.8em}
.utt{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:12px 0}
.utt .text{font-size:1.05em;margin-bottom:6px}.utt table{width:100%}
audio{height:32px;width:260px}
img{max-width:100%}
.note{background:#fff8e1;border-left:4px solid #f2b600;padding:6px 10px;font-size:.9em}
.better{color:#256029;font-weight:600}.worse{color:#a1261f;font-weight:600}
"""
_MARKS = {"better": '<span class="better" title="better than the baseline">▲</span>',
          "worse": '<span class="worse" title="worse than the baseline">▼</span>', "same": ""}


def _cell(summary: dict | None, mark: str = "same") -> str:
    if not summary:
        return "<td>–</td>"
    lo, hi = summary["ci95"]
    ci = f'<br><span class="ci">[{_fmt(lo)}, {_fmt(hi)}]</span>' if math.isfinite(hi) else ""
    return f"<td>{_fmt(summary['mean'])} {_MARKS[mark]}{ci}</td>"


def _flags(text: str) -> str:
    badges = "".join(f'<span class="flag">{html.escape(f)}</span>' for f in text.split(",") if f)
    return badges or '<span class="ok">ok</span>'


def _summary_table(report: dict) -> str:
    systems = report["systems"]
    metrics = [m for m in METRICS if any(m in s["metrics"] for s in systems)]
    unit = report.get("error_unit", "WER")
    head = "".join(f"<th>{html.escape(METRICS[m][0].replace('WER/CER', unit))}</th>" for m in metrics)
    rows = []
    for s in systems:
        flags = ", ".join(f"{n} {f}" for f, n in s["flags"].items() if n) or "none"
        eos = _fmt(s["eos_rate"], 2) if s["eos_rate"] is not None else "–"
        cls = ' class="gt"' if s["name"] == GROUND_TRUTH else ""
        marks = s.get("versus_baseline", {})
        name = html.escape(s["name"]) + (" (baseline)" if s["name"] == report.get("baseline") else "")
        rows.append(f'<tr{cls}><td class="name">{name}</td>'
                    + "".join(_cell(s["metrics"].get(m), marks.get(m, "same")) for m in metrics)
                    + f"<td>{eos}</td><td>{s['flagged']} / {s['utterances']} {_MARKS[marks.get('flagged', 'same')]}"
                    f"</td><td>{html.escape(flags)}</td></tr>")
    legend = ""
    if report.get("baseline"):
        legend = (f'<p class="meta">▲ better, ▼ worse than the baseline, {html.escape(report["baseline"])}: the '
                  "model the checkpoints were fine-tuned from.</p>")
    return (f'<table><tr><th class="name">system</th>{head}<th>stopped at EOS</th><th>flagged</th><th>flags</th></tr>'
            + "".join(rows) + "</table>" + legend)


def _utterance_cards(report: dict, rows: list[dict]) -> str:
    by_utt: dict[str, list[dict]] = {}
    for r in rows:
        by_utt.setdefault(r["utterance"], []).append(r)
    out = []
    unit = report.get("error_unit", "WER")
    for utt, rs in by_utt.items():
        first = rs[0]
        prompt = ""
        if first["prompt"]:
            prompt = (f'<tr><td class="name">prompt <span class="ci">{html.escape(first["prompt"])}</span></td>'
                      f'<td colspan="9" style="text-align:left"><audio controls preload="none" '
                      f'src="wavs/prompt/{html.escape(utt)}.wav"></audio></td></tr>')
        body = []
        for r in rs:
            cls = ' class="gt"' if r["system"] == GROUND_TRUTH else ""
            body.append(
                f'<tr{cls}><td class="name">{html.escape(r["system"])}</td>'
                f'<td><audio controls preload="none" src="{html.escape(r["wav"])}"></audio></td>'
                f"<td>{_fmt(r['seconds'], 2)} s</td><td>{_fmt(r['sim_target'])}</td><td>{_fmt(r['sim_prompt'])}</td>"
                f"<td>{_fmt(r['error_rate'])}</td><td>{_fmt(r['mcd'], 2)}</td>"
                f"<td style='text-align:left'>{_flags(r['flags'])}</td>"
                f"<td style='text-align:left'>{html.escape(r['transcript'])}</td></tr>")
        out.append(
            f'<div class="utt"><div class="text"><b>{html.escape(utt)}</b> ({html.escape(first["speaker"])}, '
            f'{html.escape(first["language"])}): “{html.escape(first["text"])}”</div>'
            f'<table><tr><th class="name">audio</th><th></th><th>length</th><th>SIM real</th><th>SIM prompt</th>'
            f'<th>{unit}</th><th>MCD</th><th>flags</th><th>transcript</th></tr>{prompt}{"".join(body)}</table></div>')
    return "".join(out)


def write_html(report: dict, rows: list[dict], path: Path, chart: str = "metrics.png") -> None:
    meta = [f"utterances: {report['num_utterances']} from <code>{html.escape(report['cuts'])}</code>",
            f"prompts: {html.escape(report['prompt'])}; seed {report['seed']}; sampling: "
            + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in report["sampling"].items() if v is not None),
            f"codec: {html.escape(report['codec_weights'])}"
            + (" (random weights: every output is noise by design)" if report["codec_weights"] == "random" else ""),
            f"speaker similarity: {html.escape(report['speaker_model'])}",
            html.escape(report["asr"])]
    meta += [html.escape(n) for n in report.get("notes", [])]
    legend = ("<b>How to read it.</b> SIM: cosine of speaker embeddings (1 = same voice), against the target's real "
              "recording and against the prompt; the ground-truth row is the ceiling; empty when the voice-activity "
              "detector finds no speech in the output. WER/CER: ASR errors per word "
              "(en) or character (zh/ja), lower is better. MCD: spectral distance to the real recording after DTW "
              "alignment. Flags: <b>runaway</b> (no EOS before the frame limit, or longer than "
              f"{report['thresholds']['max_duration_ratio']}x the real one), <b>too_short</b>, <b>silent</b>, "
              "<b>noise</b> (a stationary or flat-spectrum signal, not speech). Brackets: 95 % confidence intervals.")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Evaluation report</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head><body>
<h1>Evaluation report</h1><ul class="meta">{''.join(f'<li>{m}</li>' for m in meta)}</ul>
<p class="note">{legend}</p>
<h2>Summary</h2>{_summary_table(report)}
<img src="{chart}" alt="metrics per system">
<h2>Utterances</h2>{_utterance_cards(report, rows)}
<p class="meta">Files: report.json, utterances.tsv, wavs/.</p>
</body></html>
"""
    atomic_write_text(path, page)


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def write_report(report: dict, rows: list[dict], out_dir: Path) -> dict[str, Path]:
    """report (meta + per-system summaries) and rows -> the four files in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "tsv": out_dir / "utterances.tsv", "png": out_dir / "metrics.png",
             "html": out_dir / "report.html"}
    atomic_write_text(paths["json"], json.dumps(_json_safe(report), indent=1, ensure_ascii=False) + "\n")
    write_tsv(rows, paths["tsv"])
    plot_metrics(report, paths["png"])
    write_html(report, rows, paths["html"])
    return paths
