"""fit_batch: skip rules, threshold filtering, clipping, precision — on real steps of a real model."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers.steps import make_batch, make_trainer

from sepkit.data import Batch
from sepkit.losses import pit_si_snr
from sepkit.training.config import TrainConfig
from sepkit.training.trainer import Trainer


def snapshot(trainer: Trainer) -> tuple[dict, dict]:
    return copy.deepcopy(trainer.module.state_dict()), copy.deepcopy(trainer.optimizer.state_dict())


def assert_bit_identical(before: tuple[dict, dict], trainer: Trainer) -> None:
    params, opt = before
    for name, value in trainer.module.state_dict().items():
        assert torch.equal(value, params[name]), f"parameter {name} changed"
    now = trainer.optimizer.state_dict()
    assert now["state"].keys() == opt["state"].keys()
    for key, state in now["state"].items():
        for field, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt["state"][key][field]))
    assert all(p.grad is None for p in trainer.module.parameters()), "grads not zeroed"


def warmed_trainer(**overrides) -> Trainer:
    """A trainer that has taken two steps, so the optimiser has moments to corrupt."""
    trainer = make_trainer(**overrides)
    for seed in (1, 2):
        trainer.fit_batch(make_batch(seed=seed))
    return trainer


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nonfinite_mixture_skips_step(value: float) -> None:
    trainer = warmed_trainer()
    before = snapshot(trainer)
    batch = make_batch(seed=3)
    batch.mix[2, 100] = value
    count = trainer.nonfinite_count
    assert trainer.fit_batch(batch) == 0.0
    assert trainer.nonfinite_count == count + 1
    assert trainer.skip_reasons["nonfinite_loss"] == 1
    assert_bit_identical(before, trainer)
    # training carries on normally afterwards
    assert trainer.fit_batch(make_batch(seed=4)) != 0.0
    assert trainer.updates == 3


def test_loss_above_upper_limit_skips_step() -> None:
    trainer = warmed_trainer(loss_upper_lim=-50.0)  # every real loss here is above -50 dB
    before = snapshot(trainer)
    # The warm-up steps were skipped too (limit applies from the start): nothing ever changed.
    assert trainer.updates == 0
    assert trainer.fit_batch(make_batch(seed=3)) == 0.0
    assert trainer.nonfinite_count == 3
    assert trainer.skip_reasons["above_upper_limit"] == 3
    assert_bit_identical(before, trainer)


def test_all_examples_below_threshold_skips_step() -> None:
    trainer = make_trainer(threshold=1e6)  # loss must exceed 1e6 to be kept: nothing is
    before = snapshot(trainer)
    assert trainer.fit_batch(make_batch()) == 0.0
    assert trainer.skip_reasons["all_filtered"] == 1
    assert trainer.nonfinite_count == 1
    assert_bit_identical(before, trainer)


def test_example_without_active_source_is_left_out_not_skipped() -> None:
    # Its loss is undefined (every reference silent): the step is the step of the other examples.
    batch = make_batch(batch=4, seed=11)
    batch.sources[1] = 0.0
    rest = [0, 2, 3]
    others = Batch(batch.mix[rest], batch.sources[rest], [batch.ids[i] for i in rest])
    with_silent = make_trainer("sgd", lr=1.0, clip_grad_norm=-1.0)
    without = make_trainer("sgd", lr=1.0, clip_grad_norm=-1.0)
    assert with_silent.fit_batch(batch) == pytest.approx(without.fit_batch(others), rel=1e-6)
    assert with_silent.updates == 1 and with_silent.nonfinite_count == 0
    for a, b in zip(with_silent.module.parameters(), without.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # and validation leaves it out of the mean the same way
    assert with_silent.evaluate_batch(batch) == pytest.approx(with_silent.evaluate_batch(others))


def test_batch_without_any_active_source_skips_as_all_filtered() -> None:
    trainer = warmed_trainer()
    before = snapshot(trainer)
    batch = make_batch(seed=12)
    batch.sources.zero_()
    assert trainer.fit_batch(batch) == 0.0
    assert trainer.skip_reasons == {"all_filtered": 1}
    assert_bit_identical(before, trainer)


def test_mixed_batch_gradient_is_mean_over_kept_examples() -> None:
    batch = make_batch(batch=6, seed=5)
    reference = make_trainer("sgd", lr=1.0, clip_grad_norm=-1.0)
    with torch.no_grad():
        losses, _ = pit_si_snr(reference.module(batch.mix), batch.sources)
    threshold = float(losses.median())
    kept = losses > threshold
    assert 0 < int(kept.sum()) < len(batch)

    # Independent expectation: plain autograd on the mean loss of the kept examples.
    model = copy.deepcopy(reference.module)
    per_example, _ = pit_si_snr(model(batch.mix), batch.sources)
    per_example[kept].mean().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}

    trainer = make_trainer("sgd", lr=1.0, clip_grad_norm=-1.0, threshold=threshold)
    before = {n: p.detach().clone() for n, p in trainer.module.named_parameters()}
    loss = trainer.fit_batch(batch)
    assert loss == pytest.approx(float(losses[kept].mean()), rel=1e-5)
    for name, param in trainer.module.named_parameters():
        torch.testing.assert_close(
            before[name] - param.detach(), expected[name], rtol=1e-4, atol=1e-6
        )


def test_threshold_filter_off_uses_every_example() -> None:
    batch = make_batch(batch=4, seed=6)
    trainer = make_trainer(threshold_byloss=False, threshold=1e6)
    assert trainer.fit_batch(batch) != 0.0
    assert trainer.updates == 1


@pytest.mark.parametrize("clip", [0.5, -1.0])
def test_clipping_bounds_the_update(clip: float) -> None:
    trainer = make_trainer("sgd", lr=1.0, clip_grad_norm=clip)
    before = [p.detach().clone() for p in trainer.module.parameters()]
    trainer.fit_batch(make_batch(seed=7))
    update = torch.cat(
        [
            (b - p.detach()).flatten()
            for b, p in zip(before, trainer.module.parameters(), strict=True)
        ]
    )
    norm = float(update.norm())
    raw = trainer.last_grad_norm
    if clip > 0:
        assert raw > clip  # the test only means something if clipping was needed
        assert norm <= clip * (1 + 1e-4)
    else:
        assert norm == pytest.approx(raw, rel=1e-4)


def test_nonfinite_gradient_skips_step() -> None:
    trainer = warmed_trainer()
    before = snapshot(trainer)
    param = next(trainer.module.parameters())
    handle = param.register_hook(lambda g: g * math.inf)
    loss = trainer.fit_batch(make_batch(seed=8))
    handle.remove()
    assert math.isfinite(loss)
    assert trainer.skip_reasons["nonfinite_grad"] == 1
    assert trainer.nonfinite_count == 1
    assert_bit_identical(before, trainer)


def learns(trainer: Trainer, steps: int = 30) -> tuple[float, float]:
    batch = make_batch(seed=9)
    first = trainer.fit_batch(batch)
    for _ in range(steps):
        last = trainer.fit_batch(batch)
    return first, last


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_runs_and_learns(precision: str) -> None:
    trainer = make_trainer(lr=3e-3, precision=precision)
    first, last = learns(trainer)
    assert trainer.updates > 20
    assert last < first - 1.0
    if precision == "fp16":
        assert trainer.scaler.is_enabled()


def test_fp16_overflow_backs_off_scale_and_skips() -> None:
    trainer = make_trainer(precision="fp16")
    # The scaler starts at 2**16 and backs off on early overflows until a step goes through.
    for seed in range(20):
        trainer.fit_batch(make_batch(seed=seed))
        if trainer.updates:
            break
    assert trainer.updates == 1
    scale = trainer.scaler.get_scale()
    before = snapshot(trainer)
    param = next(trainer.module.parameters())
    handle = param.register_hook(lambda g: g * math.inf)
    trainer.fit_batch(make_batch(seed=2))
    handle.remove()
    assert trainer.scaler.get_scale() == scale * 0.5
    assert_bit_identical(before, trainer)
    trainer.fit_batch(make_batch(seed=3))  # and the next step goes through
    assert trainer.updates == 2
    assert trainer.skip_reasons["nonfinite_grad"] >= 1


def test_gradient_accumulation_equals_big_batch() -> None:
    big = make_batch(batch=4, seed=10)
    halves = [
        Batch(big.mix[:2], big.sources[:2], big.ids[:2]),
        Batch(big.mix[2:], big.sources[2:], big.ids[2:]),
    ]
    one = make_trainer("sgd", lr=0.1, clip_grad_norm=-1.0, threshold_byloss=False)
    two = make_trainer(
        "sgd", lr=0.1, clip_grad_norm=-1.0, threshold_byloss=False, grad_accumulation=2
    )
    one.fit_batch(big)
    for half in halves:
        two.fit_batch(half)
    assert two.updates == 1
    for a, b in zip(one.module.parameters(), two.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_trainer_refuses_a_bad_config_naming_the_key() -> None:
    """Before: Trainer(..., TrainConfig(grad_accumulation=0)) was accepted and the first step
    died of a ZeroDivisionError."""
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"train.grad_accumulation: must be >= 1"):
        Trainer(model, optimizer, TrainConfig(grad_accumulation=0))


def _standard_scale_sequence(overflows: list[bool]) -> list[float]:
    """The scale of a plain GradScaler driven the documented way over the same overflow pattern."""
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=3)
    scales = []
    for overflow in overflows:
        loss = (param * (math.inf if overflow else 1.0)).sum()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        scales.append(scaler.get_scale())
    return scales


def test_fp16_scale_follows_gradscaler_after_an_overflow() -> None:
    """Issue 19.1. Before: the back-off set the scale without resetting GradScaler's growth
    tracker, so with growth_interval=3 the scale went 8, 8, 4, 8 (it grew straight back to the
    value that had just overflowed) where GradScaler gives 8, 8, 4, 4."""
    overflows = [False, False, True, False, False, False, True, False, False, False, False]
    trainer = make_trainer(precision="fp16")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=3)
    param = next(trainer.module.parameters())
    scales = []
    for index, overflow in enumerate(overflows):
        handle = param.register_hook(lambda g: g * math.inf) if overflow else None
        trainer.fit_batch(make_batch(seed=index))
        if handle is not None:
            handle.remove()
        scales.append(trainer.scaler.get_scale())
    expected = _standard_scale_sequence(overflows)
    assert expected[:4] == [8.0, 8.0, 4.0, 4.0]  # the reference behaves as documented
    assert scales == expected
    assert trainer.updates == overflows.count(False)
