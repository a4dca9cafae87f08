"""The same SepFormer in sepkit and in SpeechBrain, and each toolkit's way of training it.

Shared by ``model_speed.py`` (forward+backward), ``train_step.py`` (row 2: the full training step)
and ``train_memory.py`` (row 6: peak RSS of a training step).

* :func:`speechbrain_modules` builds SpeechBrain's ``Encoder``, ``Dual_Path_Model`` (with two
  ``SBTransformerBlock``) and ``Decoder`` from a sepkit :class:`SepFormerConfig`, exactly as the
  WSJ0-2mix recipe's ``hparams/sepformer.yaml`` wires them.
* :func:`build_pair` gives both with identical weights (SpeechBrain's, imported into sepkit).
* :class:`RecipeBrain` (built by :func:`speechbrain_brain`) is a ``speechbrain.Brain`` subclass that
  does what the recipe's ``Separation`` class (``recipes/WSJ0Mix/separation/train.py``) does in
  ``compute_forward`` / ``compute_objectives`` / ``fit_batch`` on its fp32 path: encoder, masks,
  decoder per speaker, pad/trim, ``get_si_snr_with_pitwrapper``, hard threshold of easy examples,
  the ``loss_upper_lim`` check, backward, ``clip_grad_norm_``, ``optimizer.step()``,
  ``zero_grad()``. The recipe's augmentations (speed perturbation, random shifts, wavedrop,
  random crops) are off, as in sepkit's step. :func:`speechbrain_train_step` drives it the way
  ``Brain._fit_train`` does (``step += 1``, ``fit_batch``, ``update_average``).
* :func:`sepkit_trainer` builds ``sepkit.training.Trainer`` with the same hyper-parameters (Adam,
  lr 1.5e-4, threshold -30 dB, clip 5, loss_upper_lim 999999: the recipe's values).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import speechbrain_shim  # noqa: F401  (stand-in torchaudio, before speechbrain)

from sepkit.data import Batch
from sepkit.models import model_config_from_dict
from sepkit.models.registry import build_model
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer

SAMPLE_RATE = 8000
LR = 1.5e-4  # the recipe's learning rate
RECIPE_HPARAMS = {  # hparams/sepformer.yaml of the WSJ0-2mix recipe (the values the step uses)
    "threshold_byloss": True,
    "threshold": -30.0,
    "loss_upper_lim": 999999.0,
    "clip_grad_norm": 5.0,
}


def sepformer_config(preset: str, num_spks: int = 2) -> Any:
    _, cfg = model_config_from_dict({"name": "sepformer", "preset": preset, "num_spks": num_spks})
    return cfg


def speechbrain_modules(cfg: Any) -> dict[str, torch.nn.Module]:
    """SpeechBrain's ``Encoder``, ``MaskNet`` and ``Decoder`` for a sepkit SepFormer config."""
    import speechbrain.lobes.models.dual_path as dp

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

    return {
        "Encoder": dp.Encoder(kernel_size=cfg.L, out_channels=cfg.N),
        "MaskNet": dp.Dual_Path_Model(
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
        ),
        "Decoder": dp.Decoder(cfg.N, 1, cfg.L, stride=cfg.L // 2, bias=False),
    }


def sepkit_model(preset: str, num_spks: int = 2) -> torch.nn.Module:
    # pad_input=False: drop trailing samples that do not fill a window, as SpeechBrain does
    # (no difference when (T - L) is a multiple of the hop, as in these benchmarks).
    return build_model(
        {"name": "sepformer", "preset": preset, "num_spks": num_spks, "pad_input": False}
    )


def build_pair(
    preset: str, num_spks: int = 2, seed: int = 0
) -> tuple[dict[str, torch.nn.Module], torch.nn.Module]:
    """(SpeechBrain modules, sepkit model) with identical weights."""
    from sepkit.models.speechbrain import convert_state

    torch.manual_seed(seed)
    mods = speechbrain_modules(sepformer_config(preset, num_spks))
    model = sepkit_model(preset, num_spks)
    states = {
        "encoder": mods["Encoder"].state_dict(),
        "masknet": mods["MaskNet"].state_dict(),
        "decoder": mods["Decoder"].state_dict(),
    }
    model.load_state_dict(convert_state(states, model))
    return mods, model


def speechbrain_separate(mods: dict[str, torch.nn.Module], mix: torch.Tensor) -> torch.Tensor:
    """The recipe's forward: ``mix [B, T] -> est [B, T, C]`` (SpeechBrain's layout)."""
    mix_w = mods["Encoder"](mix)
    masks = mods["MaskNet"](mix_w)  # [C, B, N, F]
    sep_h = torch.stack([mix_w] * masks.shape[0]) * masks
    est = torch.cat(
        [mods["Decoder"](sep_h[i]).unsqueeze(-1) for i in range(masks.shape[0])], dim=-1
    )
    length, produced = mix.shape[1], est.shape[1]
    if length > produced:
        return torch.nn.functional.pad(est, (0, 0, 0, length - produced))
    return est[:, :length, :]


def speechbrain_brain(mods: dict[str, torch.nn.Module], num_spks: int = 2) -> Any:
    """A ``speechbrain.Brain`` training SepFormer the way the WSJ0-2mix recipe does."""
    import speechbrain as sb
    from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

    class RecipeBrain(sb.Brain):  # type: ignore[misc, name-defined]
        def compute_forward(self, mix: Any, targets: Any, stage: Any) -> Any:
            signal, lengths = mix
            signal, lengths = signal.to(self.device), lengths.to(self.device)
            targets = torch.cat(
                [targets[k][0].unsqueeze(-1) for k in range(self.hparams.num_spks)], dim=-1
            ).to(self.device)
            modules = {
                "Encoder": self.hparams.Encoder,
                "MaskNet": self.hparams.MaskNet,
                "Decoder": self.hparams.Decoder,
            }
            return speechbrain_separate(modules, signal), targets

        def compute_objectives(self, predictions: Any, targets: Any) -> Any:
            return self.hparams.loss(targets, predictions)

        def fit_batch(self, batch: Any) -> Any:
            targets = [batch.s1_sig, batch.s2_sig] + ([batch.s3_sig] if num_spks == 3 else [])
            predictions, targets = self.compute_forward(batch.mix_sig, targets, sb.Stage.TRAIN)
            loss = self.compute_objectives(predictions, targets)
            if self.hparams.threshold_byloss:
                kept = loss[loss > self.hparams.threshold]
                if kept.nelement() > 0:
                    loss = kept.mean()
            else:
                loss = loss.mean()
            if loss.nelement() > 0 and loss < self.hparams.loss_upper_lim:
                loss.backward()
                if self.hparams.clip_grad_norm >= 0:
                    torch.nn.utils.clip_grad_norm_(
                        self.modules.parameters(), self.hparams.clip_grad_norm
                    )
                self.optimizer.step()
            else:
                self.nonfinite_count += 1
                loss.data = torch.tensor(0).to(self.device)
            self.optimizer.zero_grad()
            return loss.detach().cpu()

    hparams = {
        **mods,
        **RECIPE_HPARAMS,
        "num_spks": num_spks,
        "loss": get_si_snr_with_pitwrapper,
    }
    brain = RecipeBrain(
        modules={
            "encoder": mods["Encoder"],
            "masknet": mods["MaskNet"],
            "decoder": mods["Decoder"],
        },
        opt_class=lambda params: torch.optim.Adam(params, lr=LR),
        hparams=hparams,
        run_opts={"device": "cpu"},
    )
    brain.init_optimizers()
    brain.modules.train()
    brain.step = 0
    brain.avg_train_loss = 0.0
    brain.nonfinite_count = 0
    return brain


def speechbrain_batch(mix: torch.Tensor, sources: torch.Tensor) -> SimpleNamespace:
    """What SpeechBrain's ``PaddedBatch`` gives the recipe: ``(signals, relative lengths)``."""
    lengths = torch.ones(mix.shape[0])
    fields = {"mix_sig": (mix, lengths)}
    for k in range(sources.shape[1]):
        fields[f"s{k + 1}_sig"] = (sources[:, k].contiguous(), lengths)
    return SimpleNamespace(**fields)


def speechbrain_train_step(brain: Any, batch: SimpleNamespace) -> float:
    """One iteration of ``Brain._fit_train``'s loop (progress bar left out)."""
    brain.step += 1
    loss = brain.fit_batch(batch)
    brain.avg_train_loss = brain.update_average(loss, brain.avg_train_loss)
    return float(loss)


def sepkit_trainer(model: torch.nn.Module, run_dir: str | None) -> Trainer:
    config = TrainConfig(
        progress_bar=False,
        lr_scheduler="none",
        threshold_byloss=bool(RECIPE_HPARAMS["threshold_byloss"]),
        threshold=RECIPE_HPARAMS["threshold"],
        loss_upper_lim=RECIPE_HPARAMS["loss_upper_lim"],
        clip_grad_norm=RECIPE_HPARAMS["clip_grad_norm"],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    return Trainer(model, optimizer, config, run_dir=run_dir, device="cpu")


def make_batch(batch: int, seconds: float, num_spks: int = 2, seed: int = 1) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    sources = 0.1 * torch.randn(batch, num_spks, int(seconds * SAMPLE_RATE), generator=gen)
    return Batch(sources.sum(1), sources, [f"utt{i}" for i in range(batch)])
