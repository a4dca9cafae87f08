"""Validation and test: the same loss as training without gradients, per-utterance metrics and
saved audio in the test stage."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from sepkit.data.batch import Batch
from sepkit.evaluation.shift_ensemble import ShiftEnsemble
from sepkit.losses import apply_permutation
from sepkit.training import runtime
from sepkit.training.core import Stage, TrainerCore

log = logging.getLogger(__name__)


class Evaluation(TrainerCore):
    """Validation loss and test metrics over a loader (DDP-aware: each example counts once)."""

    @torch.no_grad()
    def evaluate_batch(self, batch: Batch, stage: Stage = "valid") -> float:
        """Loss of one batch without gradients; in the test stage also per-utterance metrics and,
        with ``save_audio``, WAV files for at most ``n_audio_to_save`` examples."""
        values = [value for _, value in self._example_losses(batch, stage)]
        return math.fsum(values) / len(values) if values else math.nan

    @torch.no_grad()
    def _example_losses(self, batch: Batch, stage: Stage) -> list[tuple[str, float]]:
        """``(example id, loss)`` of the batch's examples whose loss means something (finite,
        defined).

        Under ``no_grad`` itself, not only through ``evaluate_batch``: ``evaluate`` (every
        validation and test pass) calls it directly, and built an unused autograd graph per batch.
        """
        module = self.eval_module
        if stage == "test" and self.config.test_shifts > 1:
            module = ShiftEnsemble(module, self.config.test_shifts)
        with runtime.eval_mode(module):
            batch = batch.to(self.device)
            est, per_example, perm, defined = self._separate_and_score(module, batch)
            if stage == "test":
                self._test_outputs(batch, apply_permutation(est, perm))
        finite = torch.isfinite(per_example)
        values = per_example[finite & defined]  # an example without active source means nothing
        if not bool(finite.all()):
            bad = [batch.ids[i] for i in (~finite).nonzero().flatten().tolist()]
            log.warning("%s: nonfinite loss for %s; left out of the mean", stage, ", ".join(bad))
        kept = (finite & defined).nonzero().flatten().tolist()
        return list(zip((batch.ids[i] for i in kept), values.tolist(), strict=True))

    def _test_outputs(self, batch: Batch, aligned: Tensor) -> None:
        from sepkit.evaluation.audio import save_example_audio
        from sepkit.evaluation.metrics import utterance_metrics

        limit = self.config.n_audio_to_save
        for i, utt_id in enumerate(batch.ids):
            length = int(batch.lengths[i]) if batch.lengths is not None else batch.mix.shape[-1]
            mix = batch.mix[i, :length].cpu()
            refs = batch.sources[i, :, :length].cpu()
            est = aligned[i, :, :length].cpu()
            row: dict[str, Any] = {"id": utt_id}
            row.update(
                utterance_metrics(mix, refs, est, self.sample_rate, self.test_metrics, utt_id)
            )
            self.test_rows.append(row)
            wants_audio = self.config.save_audio and (limit is None or self._audio_saved < limit)
            if wants_audio and self.is_main and self.run_dir is not None:
                save_example_audio(self.run_dir / "audio", utt_id, mix, refs, est, self.sample_rate)
                self._audio_saved += 1

    def evaluate(self, loader: Iterable[Batch], stage: Stage = "valid") -> float:
        """Mean loss over a loader's examples (nonfinite and undefined ones left out).

        Under DDP each example counts once, by id: a distributed sampler pads the ranks' shares
        to equal length by repeating a few examples, and counting those twice made the
        validation loss (and with it ``best.pt``) depend on the world size. The sum is exactly
        rounded (``math.fsum``), so its order, which differs between 1 and N processes, does not
        matter either.
        """
        losses: list[tuple[str, float]] = []
        for batch in self._progress(loader, desc=stage):
            losses.extend(self._example_losses(batch, stage))
        values = [value for _, value in losses]
        if self.distributed:
            gathered: list[list[tuple[str, float]] | None] = [None] * self.world_size
            dist.all_gather_object(gathered, losses)
            once: dict[str, float] = {}
            for part in gathered:
                for utt_id, value in part or []:
                    once.setdefault(utt_id, value)
            values = list(once.values())
        return math.fsum(values) / len(values) if values else math.nan

    def test(self, loader: Iterable[Batch], metrics: Sequence[str] | None = None) -> dict[str, Any]:
        """Per-utterance metrics over the test set (one pass); on rank 0 with a run directory,
        writes ``test_results.csv`` and ``test_summary.json``. Returns the summary."""
        from sepkit.evaluation.metrics import CORE_METRICS, check_metrics, result_columns
        from sepkit.evaluation.results import summarize, write_results

        self.test_metrics = tuple(check_metrics(metrics or CORE_METRICS))
        self.test_rows = []
        self._audio_saved = 0
        self.evaluate(loader, stage="test")
        rows = self.test_rows
        if self.distributed:
            gathered: list[list[dict[str, Any]] | None] = [None] * self.world_size
            dist.all_gather_object(gathered, rows)
            seen: dict[str, dict[str, Any]] = {}
            for part in gathered:
                for row in part or []:
                    seen.setdefault(row["id"], row)  # padded samplers repeat a few utterances
            rows = list(seen.values())
        rows.sort(key=lambda row: str(row["id"]))
        columns = result_columns(self.test_metrics)
        extra = {"test_shifts": self.config.test_shifts}
        if self.is_main and self.run_dir is not None:
            write_results(self.run_dir, rows, columns, extra)
        self.test_rows = rows
        return {**summarize(rows, columns), **extra}
