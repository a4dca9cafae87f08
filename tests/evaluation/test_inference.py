"""Chunked separation: equals unchunked processing, keeps the speaker order across chunk borders,
resamples, streams files with bounded memory, and loads models from run directories.

The stand-in model is deterministic and honest about what it tests: it separates two band-limited
sources with fixed FIR filters (receptive field 63 samples), but — like a PIT-trained network — it
outputs them in an order that depends on the content: the louder band first. A long signal made of
mixture A (low band louder) followed by mixture B (high band louder) therefore makes the model swap
its output order between chunks of A and chunks of B. Without alignment the output flips at a chunk
border; a test below checks that the flip check really detects it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from scipy.signal import firwin, lfilter
from torch import Tensor, nn

from sepkit.cli.separate import add_arguments as add_separate_arguments
from sepkit.cli.separate import run as run_separate
from sepkit.evaluation.shift_ensemble import ShiftEnsemble
from sepkit.inference import (
    InputError,
    Separator,
    StreamingSeparator,
    resolve_checkpoint,
    separate_file,
    separate_files,
    separate_waveform,
)
from sepkit.losses import si_snr
from sepkit.models.contract import spec_of

torch.set_num_threads(1)
SR = 8000
TAPS = 63
LOW = firwin(TAPS, 1000, fs=SR)
HIGH = firwin(TAPS, 2000, fs=SR, pass_zero=False)


class LouderBandFirst(nn.Module):
    """``mix [B, T] -> [B, 2, T]``: low band and high band by fixed FIR filters, louder first."""

    def __init__(self) -> None:
        super().__init__()
        weight = torch.tensor(np.stack([LOW, HIGH]), dtype=torch.float32).flip(-1).unsqueeze(1)
        self.register_buffer("weight", weight)  # [2, 1, TAPS]

    def forward(self, mix: Tensor) -> Tensor:
        bands = nn.functional.conv1d(mix.unsqueeze(1), self.weight, padding=TAPS // 2)  # [B, 2, T]
        energy = bands.pow(2).sum(-1)  # [B, 2]
        order = torch.where(energy[:, :1] >= energy[:, 1:], 0, 1)  # louder band first
        index = torch.cat([order, 1 - order], dim=1)
        return bands.gather(1, index.unsqueeze(-1).expand_as(bands))


def band_source(rng: np.random.Generator, seconds: float, low: float, high: float) -> np.ndarray:
    """Band-limited noise with a syllable-like on/off envelope."""
    n = int(seconds * SR)
    taps = firwin(255, [low, high], fs=SR, pass_zero=False)
    x = lfilter(taps, 1.0, rng.standard_normal(n + 255))[255:]
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(2, 4) * np.arange(n) / SR)
    return (x * envelope / np.std(x)).astype(np.float32)


def long_mixture(seed: int = 0, seconds: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Two concatenated 2-source mixtures: A has the low band louder, B the high band."""
    rng = np.random.default_rng(seed)
    lo = np.concatenate([band_source(rng, seconds, 100, 800), band_source(rng, seconds, 100, 800)])
    hi = np.concatenate(
        [band_source(rng, seconds, 2300, 3700), band_source(rng, seconds, 2300, 3700)]
    )
    half = int(seconds * SR)
    gains = np.ones((2, 2 * half), dtype=np.float32)
    gains[1, :half] = 0.3  # A: high band quiet
    gains[0, half:] = 0.3  # B: low band quiet
    refs = np.stack([lo, hi]) * gains
    return refs.sum(0), refs


def globally_aligned(est: Tensor, refs: np.ndarray) -> Tensor:
    """One permutation for the whole signal (as evaluation would), chosen by SI-SNR."""
    r = torch.from_numpy(refs).double()
    e = est.double()
    keep = si_snr(e, r).sum()
    swap = si_snr(e.flip(0), r).sum()
    return est if keep >= swap else est.flip(0)


def flipped_segments(est: Tensor, refs: np.ndarray, seconds: float = 0.5) -> list[int]:
    """Indices of segments where the swapped pairing beats the global one (a speaker flip)."""
    est = globally_aligned(est, refs)
    r = torch.from_numpy(refs).double()
    step = int(seconds * SR)
    bad = []
    for i, start in enumerate(range(0, refs.shape[-1] - step + 1, step)):
        seg_e, seg_r = est[:, start : start + step].double(), r[:, start : start + step]
        if si_snr(seg_e.flip(0), seg_r).sum() > si_snr(seg_e, seg_r).sum():
            bad.append(i)
    return bad


def test_stand_in_model_really_reorders_its_outputs() -> None:
    mix, refs = long_mixture()
    model = LouderBandFirst()
    half = mix.shape[0] // 2
    r = torch.from_numpy(refs)
    a = model(torch.from_numpy(mix[:half])[None])[0]
    b = model(torch.from_numpy(mix[half:])[None])[0]
    # In A the first output is the low band (ref 0), in B the high band (ref 1).
    assert si_snr(a, r[:, :half]).min() > 15
    assert si_snr(b, r[:, half:].flip(0)).min() > 15


def test_chunked_equals_unchunked_and_keeps_the_speaker_order() -> None:
    mix, refs = long_mixture()
    model = LouderBandFirst()
    whole = separate_waveform(model, mix, SR, SR, chunk_seconds=None)
    chunked = separate_waveform(model, mix, SR, SR, chunk_seconds=2.0, overlap_seconds=0.5)
    assert chunked.shape == whole.shape == (2, mix.shape[0])
    # Same samples up to float32 rounding: the cross-fade keeps chunk edges out of the output.
    aligned = globally_aligned(chunked, globally_aligned(whole, refs).numpy())
    err = (aligned - globally_aligned(whole, refs)).abs().max()
    assert err < 1e-5 * float(np.abs(mix).max())
    assert flipped_segments(chunked, refs) == []
    assert (
        si_snr(globally_aligned(chunked, refs).double(), torch.from_numpy(refs).double()).min() > 15
    )


def test_flip_check_detects_a_flip_when_alignment_is_off() -> None:
    """Makes the previous test able to fail: the same model without alignment flips."""
    mix, refs = long_mixture()
    model = LouderBandFirst()
    chunked = separate_waveform(model, mix, SR, SR, 2.0, 0.5, align=False)
    assert flipped_segments(chunked, refs) != []


def test_sign_flips_between_chunks_are_undone() -> None:
    class SignFlipper(nn.Module):
        """Returns (x, -x) on even calls and (-x, x) on odd ones: SI-SNR cannot tell them apart."""

        calls = 0

        def forward(self, mix: Tensor) -> Tensor:
            sign = 1.0 if SignFlipper.calls % 2 == 0 else -1.0
            SignFlipper.calls += 1
            return torch.stack([sign * mix, -sign * mix], dim=1)

    x = np.random.default_rng(1).standard_normal(SR * 5).astype(np.float32)
    out = separate_waveform(SignFlipper(), x, SR, SR, 1.0, 0.25)
    # Whatever the first chunk's signs, they are kept throughout: no cancellation in overlaps.
    ratio = out[0].numpy() / x
    assert np.allclose(np.abs(ratio), 1.0, atol=1e-5)
    assert np.all(np.sign(ratio) == np.sign(ratio[0]))


def test_resampling_and_lengths() -> None:
    mix, refs = long_mixture(seconds=2.0)
    model = LouderBandFirst()
    mix16 = soxr.resample(mix, SR, 16000)
    out = separate_waveform(model, mix16, 16000, SR, 1.0, 0.25)
    assert out.shape == (2, mix16.shape[0])
    refs16 = torch.from_numpy(np.stack([soxr.resample(r, SR, 16000) for r in refs])).double()
    assert si_snr(globally_aligned(out, refs16.numpy()).double(), refs16).min() > 15
    for n in (1, 100, SR - 1, SR, SR + 1, 2 * SR + 1234):
        assert separate_waveform(model, mix[:n], SR, SR, 1.0, 0.25).shape == (2, n)
    stereo = np.stack([mix, mix])
    assert torch.allclose(
        separate_waveform(model, stereo, SR, SR, 1.0, 0.25),
        separate_waveform(model, mix, SR, SR, 1.0, 0.25),
    )


def test_streaming_memory_is_bounded_by_one_chunk() -> None:
    model = LouderBandFirst()
    stream = StreamingSeparator(model, chunk=SR, overlap=SR // 4)
    block = np.random.default_rng(2).standard_normal(SR // 3).astype(np.float32)
    emitted = 0
    for _ in range(60):
        emitted += stream.push(block).shape[-1]
        assert stream._pending.shape[0] < SR + block.shape[0]
    emitted += stream.finish().shape[-1]
    assert emitted == 60 * block.shape[0]


def test_separate_files_streams_and_matches_in_memory(tmp_path: Path) -> None:
    mix, _ = long_mixture(seconds=2.0)
    mix = mix / np.abs(mix).max() * 0.5  # no clipping in 16-bit files
    mix16 = soxr.resample(mix, SR, 16000).astype(np.float32)
    sf.write(tmp_path / "a.flac", mix16, 16000)
    sf.write(tmp_path / "b.wav", np.stack([mix, mix], axis=1), SR, subtype="FLOAT")  # stereo
    model = LouderBandFirst()
    outs = separate_files(
        model, [tmp_path / "a.flac", tmp_path / "b.wav"], tmp_path / "out", SR, 1.0, 0.25
    )
    assert [p.name for p in outs[0]] == ["a_s1.wav", "a_s2.wav"]
    est_a = np.stack([sf.read(p)[0] for p in outs[0]])
    info = sf.info(str(outs[0][0]))
    assert info.samplerate == 16000 and info.frames == mix16.shape[0]
    stored = sf.read(tmp_path / "a.flac", dtype="float32")[0]  # 16-bit FLAC: compare like with like
    ref_a = separate_waveform(model, stored, 16000, SR, 1.0, 0.25).numpy()
    # Streamed resampling and chunking equal the one-shot in-memory path.
    assert np.abs(est_a - ref_a).max() < 1e-5 * np.abs(ref_a).max()
    est_b = np.stack([sf.read(p)[0] for p in outs[1]])
    np.testing.assert_allclose(est_b, separate_waveform(model, mix, SR, SR, 1.0, 0.25), atol=1e-6)
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes left no temporaries
    # Shorter than one chunk, with resampling both ways: still the input's length.
    sf.write(tmp_path / "short.wav", mix16[:7001], 16000, subtype="FLOAT")
    (short_s1, _) = separate_file(model, tmp_path / "short.wav", tmp_path / "out", SR, 1.0, 0.25)
    assert sf.info(str(short_s1)).frames == 7001


def test_unreadable_input_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(SR, dtype=np.float32), SR)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(InputError, match=r"bad\.wav"):
        separate_files(LouderBandFirst(), [good, bad], tmp_path / "out", SR)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    with pytest.raises(InputError, match=r"missing\.wav"):
        separate_file(LouderBandFirst(), tmp_path / "missing.wav", tmp_path / "out", SR)


def _small_model() -> nn.Module:
    from sepkit.models.registry import build_model

    torch.manual_seed(0)
    return build_model({"name": "convtasnet", "preset": "small"})


def test_from_pretrained_run_dir_checkpoint_and_model_file(tmp_path: Path) -> None:
    from sepkit.models.io import save_model

    model = _small_model()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    # A training-checkpoint-like payload: the rate lives in the resolved config.
    payload = {
        "model_spec": spec_of(model),
        "model_state": model.state_dict(),
        "config": {"data": {"sample_rate": 16000}},
    }
    torch.save(payload, run / "checkpoints" / "ckpt-000000010.pt")
    torch.save(
        {**payload, "config": {"data": {"sample_rate": 8000}}},
        run / "checkpoints" / "ckpt-000000002.pt",
    )
    assert resolve_checkpoint(run).name == "ckpt-000000010.pt"
    sep = Separator.from_pretrained(run)
    assert sep.sample_rate == 16000
    x = torch.randn(16000)
    out = sep.separate(x, 16000)
    assert out.shape == (2, 16000) and torch.isfinite(out).all()
    with torch.inference_mode():
        direct = model.eval()(x[None])[0]
    # < one chunk; the input is scaled to INPUT_RMS and the estimates back: float rounding
    torch.testing.assert_close(sep.separate(x), direct, atol=1e-4, rtol=1e-3)

    # The run's train.test_shifts carries over to separation; an explicit value wins.
    torch.save(
        {**payload, "config": {"data": {"sample_rate": 16000}, "train": {"test_shifts": 4}}},
        run / "checkpoints" / "ckpt-000000011.pt",
    )
    shifted = Separator.from_pretrained(run)
    assert isinstance(shifted.model, ShiftEnsemble) and shifted.model.offsets == [0, 4, 8, 12]
    assert not isinstance(Separator.from_pretrained(run, shifts=1).model, ShiftEnsemble)
    assert not isinstance(sep.model, ShiftEnsemble)  # no test_shifts recorded: one pass
    out4 = shifted.separate(x, 16000)
    assert out4.shape == (2, 16000) and not torch.allclose(out4, out, atol=1e-4)

    save_model(run / "checkpoints" / "best.pt", model, extra={"sample_rate": 12000})
    assert resolve_checkpoint(run).name == "best.pt"
    assert Separator.from_pretrained(run).sample_rate == 12000

    bare = tmp_path / "bare.pt"
    save_model(bare, model)
    with pytest.warns(UserWarning, match="assuming 8000 Hz"):
        assert Separator.from_pretrained(bare).sample_rate == 8000
    with pytest.raises(Exception, match="no checkpoint found"):
        resolve_checkpoint(tmp_path)


def test_cli_separate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sepkit.models.io import save_model

    model_file = tmp_path / "model.pt"
    save_model(model_file, _small_model(), extra={"sample_rate": SR})
    wav = tmp_path / "talk.wav"
    sf.write(wav, np.random.default_rng(3).standard_normal(SR * 2).astype(np.float32) * 0.1, SR)
    parser = argparse.ArgumentParser()
    add_separate_arguments(parser)
    args = parser.parse_args(
        ["--checkpoint", str(model_file), str(wav), "--out", str(tmp_path / "o"), "--shifts", "2"]
    )
    assert run_separate(args) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["talk_s1.wav", "talk_s2.wav"]
    # Errors reach the user as every subcommand's do: one line naming the culprit, exit status 2.
    from sepkit.cli import main as cli_main

    missing = [
        "separate",
        "--run-dir",
        str(tmp_path / "nope"),
        str(wav),
        "--out",
        str(tmp_path / "o"),
    ]
    assert cli_main(missing) == 2
    err = capsys.readouterr().err
    assert err.startswith("sepkit: error: ") and "nope" in err
    assert math.isfinite(float(sf.read(tmp_path / "o" / "talk_s1.wav")[0].sum()))


@pytest.mark.parametrize("chunk_seconds", [1.0, None])
def test_nan_input_is_named_with_its_position(tmp_path: Path, chunk_seconds: float | None) -> None:
    """Streamed or whole-file, a NaN sample is an error naming the file and where it is."""
    mix = np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) * 0.1
    mix[2 * SR + 5] = np.nan
    sf.write(tmp_path / "nan.wav", mix, SR, subtype="FLOAT")
    with pytest.raises(
        InputError, match=r"nan\.wav: NaN or infinite samples \(the first at 2\.00 s\)"
    ):
        separate_file(
            LouderBandFirst(), tmp_path / "nan.wav", tmp_path / "out", SR, chunk_seconds, 0.25
        )
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--overlap-seconds", "5"], "--overlap-seconds 5.0: must be between 0 and half"),
        (["--chunk-seconds", "-1"], "--chunk-seconds -1.0: must be a length"),
        (["--shifts", "0"], "--shifts 0: must be >= 1"),
    ],
)
def test_bad_separate_options_are_one_error_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], named: str
) -> None:
    from sepkit.cli import main as cli_main

    wav = tmp_path / "talk.wav"
    sf.write(wav, np.zeros(SR, dtype=np.float32), SR)
    args = ["separate", "--checkpoint", str(tmp_path / "m.pt"), str(wav), "--out", str(tmp_path)]
    assert cli_main([*args, *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sepkit: error: {named}"), err
