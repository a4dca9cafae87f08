"""``sepkit report``: plots of a run and one HTML page to look at them and listen to examples.

Inputs, all optional except the run directory itself (a report of a run still training, or never
evaluated, shows what exists and says what is missing):

- ``metrics.csv``: training telemetry, one row per step (``step, epoch, loss, kept, filtered,
  grad_norm, clipped, skipped, reason, lr``; missing columns just drop their plot);
- ``valid.csv``: ``epoch, step, valid_loss``;
- ``config.yaml``: the resolved run config (shown, and ``train.clip_grad_norm`` drawn on the
  grad-norm plot);
- ``test_results.csv`` / ``test_summary.json`` from ``sepkit evaluate``;
- ``audio/<id>/{mix,s1..,s1_est..}.wav`` saved examples.

Outputs: ``plots/*.png`` and ``report.html``. Images are embedded (base64), so the page survives
being mailed or copied alone; audio stays in the run directory and is linked relatively (embedding
minutes of audio would make a page of tens of MB), unless ``embed_audio`` is set. Plots use
matplotlib's object API (``Figure`` + Agg canvas), not ``pyplot``: no global backend switch, no
figure leaks, safe to call from a training process.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import html
import io
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import yaml

from sepkit.evaluation.audio import safe_name
from sepkit.evaluation.results import RESULTS_CSV, SUMMARY_JSON, read_results
from sepkit.utils.io import atomic_write_text, atomic_write_with

if TYPE_CHECKING:  # matplotlib and scipy.signal load on first plot: every CLI command parses
    from matplotlib.axes import Axes  # this module's arguments, and they cost ~2 s of start-up
    from matplotlib.figure import Figure

REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
AUDIO_DIR = "audio"
MAX_AUDIO_EXAMPLES = 5
_TRUE = {"1", "true", "yes", "y", "t"}


@dataclass
class Plot:
    name: str
    title: str
    png: bytes


# --------------------------------------------------------------------------- reading


def read_table(path: Path) -> dict[str, list[str]]:
    """A CSV as ``{column: [raw strings]}``; {} when the file is absent. Rows with a different
    number of fields (a line cut by a crash) are skipped rather than failing the whole report."""
    if not path.is_file():
        return {}
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                return {}
            columns: dict[str, list[str]] = {name.strip(): [] for name in header}
            names = list(columns)
            for row in reader:
                if len(row) != len(names):
                    continue
                for name, value in zip(names, row, strict=True):
                    columns[name].append(value.strip())
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read ({err})") from err
    return columns


def numeric(table: dict[str, list[str]], name: str) -> np.ndarray | None:
    """Column as floats (NaN where empty or not a number; booleans as 0/1), None when absent."""
    if name not in table:
        return None
    out = np.full(len(table[name]), np.nan)
    for i, value in enumerate(table[name]):
        low = value.lower()
        if low in _TRUE:
            out[i] = 1.0
        elif low in {"0", "false", "no", "n", "f"}:
            out[i] = 0.0
        else:
            with contextlib.suppress(ValueError):
                out[i] = float(value)
    return out


def read_config(run_dir: Path) -> tuple[str, dict[str, Any]]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return "", {}
    text = path.read_text(errors="replace")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    return text, data if isinstance(data, dict) else {}


def clip_threshold(config: dict[str, Any]) -> float | None:
    raw: Any = (config.get("train") or {}).get("clip_grad_norm")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


# --------------------------------------------------------------------------- plots


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _figure(rows: int = 1, cols: int = 1, height: float = 3.2) -> tuple[Figure, list[Axes]]:
    fig = _new_figure(9, height * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average ignoring NaNs (telemetry of skipped steps may be NaN)."""
    if width <= 1 or len(values) < width:
        return values
    valid = np.isfinite(values)
    kernel = np.ones(width)
    sums = np.convolve(np.where(valid, values, 0.0), kernel, mode="same")
    counts = np.convolve(valid.astype(float), kernel, mode="same")
    return np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)


def _steps(table: dict[str, list[str]]) -> np.ndarray:
    steps = numeric(table, "step")
    n = len(next(iter(table.values()))) if table else 0
    return steps if steps is not None else np.arange(n, dtype=float)


def plot_losses(train: dict[str, list[str]], valid: dict[str, list[str]]) -> Plot | None:
    loss = numeric(train, "loss")
    valid_loss = numeric(valid, "valid_loss")
    if loss is None and valid_loss is None:
        return None
    skipped = numeric(train, "skipped")
    if loss is not None and skipped is not None:  # a skipped step logs 0.0: a gap, not a dip
        loss = np.where(skipped > 0, np.nan, loss)
    fig, (ax_loss, ax_snr) = _figure(1, 2)
    for sign, ax, label in ((1.0, ax_loss, "loss"), (-1.0, ax_snr, "SI-SNR (dB)")):
        if loss is not None:
            steps = _steps(train)
            ax.plot(steps, sign * loss, color="tab:blue", alpha=0.25, lw=0.8, label="train (step)")
            width = max(1, len(loss) // 50)
            ax.plot(
                steps, sign * _smooth(loss, width), color="tab:blue", label=f"train (avg {width})"
            )
        if valid_loss is not None:
            ax.plot(_steps(valid), sign * valid_loss, "o-", color="tab:orange", label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set_title("Loss (negative PIT SI-SNR)")
    ax_snr.set_title("SI-SNR = −loss")
    return Plot("loss", "Training and validation loss / SI-SNR", _png(fig))


def plot_lr(train: dict[str, list[str]]) -> Plot | None:
    lr = numeric(train, "lr")
    if lr is None or not np.isfinite(lr).any():
        return None
    fig, (ax,) = _figure()
    ax.plot(_steps(train), lr, color="tab:green")
    if np.nanmin(lr) > 0:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="learning rate", title="Learning rate")
    ax.grid(alpha=0.3)
    return Plot("lr", "Learning rate", _png(fig))


def plot_grad_norm(train: dict[str, list[str]], threshold: float | None) -> Plot | None:
    norm = numeric(train, "grad_norm")
    if norm is None or not np.isfinite(norm).any():
        return None
    steps = _steps(train)
    fig, (ax,) = _figure()
    ax.plot(steps, norm, color="tab:purple", lw=0.8, label="grad norm before clipping")
    clipped = numeric(train, "clipped")
    if clipped is not None and (clipped > 0).any():
        mask = clipped > 0
        ax.plot(steps[mask], norm[mask], "x", color="tab:red", ms=4, label="clipped")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", label=f"clip_grad_norm = {threshold:g}")
    if np.nanmin(np.where(norm > 0, norm, np.nan)) > 0:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="L2 norm", title="Gradient norm")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Plot("grad_norm", "Gradient norm and clipping threshold", _png(fig))


def plot_guard(train: dict[str, list[str]]) -> Plot | None:
    """Filtered examples per step and cumulative skipped steps (with the skip reasons)."""
    filtered = numeric(train, "filtered")
    skipped = numeric(train, "skipped")
    if filtered is None and skipped is None:
        return None
    steps = _steps(train)
    fig, axes = _figure(2, 1, height=2.6)
    ax_f, ax_s = axes
    if filtered is not None:
        ax_f.bar(steps, np.nan_to_num(filtered), width=1.0, color="tab:orange")
        kept = numeric(train, "kept")
        total = int(np.nansum(filtered))
        extra = f" of {int(np.nansum(kept)) + total}" if kept is not None else ""
        ax_f.set_title(f"Examples filtered by the loss threshold: {total}{extra}")
    else:
        ax_f.set_title("no 'filtered' column in metrics.csv")
    ax_f.set(xlabel="step", ylabel="filtered")
    if skipped is not None:
        flags = np.nan_to_num(skipped) > 0
        ax_s.plot(steps, np.cumsum(flags), color="tab:red", drawstyle="steps-post")
        reasons = train.get("reason", [""] * len(flags))
        for reason in sorted({r for r, f in zip(reasons, flags, strict=False) if f}):
            idx = [
                i for i, (r, f) in enumerate(zip(reasons, flags, strict=False)) if f and r == reason
            ]
            ax_s.plot(steps[idx], np.cumsum(flags)[idx], "o", ms=4, label=reason or "(no reason)")
        if flags.any():
            ax_s.legend(fontsize=8)
        ax_s.set_title(f"Skipped optimizer steps: {int(flags.sum())}")
    else:
        ax_s.set_title("no 'skipped' column in metrics.csv")
    ax_s.set(xlabel="step", ylabel="cumulative skipped")
    for ax in axes:
        ax.grid(alpha=0.3)
    return Plot("guard", "Filtered examples and skipped steps", _png(fig))


def plot_si_snr_i_hist(rows: list[dict[str, Any]]) -> Plot | None:
    values = np.array([r.get("si_snr_i", math.nan) for r in rows], dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    fig, (ax,) = _figure()
    ax.hist(values, bins=int(np.clip(len(values) // 3, 5, 40)), color="tab:blue", alpha=0.8)
    ax.axvline(float(np.mean(values)), color="k", label=f"mean {np.mean(values):.2f} dB")
    ax.axvline(
        float(np.median(values)), color="k", ls="--", label=f"median {np.median(values):.2f} dB"
    )
    ax.set(
        xlabel="SI-SNRi (dB)", ylabel="utterances", title=f"Per-utterance SI-SNRi (n={len(values)})"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return Plot("si_snr_i_hist", "Per-utterance SI-SNR improvement", _png(fig))


def example_files(folder: Path) -> list[Path]:
    """Audio files of one saved example in display order: mix, s1, s1_est, s2, s2_est, ..."""
    wavs = {p.stem: p for p in folder.glob("*.wav")}
    order = ["mix"]
    k = 1
    while f"s{k}" in wavs or f"s{k}_est" in wavs:
        order += [f"s{k}", f"s{k}_est"]
        k += 1
    named = [wavs[n] for n in order if n in wavs]
    return named + sorted(p for n, p in wavs.items() if n not in order)


def _power_db(signal: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.signal import spectrogram

    """(times, freqs, power in dB floored at -200) of a 32 ms / 8 ms-hop spectrogram."""
    nperseg = max(16, int(0.032 * rate))
    if len(signal) < nperseg:
        return np.zeros(0), np.zeros(0), np.zeros((0, 0))
    freqs, times, power = spectrogram(signal, fs=rate, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    return times, freqs, 10 * np.log10(np.maximum(power, 1e-20))


def plot_spectrograms(folder: Path, label: str | None = None) -> Plot | None:
    files = example_files(folder)
    if not files:
        return None
    signals = []
    for path in files:
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as err:
            raise ValueError(f"{path}: cannot read saved example ({err})") from err
        signals.append((path.stem, data.mean(axis=1), rate))
    refs = [s for s in signals if s[0] != "mix" and not s[0].endswith("_est")]
    rows = 1 + max(1, len(refs))
    fig = _new_figure(10, 2.2 * rows)
    grid = fig.add_gridspec(rows, 2)
    positions: dict[str, Any] = {"mix": grid[0, :]}
    for k in range(rows - 1):
        positions[f"s{k + 1}"] = grid[k + 1, 0]
        positions[f"s{k + 1}_est"] = grid[k + 1, 1]
    specs = {name: _power_db(signal, rate) for name, signal, rate in signals}
    top = max((float(np.max(db)) for _, _, db in specs.values() if db.size), default=0.0)
    for name, (times, freqs, db) in specs.items():
        if name not in positions:
            continue
        ax = fig.add_subplot(positions[name])
        if db.size:
            # One colour scale for all panels, 80 dB deep: silence is dark, not a blank hole.
            ax.pcolormesh(times, freqs, db, vmin=top - 80, vmax=top, cmap="magma", shading="auto")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("Hz", fontsize=8)
        ax.tick_params(labelsize=7)
    label = label or folder.name
    fig.suptitle(f"Spectrograms of example {label}", fontsize=10)
    title = f"Spectrograms of {label}: mixture, references (left) and estimates (right)"
    return Plot(f"spectrogram_{folder.name}", title, _png(fig))


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


# --------------------------------------------------------------------------- entry points


def _bytes_writer(data: bytes) -> Callable[[IO[bytes]], None]:
    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    return write


def write_report(
    run_dir: Path, embed_audio: bool = False, max_examples: int = MAX_AUDIO_EXAMPLES
) -> Path:
    """Write ``run_dir/plots/*.png`` and ``run_dir/report.html``; returns the HTML path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    config_text, config = read_config(run_dir)
    train = read_table(run_dir / "metrics.csv")
    valid = read_table(run_dir / "valid.csv")
    rows: list[dict[str, Any]] = []
    if (run_dir / RESULTS_CSV).is_file():
        rows, _ = read_results(run_dir / RESULTS_CSV)
    summary = None
    if (run_dir / SUMMARY_JSON).is_file():
        try:
            summary = json.loads((run_dir / SUMMARY_JSON).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{run_dir / SUMMARY_JSON}: not valid JSON ({err})") from err
    audio_root = run_dir / AUDIO_DIR
    folders = sorted(p for p in audio_root.iterdir() if p.is_dir()) if audio_root.is_dir() else []
    folders = [f for f in folders if example_files(f)][:max_examples]
    # Saved example folders carry sanitised IDs; map them back to the IDs and their scores.
    scores = {safe_name(str(r["id"])): (str(r["id"]), r.get("si_snr_i")) for r in rows}
    candidates = [
        plot_losses(train, valid),
        plot_lr(train),
        plot_grad_norm(train, clip_threshold(config)),
        plot_guard(train),
        plot_si_snr_i_hist(rows),
        plot_spectrograms(folders[0], scores.get(folders[0].name, (None,))[0]) if folders else None,
    ]
    plots = [p for p in candidates if p is not None]
    for plot in plots:
        atomic_write_with(run_dir / PLOTS_DIR / f"{plot.name}.png", _bytes_writer(plot.png))

    page = render_html(run_dir, plots, config_text, summary, folders, embed_audio, scores)
    out = run_dir / REPORT_HTML
    atomic_write_text(out, page)
    return out


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit report``."""
    parser.add_argument("--run-dir", type=Path, required=True, help="training run directory")
    parser.add_argument(
        "--embed-audio",
        action="store_true",
        help="embed the example audio in report.html (one file to share; larger page)",
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=MAX_AUDIO_EXAMPLES,
        help="saved examples to show with audio players (default %(default)s)",
    )


def run_report(args: argparse.Namespace) -> int:
    try:
        path = write_report(
            args.run_dir, embed_audio=args.embed_audio, max_examples=args.max_examples
        )
    except (OSError, ValueError) as err:
        print(f"sepkit report: error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sepkit.report", description=__doc__)
    add_report_arguments(parser)
    return run_report(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
