"""The report's HTML page: summary tables, embedded plots, audio players."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sepkit.report.plots import Plot, example_files

# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}.missing{color:#a33}
audio{width:260px;height:32px}.broken{outline:3px solid #c00}
"""

# Marks images/audio that fail to load (visible to users; read by the headless-browser test).
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } else { imgs[i].className += ' broken'; }
  }
  document.body.setAttribute('data-images-ok', ok);
  document.body.setAttribute('data-images-total', imgs.length);
});
document.addEventListener('DOMContentLoaded', function () {
  var players = document.getElementsByTagName('audio'), ready = 0, failed = 0;
  document.body.setAttribute('data-audio-total', players.length);
  function mark() {
    document.body.setAttribute('data-audio-ok', ready);
    document.body.setAttribute('data-audio-failed', failed);
  }
  for (var i = 0; i < players.length; i++) {
    players[i].addEventListener('loadedmetadata', function () { ready++; mark(); });
    players[i].addEventListener('error', function (e) {
      failed++; e.target.className += ' broken'; mark();
    }, true);
  }
  mark();
});
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return _esc(value)


def _summary_html(summary: dict[str, Any] | None) -> str:
    if not summary:
        return '<p class="missing">No test results yet: run <code>sepkit evaluate</code>.</p>'
    head = "<tr><th>metric</th><th>mean</th><th>median</th><th>std</th><th>min</th><th>max</th>"
    head += "<th>NaN</th></tr>"
    body = ""
    for name, stats in summary.get("metrics", {}).items():
        cells = "".join(
            f"<td>{_fmt(stats.get(k))}</td>"
            for k in ("mean", "median", "std", "min", "max", "num_nan")
        )
        body += f"<tr><td>{_esc(name)}</td>{cells}</tr>"
    worst = summary.get("worst") or []
    key = summary.get("worst_by") or "si_snr_i"
    passes = int(summary.get("test_shifts") or 1)
    shifts = (
        f" Each estimate is the mean of {passes} passes over the mixture delayed by a fraction"
        " of the encoder hop (<code>train.test_shifts</code>)."
        if passes > 1
        else ""
    )
    worst_html = ", ".join(f"<code>{_esc(w['id'])}</code> ({_fmt(w.get(key))} dB)" for w in worst)
    test_set = (summary.get("test_set") or {}).get("text")
    lead = ""
    si = summary.get("metrics", {}).get("si_snr_i", {})
    if test_set and si.get("mean") is not None:
        lead = (
            f'<p class="lead">SI-SNRi <b>{_fmt(si["mean"])} dB</b> mean '
            f"({_fmt(si.get('median'))} dB median) on {_esc(test_set)}.</p>"
        )
    pairs = summary.get("by_gender_pair") or {}
    if pairs:
        cells = "".join(
            f"<tr><td>{_esc(name)}</td><td>{_fmt(v.get('mean'))}</td><td>{_fmt(v.get('median'))}</td>"
            f"<td>{_esc(v.get('count'))}</td></tr>"
            for name, v in pairs.items()
        )
        lead += (
            "<table><tr><th>speakers</th><th>SI-SNRi mean</th><th>median</th><th>mixtures</th>"
            f"</tr>{cells}</table>"
        )
    return (
        lead + f"<p>{_esc(summary.get('num_utterances', '?'))} test utterances.{shifts}</p>"
        f"<table>{head}{body}</table>"
        + (f"<p>Worst by {_esc(key)}: {worst_html}</p>" if worst else "")
    )


def _audio_src(path: Path, run_dir: Path, embed: bool) -> str:
    if embed:
        return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return "/".join(_esc(part) for part in path.relative_to(run_dir).parts)


def _audio_html(run_dir: Path, folders: list[Path], embed: bool, scores: dict[str, Any]) -> str:
    if not folders:
        return '<p class="missing">No saved examples: run <code>sepkit evaluate --save-audio</code>.</p>'
    parts = []
    for folder in folders:
        files = example_files(folder)
        utt_id, score = scores.get(folder.name, (folder.name, None))
        note = f" — SI-SNRi {score:.2f} dB" if isinstance(score, float) else ""
        cells = "".join(
            f'<tr><td>{_esc(p.stem)}</td><td><audio controls preload="metadata" '
            f'src="{_audio_src(p, run_dir, embed)}"></audio></td></tr>'
            for p in files
        )
        parts.append(f"<h3>{_esc(utt_id)}{_esc(note)}</h3><table>{cells}</table>")
    return "".join(parts)


def render_html(
    run_dir: Path,
    plots: list[Plot],
    config_text: str,
    summary: dict[str, Any] | None,
    audio_folders: list[Path],
    embed_audio: bool,
    scores: dict[str, Any],
) -> str:
    figures = "".join(
        f'<figure><img alt="{_esc(p.title)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.png).decode("ascii")}"><figcaption>{_esc(p.title)}</figcaption></figure>'
        for p in plots
    )
    if not plots:
        figures = '<p class="missing">Nothing to plot yet (no metrics.csv / valid.csv).</p>'
    config_html = (
        f"<pre>{_esc(config_text)}</pre>"
        if config_text
        else '<p class="missing">No config.yaml.</p>'
    )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>sepkit report: {_esc(run_dir.name)}</title><style>{_CSS}</style>"
        f"<script>{_SCRIPT}</script></head><body>"
        f"<h1>sepkit report: {_esc(run_dir.name)}</h1><p>{_esc(run_dir.resolve())} — {when}</p>"
        f"<h2>Test results</h2>{_summary_html(summary)}"
        f"<h2>Training</h2>{figures}"
        f"<h2>Examples</h2>{_audio_html(run_dir, audio_folders, embed_audio, scores)}"
        f"<h2>Configuration</h2>{config_html}</body></html>\n"
    )
