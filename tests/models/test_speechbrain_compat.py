"""sepkit's SepFormer loads SpeechBrain model cards and gives SpeechBrain's outputs.

The reference is SpeechBrain itself (a test-only peer, tests/requirements-peers.txt): its modules
are built with random weights, written as a model card folder (hyperparams.yaml in HyperPyYAML
syntax + encoder/masknet/decoder .ckpt state dicts), loaded by sepkit without SpeechBrain, and
compared on the same inputs with SpeechBrain's own separation pipeline.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from sepkit.cli.import_speechbrain import add_arguments as add_import_arguments
from sepkit.cli.import_speechbrain import run as run_import
from sepkit.models import model_config_from_dict
from sepkit.models.contract import spec_of
from sepkit.models.io import load_model
from sepkit.models.speechbrain import (
    SpeechBrainImportError,
    config_from_hparams,
    load_hyperpyyaml,
    load_speechbrain_sepformer,
)

TOLERANCE = 1e-4

# The inference hyperparams.yaml of speechbrain/sepformer-wsj02mix, as its model card holds it.
PUBLISHED_WSJ02MIX = """\
# Model: Inference for source separation with SepFormer
sample_rate: 8000
num_spks: 2

N_encoder_out: 256
out_channels: 256
kernel_size: 16
kernel_stride: 8

Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    kernel_size: !ref <kernel_size>
    out_channels: !ref <N_encoder_out>

SBtfintra: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: 8
    d_model: !ref <out_channels>
    nhead: 8
    d_ffn: 1024
    dropout: 0
    use_positional_encoding: True
    norm_before: True

SBtfinter: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: 8
    d_model: !ref <out_channels>
    nhead: 8
    d_ffn: 1024
    dropout: 0
    use_positional_encoding: True
    norm_before: True

MaskNet: !new:speechbrain.lobes.models.dual_path.Dual_Path_Model
    num_spks: !ref <num_spks>
    in_channels: !ref <N_encoder_out>
    out_channels: !ref <out_channels>
    num_layers: 2
    K: 250
    intra_model: !ref <SBtfintra>
    inter_model: !ref <SBtfinter>
    norm: ln
    linear_layer_after_inter_intra: False
    skip_around_intra: True

Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    in_channels: !ref <N_encoder_out>
    out_channels: 1
    kernel_size: !ref <kernel_size>
    stride: !ref <kernel_stride>
    bias: False

modules:
    encoder: !ref <Encoder>
    decoder: !ref <Decoder>
    masknet: !ref <MaskNet>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <Encoder>
        masknet: !ref <MaskNet>
        decoder: !ref <Decoder>
"""


def test_published_hyperparams_are_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "hyperparams.yaml"
    path.write_text(PUBLISHED_WSJ02MIX)
    spec = config_from_hparams(load_hyperpyyaml(path), path)
    _, imported = model_config_from_dict(spec)
    _, defaults = model_config_from_dict({"name": "sepformer", "pad_input": False})
    assert imported == defaults


def test_hyperpyyaml_refs_interpolation_and_arithmetic(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(
        "a: 4\nb: !ref <a> * 2 + 1\nc: !ref <out>/<a>.txt\nout: results\n"
        "d: !new:x.Y [1, !ref <b>]\ne: !name:torch.optim.Adam\n    lr: 0.1\n"
        "f: !ref <d>\ng: !PLACEHOLDER\n"
    )
    doc = load_hyperpyyaml(path)
    assert doc["b"] == 9 and doc["c"] == "results/4.txt"
    assert doc["d"].target == "x.Y" and doc["d"].args == [1, 9]
    assert doc["f"] is doc["d"]
    assert doc["e"].tag == "!name:torch.optim.Adam"


def test_bad_cards_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(SpeechBrainImportError, match=r"no hyperparams\.yaml"):
        load_speechbrain_sepformer(tmp_path)
    (tmp_path / "hyperparams.yaml").write_text(PUBLISHED_WSJ02MIX.replace("norm: ln", "norm: gln"))
    with pytest.raises(SpeechBrainImportError, match="norm 'gln'"):
        load_speechbrain_sepformer(tmp_path)
    (tmp_path / "hyperparams.yaml").write_text(PUBLISHED_WSJ02MIX)
    with pytest.raises(SpeechBrainImportError, match=r"encoder\.ckpt: missing"):
        load_speechbrain_sepformer(tmp_path)


# --------------------------------------------------------------------------- against SpeechBrain


@pytest.fixture(scope="module")
def dual_path() -> Any:
    """SpeechBrain's ``dual_path`` module; torchaudio is stood in for only if it is absent.

    SpeechBrain imports torchaudio at module level but these classes never use it, and torchaudio
    cannot be installed beside this torch; the stand-in lives only for this import.
    """
    if importlib.util.find_spec("speechbrain") is None:
        pytest.skip(
            "speechbrain is not installed: `pip install --no-deps -r tests/requirements-peers.txt`"
            " to run the SpeechBrain equivalence tests"
        )
    with pytest.MonkeyPatch.context() as patch:
        if importlib.util.find_spec("torchaudio") is None:
            stand_in = types.ModuleType("torchaudio")
            stand_in.__version__ = "0.0.0"  # type: ignore[attr-defined]
            patch.setitem(sys.modules, "torchaudio", stand_in)
        return pytest.importorskip(
            "speechbrain.lobes.models.dual_path",
            reason="speechbrain is installed but cannot be imported (see tests/requirements-peers)",
        )


CONFIGS: list[dict[str, Any]] = [
    # name, encoder, transformer and dual-path sizes; lengths chosen to cover padding corners.
    dict(N=32, L=16, D=32, nhead=4, d_ffn=64, layers=2, blocks=2, K=20, spks=2, linear=False,
         norm_before=True, pos=True, act="relu", skip=True, lengths=[16, 1000, 1003, 1048]),
    dict(N=24, L=8, D=16, nhead=2, d_ffn=48, layers=1, blocks=1, K=10, spks=3, linear=True,
         norm_before=True, pos=True, act="relu", skip=True, lengths=[9, 333, 800, 1601]),
    dict(N=16, L=4, D=16, nhead=4, d_ffn=32, layers=1, blocks=2, K=6, spks=2, linear=True,
         norm_before=False, pos=False, act="gelu", skip=False, lengths=[4, 257, 512]),
]  # fmt: skip


def write_card(cfg: dict[str, Any], folder: Path, dp: Any) -> tuple[Any, Any, Any]:
    """Build SpeechBrain modules with random weights and save them as a model card folder."""
    torch.manual_seed(sum(map(ord, repr(sorted(cfg.items())))) % 1000)
    block = f"""!new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: {cfg["layers"]}
    d_model: !ref <out_channels>
    nhead: {cfg["nhead"]}
    d_ffn: {cfg["d_ffn"]}
    dropout: 0
    activation: {cfg["act"]}
    use_positional_encoding: {cfg["pos"]}
    norm_before: {cfg["norm_before"]}"""
    (folder / "hyperparams.yaml").write_text(
        f"""sample_rate: 8000
num_spks: {cfg["spks"]}
N_encoder_out: {cfg["N"]}
out_channels: {cfg["D"]}
kernel_size: {cfg["L"]}
Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    kernel_size: !ref <kernel_size>
    out_channels: !ref <N_encoder_out>
SBtfintra: {block}
SBtfinter: {block}
MaskNet: !new:speechbrain.lobes.models.dual_path.Dual_Path_Model
    num_spks: !ref <num_spks>
    in_channels: !ref <N_encoder_out>
    out_channels: !ref <out_channels>
    num_layers: {cfg["blocks"]}
    K: {cfg["K"]}
    intra_model: !ref <SBtfintra>
    inter_model: !ref <SBtfinter>
    norm: ln
    linear_layer_after_inter_intra: {cfg["linear"]}
    skip_around_intra: {cfg["skip"]}
Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    in_channels: !ref <N_encoder_out>
    out_channels: 1
    kernel_size: !ref <kernel_size>
    stride: !ref <kernel_size> // 2
    bias: False
modules:
    encoder: !ref <Encoder>
    decoder: !ref <Decoder>
    masknet: !ref <MaskNet>
"""
    )

    def transformer() -> Any:
        return dp.SBTransformerBlock(
            cfg["layers"], cfg["D"], cfg["nhead"], cfg["d_ffn"], dropout=0.0,
            activation=cfg["act"], use_positional_encoding=cfg["pos"],
            norm_before=cfg["norm_before"],
        )  # fmt: skip

    encoder = dp.Encoder(kernel_size=cfg["L"], out_channels=cfg["N"])
    masknet = dp.Dual_Path_Model(
        cfg["N"], cfg["D"], transformer(), transformer(), num_layers=cfg["blocks"], norm="ln",
        K=cfg["K"], num_spks=cfg["spks"], skip_around_intra=cfg["skip"],
        linear_layer_after_inter_intra=cfg["linear"],
    )  # fmt: skip
    decoder = dp.Decoder(cfg["N"], 1, cfg["L"], stride=cfg["L"] // 2, bias=False)
    with torch.no_grad():  # move norms and biases off their neutral initial values
        for module in (encoder, masknet, decoder):
            for param in module.parameters():
                param.add_(0.1 * torch.randn_like(param))
    for name, module in (("encoder", encoder), ("masknet", masknet), ("decoder", decoder)):
        torch.save(module.state_dict(), folder / f"{name}.ckpt")
    return encoder.eval(), masknet.eval(), decoder.eval()


def speechbrain_separate(mix: torch.Tensor, encoder: Any, masknet: Any, decoder: Any) -> Any:
    """SpeechBrain's SepformerSeparation.separate_batch, as ``[B, C, T]``."""
    mix_w = encoder(mix)
    masks = masknet(mix_w)
    sep_h = torch.stack([mix_w] * masks.shape[0]) * masks
    est = torch.cat([decoder(sep_h[i]).unsqueeze(-1) for i in range(masks.shape[0])], dim=-1)
    length, est_len = mix.shape[1], est.shape[1]
    est = (
        torch.nn.functional.pad(est, (0, 0, 0, length - est_len))
        if length > est_len
        else (est[:, :length])
    )
    return est.permute(0, 2, 1)


@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_outputs_equal_speechbrain(dual_path: Any, index: int, tmp_path: Path) -> None:
    cfg = CONFIGS[index]
    sb_modules = write_card(cfg, tmp_path, dual_path)
    model = load_speechbrain_sepformer(tmp_path)
    assert (spec_of(model) or {})["num_spks"] == cfg["spks"]
    gen = torch.Generator().manual_seed(index)
    worst = 0.0
    with torch.no_grad():
        for length in cfg["lengths"]:
            mix = torch.randn(2, length, generator=gen)
            ref = speechbrain_separate(mix, *sb_modules)
            est = model(mix)
            assert est.shape == ref.shape == (2, cfg["spks"], length)
            diff = (est - ref).abs().max().item()
            worst = max(worst, diff)
            assert diff <= TOLERANCE, f"T={length}: max abs diff {diff:.2e}"
            # Outputs must be non-trivial for the comparison to mean something.
            assert ref.abs().max() > 1e-3
    print(f"config {index}: max abs diff {worst:.2e}")


def test_import_cli_writes_a_loadable_model_file(dual_path: Any, tmp_path: Path) -> None:
    import argparse

    card = tmp_path / "card"
    card.mkdir()
    sb_modules = write_card(CONFIGS[1], card, dual_path)
    parser = argparse.ArgumentParser()
    add_import_arguments(parser)
    out = tmp_path / "imported.pt"
    assert run_import(parser.parse_args([str(card), "--out", str(out)])) == 0
    model = load_model(out).eval()
    mix = torch.randn(1, 700)
    with torch.no_grad():
        torch.testing.assert_close(
            model(mix), speechbrain_separate(mix, *sb_modules), atol=TOLERANCE, rtol=0
        )
    (card / "masknet.ckpt").unlink()
    assert run_import(parser.parse_args([str(card), "--out", str(tmp_path / "x.pt")])) == 1


def test_card_is_valid_hyperpyyaml(dual_path: Any, tmp_path: Path) -> None:
    """SpeechBrain's own YAML loader reads the cards written here into the same modules."""
    hyperpyyaml = pytest.importorskip("hyperpyyaml", reason="hyperpyyaml (SpeechBrain's) missing")
    _, masknet, _ = write_card(CONFIGS[0], tmp_path, dual_path)
    with open(tmp_path / "hyperparams.yaml") as handle:
        hparams = hyperpyyaml.load_hyperpyyaml(handle)
    loaded = hparams["modules"]["masknet"].state_dict()
    assert {k: v.shape for k, v in loaded.items()} == {
        k: v.shape for k, v in masknet.state_dict().items()
    }


def test_a_power_tower_in_a_model_card_does_not_hang_the_import(tmp_path: Path) -> None:
    """``9**9**9**9`` would take the process forever (a number of ~10**8 digits, then more): it
    is left as text, like any !ref that is not small arithmetic. Run in a child process so that
    the old behaviour fails the test by its timeout instead of hanging the suite."""
    import subprocess
    import sys

    path = tmp_path / "h.yaml"
    path.write_text("a: !ref 9**9**9**9\nb: !ref 2 ** 10\nc: !ref (-3) ** 3\n")
    script = (
        "import sys; from sepkit.models.speechbrain import load_hyperpyyaml; "
        "d = load_hyperpyyaml(__import__('pathlib').Path(sys.argv[1])); print(repr(d))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'a': '9**9**9**9', 'b': 1024, 'c': -27}"
