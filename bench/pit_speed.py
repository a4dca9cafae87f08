"""Row 1: PIT SI-SNR forward+backward time per call, B=4, T=16000, for several numbers of sources.

sepkit's ``pit_si_snr`` against SpeechBrain ``get_si_snr_with_pitwrapper``, Asteroid
``PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")`` and torchmetrics
``permutation_invariant_training(..., mode="speaker-wise")``, interleaved in one process, on the
same estimates and references (each in the layout it expects). Every peer's loss value is checked
against sepkit's. Peers that are not installed are left out (``pip install --no-deps -r
bench/requirements.txt``). SpeechBrain scores all C! permutations: it is skipped above C = 8
(10! = 3.6 M permutations); Asteroid refuses C >= 10.

    python bench/pit_speed.py [--threads 1] [--quick]
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table

from sepkit.losses import pit_si_snr

SOURCES = (2, 3, 4, 5, 6, 8, 10)
PEERS = ("speechbrain", "asteroid", "torchmetrics")
SPEECHBRAIN_MAX = 8  # exhaustive C! search: 8! = 40 320 takes seconds per call, 10! minutes
ROUND_BUDGET_S = 20.0  # timed rounds are cut down when one round of all candidates is slow

Step = Callable[[], float]  # runs forward+backward, returns the loss (mean negative SI-SNR, dB)


def sepkit_step(est: torch.Tensor, ref: torch.Tensor) -> Step:
    def run() -> float:
        e = est.detach().requires_grad_(True)
        loss = pit_si_snr(e, ref)[0].mean()
        loss.backward()
        return float(loss)

    return run


def peer_steps(est: torch.Tensor, ref: torch.Tensor) -> tuple[dict[str, Step], dict[str, str]]:
    """(steps of the peers usable at this C, reasons for the others)."""
    num = est.shape[1]
    steps: dict[str, Step] = {}
    skipped: dict[str, str] = {}
    if num > SPEECHBRAIN_MAX:
        skipped["speechbrain"] = f"skipped: {num}! permutations"
    else:
        try:
            import speechbrain_shim  # noqa: F401  (stand-in torchaudio when missing)
            from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

            est_sb = est.permute(0, 2, 1).contiguous()  # SpeechBrain: [B, T, C]
            ref_sb = ref.permute(0, 2, 1).contiguous()

            def speechbrain_run() -> float:
                e = est_sb.detach().requires_grad_(True)
                loss = get_si_snr_with_pitwrapper(ref_sb, e).mean()
                loss.backward()
                return float(loss)

            steps["speechbrain"] = speechbrain_run
        except ImportError as err:
            skipped["speechbrain"] = f"not installed ({err.name})"
    if num >= 10:
        skipped["asteroid"] = "refuses C >= 10"
    else:
        try:
            from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr

            wrapper = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")

            def asteroid_run() -> float:
                e = est.detach().requires_grad_(True)
                loss = wrapper(e, ref)
                loss.backward()
                return float(loss)

            steps["asteroid"] = asteroid_run
        except ImportError as err:
            skipped["asteroid"] = f"not installed ({err.name})"
    try:
        from torchmetrics.functional.audio import (
            permutation_invariant_training,
            scale_invariant_signal_distortion_ratio,
        )

        def torchmetrics_run() -> float:
            e = est.detach().requires_grad_(True)
            best, _ = permutation_invariant_training(
                e, ref, scale_invariant_signal_distortion_ratio, mode="speaker-wise",
                eval_func="max",
            )  # fmt: skip
            loss = -best.mean()
            loss.backward()
            return float(loss)

        steps["torchmetrics"] = torchmetrics_run
    except ImportError as err:
        skipped["torchmetrics"] = f"not installed ({err.name})"
    return steps, skipped


def main() -> None:
    args = base_parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)  # Asteroid's "tensor from list of arrays" note
    requested = args.repeats or (3 if args.quick else 20)
    sources = (2, 3) if args.quick else SOURCES
    gen = torch.Generator().manual_seed(0)
    rows = []
    for num in sources:
        ref = torch.randn(4, num, 16000, generator=gen)
        est = ref[:, torch.randperm(num, generator=gen)] + 0.3 * torch.randn(
            4, num, 16000, generator=gen
        )
        steps, skipped = peer_steps(est, ref)
        candidates = {"sepkit": sepkit_step(est, ref), **steps}
        # One call each: the loss values (checked against sepkit's) and the cost of a round.
        start = time.perf_counter()
        values = {name: fn() for name, fn in candidates.items()}
        round_s = time.perf_counter() - start
        repeats = max(3, min(requested, int(ROUND_BUDGET_S / max(round_s, 1e-9))))
        medians = interleaved_medians(candidates, repeats, warmup=1 if args.quick else 2)
        diff = max((abs(v - values["sepkit"]) for v in values.values()), default=0.0)
        ours = medians["sepkit"]
        row = [str(num), f"{ours * 1e3:.2f}"]
        for peer in PEERS:
            if peer in medians:
                row.append(f"{medians[peer] * 1e3:.2f} ({ours / medians[peer]:.2f}x)")
            else:
                row.append(f"n/a ({skipped.get(peer, '')})")
        best = min((medians[p] for p in PEERS if p in medians), default=None)
        row.append("-" if best is None else ("yes" if ours <= best else "no"))
        row.append(f"{diff:.1e}")
        rows.append(row)
    print(
        f"PIT SI-SNR forward+backward, B=4, T=16000, median of <= {requested} alternating calls — "
        f"{machine_line(args.threads)}"
    )
    print()
    print_table(
        [
            "C",
            "sepkit ms",
            "SpeechBrain ms (sepkit/peer)",
            "Asteroid ms (sepkit/peer)",
            "torchmetrics ms (sepkit/peer)",
            "sepkit <= best peer",
            "max loss diff (dB)",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
