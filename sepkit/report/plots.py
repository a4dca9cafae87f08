"""The report's plots: training curves, the step guard's decisions, SI-SNRi histogram,
spectrograms (matplotlib's object API: no pyplot, no global backend)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from sepkit.report.tables import numeric

if TYPE_CHECKING:  # matplotlib and scipy.signal load on the first plot, not on import
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass
class Plot:
    name: str
    title: str
    png: bytes


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
