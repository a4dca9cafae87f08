"""Test-set scoring speed: sepkit vs SpeechBrain's way, on the same utterances, same process.

SpeechBrain's separation recipes (``save_results`` in ``recipes/*/separation/train.py``) score each
test utterance with PIT SI-SNR for the estimate and for the mixture, then call
``mir_eval.separation.bss_eval_sources`` twice (estimate, and mixture copied per source) for SDR
and SDRi. sepkit aligns once by PIT and scores SI-SNR(i) and SDR(i) with
:func:`sepkit.evaluation.metrics.utterance_metrics`. Both run single-threaded, alternating
(sepkit, SpeechBrain, sepkit, ...), and the medians over the rounds are compared. The script also
checks that both give the same numbers.

Utterances: 2-speaker mixtures from the demo corpus generator (``sepkit.data.synthetic.generate``, eSpeak NG
speech) when it is available, else synthetic speech-like signals (harmonic, pitch-gliding,
syllable-gated). Estimates are the references with leakage and noise in a random order, so the
PIT alignment has work to do. Model inference is not timed: only scoring.

    .venv/bin/python bench/eval_speed.py            # 100 utterances, 3 rounds
    .venv/bin/python bench/eval_speed.py --quick    # 10 utterances, 2 rounds
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported: a fair, single-core comparison

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from sepkit.evaluation.metrics import align_estimates, utterance_metrics  # noqa: E402
from sepkit.losses import pit_si_snr  # noqa: E402

Utterance = tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]  # id, mix [T], refs, est [C, T]


def synthetic_speech(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """Harmonic voice with a gliding pitch, formant-like amplitude, gated into syllables."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(90, 250) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 15))
    gate = (np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)) > -0.2).astype(float)
    return (voice * gate + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def synthetic_utterances(n: int, sr: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        seconds = rng.uniform(3.0, 7.0)  # wsj0-2mix test mixtures average ~5 s
        refs = np.stack([synthetic_speech(rng, seconds, sr) for _ in range(2)])
        refs *= np.array([[1.0], [10 ** (rng.uniform(-5, 5) / 20)]], dtype=np.float32)
        out.append((f"synth{i:03d}", refs))
    return out


def corpus_utterances(n: int, sr: int, root: Path) -> list[tuple[str, np.ndarray]]:
    """Test mixtures from the demo corpus generator (raises if it is unavailable)."""
    from sepkit.data.synthetic.generate import CorpusSpec, generate_corpus

    spec = CorpusSpec(n_train=0, n_valid=0, n_test=n, sample_rate=sr, seed=0)
    generate_corpus(root, spec, progress=False)
    out = []
    for mix_path in sorted((root / "test" / "mix").glob("*.wav"))[:n]:
        refs = np.stack(
            [sf.read(root / "test" / s / mix_path.name, dtype="float32")[0] for s in ("s1", "s2")]
        )
        out.append((mix_path.stem, refs))
    if len(out) < n:
        raise RuntimeError(f"{root}: only {len(out)} test mixtures")
    return out


def make_estimates(items: list[tuple[str, np.ndarray]], seed: int = 1) -> list[Utterance]:
    rng = np.random.default_rng(seed)
    out = []
    for utt_id, refs in items:
        mix = refs.sum(0)
        leak = rng.uniform(0.05, 0.3)
        est = refs + leak * refs[::-1] + 0.02 * rng.standard_normal(refs.shape).astype(np.float32)
        if rng.random() < 0.5:
            est = est[::-1]
        out.append(
            (
                utt_id,
                torch.from_numpy(mix.copy()),
                torch.from_numpy(refs.copy()),
                torch.from_numpy(np.ascontiguousarray(est, dtype=np.float32)),
            )
        )
    return out


def score_sepkit(utts: list[Utterance], sr: int) -> list[dict[str, float]]:
    results = []
    for utt_id, mix, refs, est in utts:
        aligned, _ = align_estimates(refs, est)
        results.append(utterance_metrics(mix, refs, aligned, sr, ("si_snr", "sdr"), utt_id))
    return results


def score_speechbrain_way(utts: list[Utterance], sr: int) -> list[dict[str, float]]:
    """What SpeechBrain's ``save_results`` does per utterance (batch size 1, [B, T, C] layout)."""
    from mir_eval.separation import bss_eval_sources

    results = []
    for _, mix, refs, est in utts:
        predictions, targets = est.t()[None], refs.t()[None]  # SpeechBrain's [B, T, C]
        mixture_signal = torch.stack([mix] * refs.shape[0], dim=-1)[None]
        # PIT SI-SNR of the estimate and of the mixture (SpeechBrain's get_si_snr_with_pitwrapper).
        sisnr = -pit_si_snr(predictions.transpose(1, 2), targets.transpose(1, 2))[0]
        sisnr_base = -pit_si_snr(mixture_signal.transpose(1, 2), targets.transpose(1, 2))[0]
        sdr, _, _, _ = bss_eval_sources(targets[0].t().numpy(), predictions[0].t().numpy())
        sdr_base, _, _, _ = bss_eval_sources(targets[0].t().numpy(), mixture_signal[0].t().numpy())
        results.append(
            {
                "si_snr": float(sisnr),
                "si_snr_i": float(sisnr - sisnr_base),
                "sdr": float(sdr.mean()),
                "sdr_i": float(sdr.mean() - sdr_base.mean()),
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 utterances, 2 rounds")
    parser.add_argument("--utterances", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--sample-rate", type=int, default=8000)
    parser.add_argument(
        "--source", choices=["auto", "corpus", "synthetic"], default="auto",
        help="auto: the demo corpus generator if it works, else synthetic signals",
    )  # fmt: skip
    args = parser.parse_args(argv)
    n = args.utterances or (10 if args.quick else 100)
    rounds = args.rounds or (2 if args.quick else 3)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", FutureWarning)  # mir_eval's deprecation of bss_eval_sources

    items: list[tuple[str, np.ndarray]] | None = None
    source = "synthetic speech-like signals"
    if args.source in ("auto", "corpus"):
        try:
            with tempfile.TemporaryDirectory(prefix="sepkit-eval-speed-") as tmp:
                items = corpus_utterances(n, args.sample_rate, Path(tmp))
            source = "demo corpus (sepkit.data.synthetic.generate, eSpeak NG)"
        except Exception as err:  # generator missing or not working here
            if args.source == "corpus":
                raise
            print(f"(demo corpus unavailable: {type(err).__name__}: {err}; using synthetic)")
    if items is None:
        items = synthetic_utterances(n, args.sample_rate)
    utts = make_estimates(items)
    seconds = sum(u[1].shape[0] for u in utts) / args.sample_rate
    print(
        f"{n} utterances, {seconds:.0f} s of audio at {args.sample_rate} Hz, 2 speakers, from "
        f"{source}; {rounds} rounds, alternating, 1 thread"
    )

    ours_t, theirs_t = [], []
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    for r in range(rounds):
        t0 = time.perf_counter()
        ours = score_sepkit(utts, args.sample_rate)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = score_speechbrain_way(utts, args.sample_rate)
        theirs_t.append(time.perf_counter() - t0)
        print(f"  round {r + 1}: sepkit {ours_t[-1]:.2f} s   SpeechBrain way {theirs_t[-1]:.2f} s")

    diffs = {
        k: max(abs(a[k] - b[k]) for a, b in zip(ours, theirs, strict=True))
        for k in ("si_snr", "si_snr_i", "sdr", "sdr_i")
    }
    med_ours, med_theirs = statistics.median(ours_t), statistics.median(theirs_t)
    print(f"sepkit (PIT once + SI-SNR(i) + SDR(i), Levinson):  {med_ours:8.3f} s")
    print(f"SpeechBrain way (PIT SI-SNR x2 + mir_eval x2):     {med_theirs:8.3f} s")
    print(f"speed-up: {med_theirs / med_ours:.1f}x (goal >= 20x)")
    print(
        "max |difference| per utterance: " + ", ".join(f"{k} {v:.1e} dB" for k, v in diffs.items())
    )
    means = {k: float(np.mean([o[k] for o in ours])) for k in ("si_snr_i", "sdr_i")}
    print(f"means (sepkit): SI-SNRi {means['si_snr_i']:.2f} dB, SDRi {means['sdr_i']:.2f} dB")
    return 0 if max(diffs.values()) < 1e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
