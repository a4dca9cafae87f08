"""SepFormer forward+backward speed: sepkit vs SpeechBrain, identical configuration, one process.

    .venv/bin/python bench/model_speed.py [--threads N] [--quick] [--preset small]

Both models get the same weights (SpeechBrain's, imported into sepkit), so the comparison also
checks that the outputs agree. Timings alternate sepkit / SpeechBrain step by step and report
medians, so background load hits both sides alike; only the ratio is meaningful on a shared
machine. Peak RSS is measured in a fresh child process per side (``resource.getrusage``), each
importing the same modules, running the same steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

SAMPLE_RATE = 8000
SECONDS = 2.0


def import_speechbrain_dual_path() -> Any:
    """SpeechBrain's dual_path module (torchaudio stood in for when absent; unused by it)."""
    if importlib.util.find_spec("torchaudio") is None:
        stand_in = types.ModuleType("torchaudio")
        stand_in.__version__ = "0.0.0"  # type: ignore[attr-defined]
        sys.modules["torchaudio"] = stand_in
    import logging

    logging.disable(logging.WARNING)  # its "torchaudio is old" warnings
    import speechbrain.lobes.models.dual_path as dual_path

    return dual_path


def build_pair(preset: str) -> tuple[Any, torch.nn.Module]:
    """(SpeechBrain ``(encoder, masknet, decoder)``, sepkit model) with identical weights."""
    from sepkit.models import model_config_from_dict
    from sepkit.models.registry import build_model
    from sepkit.models.speechbrain import convert_state

    dp = import_speechbrain_dual_path()
    _, cfg = model_config_from_dict({"name": "sepformer", "preset": preset})
    torch.manual_seed(0)

    def block() -> Any:
        return dp.SBTransformerBlock(
            cfg.num_layers,
            cfg.d_model,
            cfg.nhead,
            cfg.d_ffn,
            dropout=cfg.dropout,
            activation=cfg.activation,
            use_positional_encoding=cfg.positional_encoding,
            norm_before=cfg.norm_before,
        )

    encoder = dp.Encoder(kernel_size=cfg.L, out_channels=cfg.N)
    masknet = dp.Dual_Path_Model(
        cfg.N,
        cfg.d_model,
        block(),
        block(),
        num_layers=cfg.num_blocks,
        norm="ln",
        K=cfg.chunk_size,
        num_spks=cfg.num_spks,
        skip_around_intra=cfg.skip_around_intra,
        linear_layer_after_inter_intra=cfg.linear_layer_after_inter_intra,
    )
    decoder = dp.Decoder(cfg.N, 1, cfg.L, stride=cfg.L // 2, bias=False)
    model = build_model({"name": "sepformer", "preset": preset, "pad_input": False})
    states = {"encoder": encoder.state_dict(), "masknet": masknet.state_dict()}
    states["decoder"] = decoder.state_dict()
    model.load_state_dict(convert_state(states, model))
    return (encoder, masknet, decoder), model


def speechbrain_forward(mods: Any, mix: torch.Tensor) -> torch.Tensor:
    """SpeechBrain's separation pipeline (SepformerSeparation.separate_batch / its recipe)."""
    encoder, masknet, decoder = mods
    mix_w = encoder(mix)
    masks = masknet(mix_w)
    sep_h = torch.stack([mix_w] * masks.shape[0]) * masks
    est = torch.cat([decoder(sep_h[i]).unsqueeze(-1) for i in range(masks.shape[0])], dim=-1)
    length = mix.shape[1]
    if est.shape[1] < length:
        est = torch.nn.functional.pad(est, (0, 0, 0, length - est.shape[1]))
    return est[:, :length].permute(0, 2, 1)


def step(side: str, mods: Any, model: torch.nn.Module, mix: torch.Tensor) -> float:
    """One forward+backward (train mode); returns seconds."""
    start = time.perf_counter()
    est = model(mix) if side == "sepkit" else speechbrain_forward(mods, mix)
    est.pow(2).mean().backward()
    return time.perf_counter() - start


def zero_grads(mods: Any, model: torch.nn.Module) -> None:
    for module in (*mods, model):
        module.zero_grad(set_to_none=True)


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux), so the peak covers the steps only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(side: str, preset: str, batch: int, steps: int) -> None:
    """Peak-RSS probe: build both (same imports and weights), then run ``side`` only.

    Prints the RSS before the first step and the peak during the steps; where the peak mark
    cannot be reset, the peak is ``getrusage``'s whole-process maximum.
    """
    mods, model = build_pair(preset)
    mix = torch.randn(batch, int(SECONDS * SAMPLE_RATE))
    base = _proc_status_kib("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = _reset_peak_rss()
    for _ in range(steps):
        step(side, mods, model, mix)
        zero_grads(mods, model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if reset:
        peak = _proc_status_kib("VmHWM") or peak
    print(json.dumps({"base_kib": base, "peak_kib": peak}))


def peak_rss(side: str, preset: str, batch: int, threads: int) -> dict[str, int]:
    cmd = [sys.executable, __file__, "--child", side, "--preset", preset]
    cmd += ["--batch", str(batch), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batches", default="1,2")
    parser.add_argument("--child", choices=["sepkit", "speechbrain"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.preset, args.batch, steps=3)
        return 0

    mods, model = build_pair(args.preset)
    for module in (*mods, model):
        module.train()
    reps = 5 if args.quick else 15
    print(
        f"SepFormer '{args.preset}', forward+backward, {SECONDS:g} s at {SAMPLE_RATE} Hz, "
        f"{args.threads} thread(s), median of {reps} alternating steps"
    )
    header = f"{'batch':>5} {'sepkit ms':>10} {'SB ms':>9} {'ratio':>6} {'max|diff|':>10}"
    header += f" {'sepkit peak RSS MiB':>20} {'SB peak RSS MiB':>16}"
    print(header)
    for batch in (int(b) for b in args.batches.split(",")):
        mix = torch.randn(
            batch, int(SECONDS * SAMPLE_RATE), generator=torch.Generator().manual_seed(1)
        )
        with torch.no_grad():
            diff = (model(mix) - speechbrain_forward(mods, mix)).abs().max().item()
        times: dict[str, list[float]] = {"sepkit": [], "speechbrain": []}
        for side in ("sepkit", "speechbrain"):  # warm-up
            step(side, mods, model, mix)
        zero_grads(mods, model)
        for _ in range(reps):
            for side in ("sepkit", "speechbrain"):
                times[side].append(step(side, mods, model, mix))
                zero_grads(mods, model)
        ours = statistics.median(times["sepkit"])
        theirs = statistics.median(times["speechbrain"])
        rss = {s: peak_rss(s, args.preset, batch, args.threads) for s in times}
        mib = {s: f"{r['peak_kib'] / 1024:.0f} (+{(r['peak_kib'] - r['base_kib']) / 1024:.0f})"
               for s, r in rss.items()}  # fmt: skip
        print(f"{batch:>5} {ours * 1e3:>10.1f} {theirs * 1e3:>9.1f} {ours / theirs:>6.2f} "
              f"{diff:>10.1e} {mib['sepkit']:>20} {mib['speechbrain']:>16}")  # fmt: skip
    print("peak RSS: whole process (increase over the state before the first step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
