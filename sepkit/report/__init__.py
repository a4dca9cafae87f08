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

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sepkit.evaluation.audio import safe_name
from sepkit.evaluation.results import RESULTS_CSV, SUMMARY_JSON, read_results
from sepkit.report.page import render_html
from sepkit.report.plots import (
    example_files,
    plot_grad_norm,
    plot_guard,
    plot_losses,
    plot_lr,
    plot_si_snr_i_hist,
    plot_spectrograms,
)
from sepkit.report.tables import (
    AUDIO_DIR,
    MAX_AUDIO_EXAMPLES,
    PLOTS_DIR,
    REPORT_HTML,
    clip_threshold,
    read_config,
    read_table,
)
from sepkit.utils.io import atomic_write_text, atomic_write_with

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
