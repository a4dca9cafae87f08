"""Metric values against independent references: mir_eval (SDR), fast_bss_eval, and SI-SNR
written out from its definition in float64 numpy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from sepkit.evaluation import metrics as M
from sepkit.evaluation.metrics import (
    MetricWarning,
    align_estimates,
    available_metrics,
    check_metrics,
    sdr_aligned,
    utterance_metrics,
)

torch.set_num_threads(1)
SR = 8000


def brute_si_snr(est: np.ndarray, ref: np.ndarray) -> float:
    """Textbook SI-SNR: explicit projection, float64, no eps (signals here are never silent)."""
    est = est - est.mean()
    ref = ref - ref.mean()
    target = (est @ ref) / (ref @ ref) * ref
    noise = est - target
    return float(10 * np.log10((target @ target) / (noise @ noise)))


def make_utterance(seed: int, num_src: int = 2, length: int = 6000) -> tuple[torch.Tensor, ...]:
    """Coloured sources, a mixture, and imperfect estimates (leakage, noise, a filter, an offset)."""
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal(16)
    refs = np.stack(
        [
            np.convolve(rng.standard_normal(length), rng.standard_normal(8), "same")
            for _ in range(num_src)
        ]
    )
    refs *= rng.uniform(0.2, 2.0, size=(num_src, 1))
    mix = refs.sum(0)
    est = np.stack(
        [
            np.convolve(refs[k], kernel, "same") * 0.1
            + 0.9 * refs[k]
            + 0.2 * refs[(k + 1) % num_src]
            + 0.05 * rng.standard_normal(length)
            + 0.01
            for k in range(num_src)
        ]
    )
    return tuple(torch.from_numpy(a) for a in (mix, refs, est))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_si_snr_and_si_snr_i_match_brute_force(seed: int) -> None:
    mix, refs, est = make_utterance(seed)
    got = utterance_metrics(mix.float(), refs.float(), est.float(), SR, ("si_snr",))
    r, e, m = refs.numpy(), est.numpy(), mix.numpy()
    want = np.mean([brute_si_snr(e[k], r[k]) for k in range(2)])
    want_i = np.mean([brute_si_snr(e[k], r[k]) - brute_si_snr(m, r[k]) for k in range(2)])
    # float32 inputs, float64 scoring: agreement to well below a display digit.
    assert got["si_snr"] == pytest.approx(want, abs=1e-4)
    assert got["si_snr_i"] == pytest.approx(want_i, abs=1e-4)
    assert set(got) == {"si_snr", "si_snr_i"}


@pytest.mark.parametrize(("seed", "num_src"), [(3, 2), (4, 3)])
def test_sdr_matches_mir_eval_and_fast_bss_eval(seed: int, num_src: int) -> None:
    mir_eval = pytest.importorskip("mir_eval")
    fast_bss_eval = pytest.importorskip("fast_bss_eval")
    mix, refs, est = make_utterance(seed, num_src, length=2500)
    got = utterance_metrics(mix, refs, est, SR, ("sdr",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # mir_eval's deprecation notice
        # compute_permutation=False: the estimates are aligned already (and it is 6x faster).
        bss_eval = mir_eval.separation.bss_eval_sources
        sdr_est, *_ = bss_eval(refs.numpy(), est.numpy(), compute_permutation=False)
        mix_rep = np.repeat(mix.numpy()[None], num_src, axis=0)
        sdr_mix, *_ = bss_eval(refs.numpy(), mix_rep, compute_permutation=False)
    assert got["sdr"] == pytest.approx(sdr_est.mean(), abs=1e-3)
    assert got["sdr_i"] == pytest.approx(sdr_est.mean() - sdr_mix.mean(), abs=1e-3)
    # Per source, against fast_bss_eval (torch backend: its numpy one breaks on numpy 2 here).
    per_source = sdr_aligned(refs.numpy(), est.numpy()[None])[0]
    fbe = -fast_bss_eval.sdr_loss(est, refs, pairwise=False).numpy()
    np.testing.assert_allclose(per_source, fbe, atol=1e-3)
    np.testing.assert_allclose(per_source, sdr_est, atol=1e-3)


def test_mixture_as_estimate_scores_zero_improvement() -> None:
    mix, refs, _ = make_utterance(5)
    est = mix.expand_as(refs).clone()
    got = utterance_metrics(mix, refs, est, SR)
    assert got["si_snr_i"] == pytest.approx(0.0, abs=1e-9)
    assert got["sdr_i"] == pytest.approx(0.0, abs=1e-9)
    assert got["si_snr"] < 5 and math.isfinite(got["sdr"])


def test_failing_metric_records_nan_with_a_warning_naming_the_utterance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mix, refs, est = make_utterance(7)
    refs[1] = 0.0  # a silent reference: SDR's system is singular (mir_eval raises here)
    with pytest.warns(MetricWarning, match=r"sdr is NaN for utterance 'utt-7'"):
        got = utterance_metrics(mix, refs, est, SR, utt_id="utt-7")
    assert math.isnan(got["sdr"]) and math.isnan(got["sdr_i"])
    assert math.isfinite(got["si_snr"])  # the other metrics survive

    def broken(refs: np.ndarray, est: np.ndarray, sr: int) -> float:
        raise RuntimeError("No utterances detected")

    monkeypatch.setitem(M._OPTIONAL, "pesq", broken)
    mix, refs, est = make_utterance(8)
    with pytest.warns(MetricWarning, match=r"pesq is NaN for utterance 'x'.*No utterances"):
        got = utterance_metrics(mix, refs, est, SR, ("si_snr", "pesq"), utt_id="x")
    assert math.isnan(got["pesq"]) and math.isfinite(got["si_snr"])

    est[0, 10] = float("nan")
    with pytest.warns(MetricWarning) as record:
        got = utterance_metrics(mix, refs, est, SR, ("si_snr", "sdr"), utt_id="nan-est")
    messages = [str(w.message) for w in record]
    assert any(m.startswith("si_snr is NaN for utterance 'nan-est'") for m in messages)
    assert any(m.startswith("sdr is NaN for utterance 'nan-est'") for m in messages)
    assert math.isnan(got["si_snr"]) and math.isnan(got["sdr"])


def test_silent_estimate_gives_a_finite_floor_not_minus_infinity() -> None:
    mix, refs, est = make_utterance(9)
    est[0] = 0.0
    got = utterance_metrics(mix, refs, est, SR)
    assert math.isfinite(got["sdr"]) and got["sdr"] < -50


def test_metric_names() -> None:
    assert available_metrics()[:2] == ["si_snr", "sdr"]
    assert check_metrics(["SDR", " si_snr", "sdr"]) == ["sdr", "si_snr"]
    with pytest.raises(ValueError, match="unknown"):
        check_metrics(["bleu"])
    assert M.result_columns(["si_snr", "sdr", "stoi"]) == [
        "si_snr",
        "si_snr_i",
        "sdr",
        "sdr_i",
        "stoi",
    ]


def test_pesq_and_stoi_when_installed() -> None:
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    # Speech-like: harmonic tones switched on and off like syllables.
    gate = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)
    refs = np.stack(
        [
            gate
            * np.sin(2 * np.pi * 150 * t * (1 + 0.1 * np.sin(t)))
            * (1 + 0.5 * np.sin(2 * np.pi * 300 * t)),
            (1 - gate) * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 440 * t)),
        ]
    )
    est = refs + 0.05 * rng.standard_normal(refs.shape)
    mix = refs.sum(0)
    got = utterance_metrics(
        *(torch.from_numpy(a) for a in (mix, refs, est)), SR, ("pesq", "stoi"), utt_id="tones"
    )
    assert 1.0 <= got["pesq"] <= 4.6 and 0.5 < got["stoi"] <= 1.0
    with pytest.warns(MetricWarning, match="pesq is NaN for utterance 'silence'"):
        zero = torch.zeros(2, 3 * SR, dtype=torch.float64)
        got = utterance_metrics(zero[0], zero + 1e-9, zero, SR, ("pesq",), utt_id="silence")
    assert math.isnan(got["pesq"])


@pytest.mark.parametrize("num_src", [2, 3])
def test_perfect_estimates_in_swapped_order_get_the_maximal_score(num_src: int) -> None:
    mix, refs, _ = make_utterance(6, num_src=num_src)
    swapped = refs.flip(0)  # perfect estimates, wrong order
    aligned, perm = align_estimates(refs, swapped)
    assert perm.tolist() == [list(range(num_src))[::-1]]
    assert torch.equal(aligned, refs)
    scores = utterance_metrics(mix, refs, aligned, 8000)
    in_order = utterance_metrics(mix, refs, refs, 8000)
    assert scores == in_order
    assert scores["si_snr"] > 100  # the maximum: only eps keeps it finite
    assert scores["sdr"] > 100
    # and any imperfect estimate scores lower
    _, _, imperfect = make_utterance(6, num_src=num_src)
    assert utterance_metrics(mix, refs, imperfect, 8000)["si_snr"] < scores["si_snr"]
