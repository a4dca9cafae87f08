"""PIT SI-SNR forward+backward time per call, B=4, T=16000, for several numbers of sources.

sepkit's ``pit_si_snr`` against the peers that are installed (SpeechBrain
``get_si_snr_with_pitwrapper``, Asteroid ``PITLossWrapper(pairwise_neg_sisdr)``, torchmetrics
``permutation_invariant_training``), interleaved in one process. Peers that are not installed are
left out of the table (install them with ``pip install --no-deps -r bench/requirements.txt``).

    python bench/pit_speed.py [--threads 1] [--quick]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table

from sepkit.losses import pit_si_snr

SOURCES = (2, 3, 4, 5, 6, 8, 10)


def sepkit_step(est: torch.Tensor, ref: torch.Tensor) -> Callable[[], object]:
    def run() -> None:
        e = est.detach().requires_grad_(True)
        pit_si_snr(e, ref)[0].mean().backward()

    return run


def peer_steps(est: torch.Tensor, ref: torch.Tensor) -> dict[str, Callable[[], object]]:
    """Whatever peers import here; each gets the layout it expects."""
    peers: dict[str, Callable[[], object]] = {}
    try:
        from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr

        wrapper = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")

        def asteroid_run() -> None:
            e = est.detach().requires_grad_(True)
            wrapper(e, ref).backward()

        peers["asteroid"] = asteroid_run
    except Exception:
        pass
    try:
        from torchmetrics.functional.audio import (
            permutation_invariant_training,
            scale_invariant_signal_distortion_ratio,
        )

        def torchmetrics_run() -> None:
            e = est.detach().requires_grad_(True)
            best, _ = permutation_invariant_training(
                e,
                ref,
                scale_invariant_signal_distortion_ratio,
                mode="speaker-wise",
                eval_func="max",
            )
            (-best.mean()).backward()

        peers["torchmetrics"] = torchmetrics_run
    except Exception:
        pass
    try:
        import speechbrain_shim  # noqa: F401  (registers a stand-in torchaudio when missing)
        from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

        est_sb = est.permute(0, 2, 1).contiguous()  # SpeechBrain: [B, T, C]
        ref_sb = ref.permute(0, 2, 1).contiguous()

        def speechbrain_run() -> None:
            e = est_sb.detach().requires_grad_(True)
            get_si_snr_with_pitwrapper(ref_sb, e).mean().backward()

        peers["speechbrain"] = speechbrain_run
    except Exception:
        pass
    return peers


def main() -> None:
    args = base_parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 30)
    sources = (2, 3) if args.quick else SOURCES
    gen = torch.Generator().manual_seed(0)
    rows = []
    for num in sources:
        ref = torch.randn(4, num, 16000, generator=gen)
        est = ref[:, torch.randperm(num, generator=gen)] + 0.3 * torch.randn(
            4, num, 16000, generator=gen
        )
        candidates = {"sepkit": sepkit_step(est, ref), **peer_steps(est, ref)}
        medians = interleaved_medians(candidates, repeats, warmup=1 if args.quick else 3)
        row = [str(num), f"{medians['sepkit'] * 1e3:.2f}"]
        for peer in ("speechbrain", "asteroid", "torchmetrics"):
            if peer in medians:
                row.append(f"{medians[peer] * 1e3:.2f} ({medians['sepkit'] / medians[peer]:.2f}x)")
            else:
                row.append("n/a")
        rows.append(row)
    print(f"PIT SI-SNR fwd+bwd, B=4, T=16000 — {machine_line(args.threads)}")
    print_table(
        ["C", "sepkit ms", "speechbrain ms (sepkit/peer)", "asteroid ms", "torchmetrics ms"], rows
    )


if __name__ == "__main__":
    main()
