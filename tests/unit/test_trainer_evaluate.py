"""evaluate_batch: no gradients; in the test stage, per-utterance metrics and bounded audio."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers.tiny_model import TinySeparator

from sepkit.data import Batch
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer


def batches(count: int, size: int = 2) -> list[Batch]:
    out = []
    for b in range(count):
        gen = torch.Generator().manual_seed(b)
        src = torch.randn(size, 2, 1200, generator=gen) * 0.1
        out.append(Batch(src.sum(1), src, [f"utt{b}-{i}" for i in range(size)]))
    return out


def trainer(run_dir: Path, **cfg: object) -> Trainer:
    torch.manual_seed(0)
    model = TinySeparator()
    config = TrainConfig(progress_bar=False, **cfg)  # type: ignore[arg-type]
    return Trainer(model, torch.optim.Adam(model.parameters()), config, run_dir=run_dir)


def test_evaluate_batch_builds_no_graph_and_changes_nothing(tmp_path: Path) -> None:
    t = trainer(tmp_path)
    before = {k: v.clone() for k, v in t.module.state_dict().items()}
    loss = t.evaluate_batch(batches(1)[0], stage="valid")
    assert isinstance(loss, float)
    assert all(p.grad is None for p in t.module.parameters())
    assert all(torch.equal(v, before[k]) for k, v in t.module.state_dict().items())
    assert t.module.training  # the mode in force before is restored


@pytest.mark.parametrize("stage", ["valid", "test"])
def test_whole_passes_run_without_autograd(tmp_path: Path, stage: str) -> None:
    """evaluate() and test() (not only evaluate_batch) run the model with gradients off."""
    t = trainer(tmp_path)
    seen: list[bool] = []
    t.module.register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    if stage == "test":
        t.test(batches(2))
    else:
        t.evaluate(batches(2), stage="valid")
    assert seen == [False, False]
    assert torch.is_grad_enabled()


@pytest.mark.parametrize(("limit", "expected"), [(3, 3), (None, 6), (0, 0)])
def test_test_stage_saves_at_most_n_audio_and_writes_metrics(
    tmp_path: Path, limit: int | None, expected: int
) -> None:
    t = trainer(tmp_path, save_audio=True, n_audio_to_save=limit)
    summary = t.test(batches(3))
    audio = sorted((tmp_path / "audio").iterdir()) if (tmp_path / "audio").exists() else []
    assert len(audio) == expected
    for folder in audio:
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["mix.wav", "s1.wav", "s1_est.wav", "s2.wav", "s2_est.wav"]
        assert sf.info(str(folder / "s1_est.wav")).samplerate == 8000
    with (tmp_path / "test_results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows[:-1]] == sorted(f"utt{b}-{i}" for b in range(3) for i in range(2))
    assert rows[-1]["id"] == "mean"
    assert {"si_snr", "si_snr_i", "sdr", "sdr_i"} <= set(rows[0])
    assert summary["num_utterances"] == 6
    assert json.loads((tmp_path / "test_summary.json").read_text())["num_utterances"] == 6


def test_save_audio_off_saves_nothing(tmp_path: Path) -> None:
    t = trainer(tmp_path, save_audio=False, n_audio_to_save=5)
    t.test(batches(2))
    assert not (tmp_path / "audio").exists()
    assert (tmp_path / "test_results.csv").is_file()


def test_evaluate_averages_over_the_examples_that_count(tmp_path: Path) -> None:
    """A batch's left-out example (no active source) does not weigh on the loader's mean."""
    t = trainer(tmp_path)
    data = batches(2)
    data[1].sources[0].zero_()  # example 0 of batch 1: silent sources, undefined loss
    data[1].mix[0] = data[1].sources[0].sum(0)
    losses = [t.evaluate_batch(Batch(b.mix[i : i + 1], b.sources[i : i + 1], b.ids[i : i + 1]))
              for b in data for i in range(len(b))]  # fmt: skip
    assert math.isnan(losses[2])
    counted = [v for v in losses if not math.isnan(v)]
    assert t.evaluate(data) == pytest.approx(sum(counted) / len(counted), rel=1e-6)


def test_test_shifts_apply_to_the_test_stage_only(tmp_path: Path) -> None:
    """train.test_shifts averages the test estimates over delayed passes; validation, which runs
    every epoch inside the training budget, stays one pass."""
    data = batches(2)
    one, four = trainer(tmp_path / "one"), trainer(tmp_path / "four", test_shifts=4)
    assert one.evaluate(data) == four.evaluate(data)  # same weights, same single-pass validation
    single, shifted = one.test(data), four.test(data)
    assert single["test_shifts"] == 1 and shifted["test_shifts"] == 4
    on_disk = json.loads((tmp_path / "four" / "test_summary.json").read_text())
    assert on_disk["test_shifts"] == 4
    mean = shifted["metrics"]["si_snr"]["mean"]
    assert on_disk["metrics"]["si_snr"]["mean"] == pytest.approx(mean)
    assert mean != pytest.approx(single["metrics"]["si_snr"]["mean"], abs=1e-4)
