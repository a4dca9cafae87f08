"""train.ema_decay: the weights' moving average, checked against a float64 recurrence, resumed
exactly, and the model that validation and checkpoints see."""

from __future__ import annotations

import copy

import torch
from helpers.steps import make_batch, make_trainer
from helpers.tiny_model import TinySeparator

from sepkit.training.ema import WeightEMA


def test_ema_follows_the_warmed_up_recurrence_in_float64() -> None:
    torch.manual_seed(0)
    model = TinySeparator()
    ema = WeightEMA(model, decay=0.9)
    reference = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    for t in range(40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen))
        decay = min(0.9, (1 + t) / (10 + t))
        for n, p in model.named_parameters():
            reference[n] = decay * reference[n] + (1 - decay) * p.detach().double()
        ema.update(model)
    assert ema.updates == 40
    for n, p in ema.module.named_parameters():
        torch.testing.assert_close(p.double(), reference[n], rtol=1e-5, atol=1e-5)
        assert not p.requires_grad


def test_checkpoints_hold_the_average_and_resume_exactly() -> None:
    batches = [make_batch(seed=s) for s in range(6)]
    straight = make_trainer(ema_decay=0.8)
    for b in batches[:3]:
        straight.fit_batch(b)
    saved = copy.deepcopy(straight.state_dict())
    for b in batches[3:]:
        straight.fit_batch(b)

    # model_state is what evaluation and inference load: the average, not the raw weights
    for name, value in saved["model_state"].items():
        assert not torch.equal(value, saved["ema"]["train_model_state"][name]), name
    resumed = make_trainer(ema_decay=0.8)
    resumed.load_state_dict(saved)
    for b in batches[3:]:
        resumed.fit_batch(b)
    for a, b in ((straight.module, resumed.module), (straight.eval_module, resumed.eval_module)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), name


def test_validation_runs_the_average() -> None:
    trainer = make_trainer(ema_decay=0.5, lr=1e-2)
    for s in range(5):
        trainer.fit_batch(make_batch(seed=s))
    batch = make_batch(seed=99)
    with_ema = trainer.evaluate_batch(batch)
    raw = make_trainer()
    raw.module.load_state_dict(trainer.module.state_dict())
    averaged = make_trainer()
    averaged.module.load_state_dict(trainer.state_dict()["model_state"])
    assert with_ema == averaged.evaluate_batch(batch) != raw.evaluate_batch(batch)
