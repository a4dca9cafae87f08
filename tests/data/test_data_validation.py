"""Every kind of bad input is reported at start-up, naming the file; skip mode records the IDs."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepkit.data import DataConfig, DataError, build_dataset
from sepkit.data import validate as validate_mod


def _rows(root: Path, split: str) -> list[dict[str, str]]:
    with (root / f"{split}.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture()
def broken(demo_corpus: Path, tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A copy of the valid split with one defect per example: id -> (file, expected problem)."""
    root = tmp_path / "corpus"
    shutil.copytree(demo_corpus / "valid", root / "valid")
    shutil.copy(demo_corpus / "valid.csv", root / "valid.csv")
    rows = _rows(root, "valid")
    f = {i: {k: root / rows[i][f"{k}_path"] for k in ("mix", "s1", "s2")} for i in range(len(rows))}
    expected: dict[str, tuple[str, str]] = {}

    f[0]["s2"].unlink()
    expected[rows[0]["id"]] = (str(f[0]["s2"]), "missing file")
    f[1]["s1"].write_bytes(b"RIFF\x00\x00garbage, not a wav file")
    expected[rows[1]["id"]] = (str(f[1]["s1"]), "unreadable")
    x, _ = sf.read(f[2]["mix"], dtype="int16")
    sf.write(f[2]["mix"], x, 16000, "PCM_16")
    expected[rows[2]["id"]] = (str(f[2]["mix"]), "sample rate")
    x, rate = sf.read(f[3]["s1"], dtype="int16")
    sf.write(f[3]["s1"], np.stack([x, x], axis=1), rate, "PCM_16")
    expected[rows[3]["id"]] = (str(f[3]["s1"]), "channels")
    x, rate = sf.read(f[4]["s2"], dtype="int16")
    sf.write(f[4]["s2"], x[:-100], rate, "PCM_16")
    expected[rows[4]["id"]] = (str(f[4]["s2"]), "length mismatch")
    x, rate = sf.read(f[5]["s1"], dtype="float32")
    x[10] = np.nan
    sf.write(f[5]["s1"], x, rate, "FLOAT")
    expected[rows[5]["id"]] = (str(f[5]["s1"]), "non-finite")
    x, rate = sf.read(f[6]["s2"], dtype="int16")
    sf.write(f[6]["s2"], np.zeros_like(x), rate, "PCM_16")
    expected[rows[6]["id"]] = (str(f[6]["s2"]), "silent source")
    rows.append(dict(rows[7]))  # a duplicate of the last (good) example
    _write_rows(root / "valid.csv", rows)
    return root, expected


def test_all_problems_reported_at_once_naming_each_file(
    broken: tuple[Path, dict[str, tuple[str, str]]], tmp_path: Path
) -> None:
    root, expected = broken
    cfg = DataConfig(root=str(root))
    with pytest.raises(DataError) as info:
        build_dataset(cfg, "valid", train=False, seed=0, report_dir=tmp_path)
    message = str(info.value)
    for rid, (file, problem) in expected.items():
        assert any(p.id == rid and p.file == file and p.problem.startswith(problem)
                   for p in info.value.problems), (rid, problem)  # fmt: skip
        assert file in message
    assert "duplicate id" in message and "on_bad_example=skip" in message
    assert "resample the corpus" in message  # says what to do
    assert (tmp_path / "bad_examples.csv").exists()


def test_skip_mode_drops_and_records_bad_ids(
    broken: tuple[Path, dict[str, tuple[str, str]]], tmp_path: Path
) -> None:
    root, expected = broken
    cfg = DataConfig(root=str(root), on_bad_example="skip")
    ds = build_dataset(cfg, "valid", train=False, seed=0, report_dir=tmp_path)
    assert len(ds) == 1  # 8 rows, 7 broken, the duplicate of the 8th dropped
    with (tmp_path / "bad_examples.csv").open(newline="") as f:
        report = list(csv.DictReader(f))
    assert {r["id"] for r in report} == set(expected) | {ds.records[0].id}
    assert ds.records[0].id not in expected
    for i in range(len(ds)):
        assert np.isfinite(ds[i].mix.numpy()).all()


def test_manifest_missing_column_fails_at_once(demo_corpus: Path, tmp_path: Path) -> None:
    rows = _rows(demo_corpus, "test")
    for r in rows:
        del r["s2_path"]
        r.pop("mix_path")
    _write_rows(tmp_path / "test.csv", rows)
    with pytest.raises(DataError, match=r"test.csv: missing column mix_path"):
        build_dataset(DataConfig(root=str(tmp_path)), "test", train=False, seed=0)


def test_validation_result_cached_by_mtime(
    demo_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "corpus"
    shutil.copytree(demo_corpus / "test", root / "test")
    shutil.copy(demo_corpus / "test.csv", root / "test.csv")
    calls: list[Path] = []
    real = validate_mod.inspect_file

    def counting(path: Path) -> validate_mod.FileFacts:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(validate_mod, "inspect_file", counting)
    cfg = DataConfig(root=str(root))
    build_dataset(cfg, "test", train=False, seed=0)
    assert len(calls) == 8 * 3
    assert list((root / ".sepkit").glob("validation-*.json"))
    calls.clear()
    build_dataset(cfg, "test", train=False, seed=0)
    assert calls == []
    row = _rows(root, "test")[0]
    x, rate = sf.read(root / row["s1_path"], dtype="int16")
    sf.write(root / row["s1_path"], np.zeros_like(x), rate, "PCM_16")  # changed -> re-read
    with pytest.raises(DataError, match="silent source"):
        build_dataset(cfg, "test", train=False, seed=0)
    assert calls == [root / row["s1_path"]]


def _test_split_copy(demo_corpus: Path, root: Path) -> list[dict[str, str]]:
    shutil.copytree(demo_corpus / "test", root / "test")
    shutil.copy(demo_corpus / "test.csv", root / "test.csv")
    return _rows(root, "test")


def test_truncated_mixture_is_the_file_named(demo_corpus: Path, tmp_path: Path) -> None:
    """A length mismatch names the odd one out (here the mixture cut short), not its sources."""
    root = tmp_path / "corpus"
    rows = _test_split_copy(demo_corpus, root)
    mix = root / rows[2]["mix_path"]
    with mix.open("r+b") as f:
        f.truncate(mix.stat().st_size // 2)  # the data chunk cut short, the header intact
    with pytest.raises(DataError) as info:
        build_dataset(DataConfig(root=str(root)), "test", train=False, seed=0)
    assert [p.file for p in info.value.problems] == [str(mix)]
    assert info.value.problems[0].problem.startswith("length mismatch")


def test_broken_manifests_name_file_row_and_column(demo_corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    rows = _test_split_copy(demo_corpus, root)
    csv_path = root / "test.csv"
    cfg = DataConfig(root=str(root))
    lines = csv_path.read_text().splitlines()
    # A row cut short is one bad example (all others still checked), not a crash.
    cut = [*lines[:3], ",".join(lines[3].split(",")[:2]), *lines[4:]]
    csv_path.write_text("\n".join(cut) + "\n")
    with pytest.raises(DataError) as info:
        build_dataset(cfg, "test", train=False, seed=0)
    (problem,) = info.value.problems
    assert problem.id == rows[2]["id"] and problem.file == str(csv_path)
    assert problem.problem == "incomplete row: line 4 has no s1_path, s2_path"
    # A spreadsheet's Latin-1 export: the error names the file and the line.
    csv_path.write_bytes("\n".join(lines).replace("id,", "id\xe9,", 1).encode("latin-1"))
    with pytest.raises(DataError, match=r"test.csv: not UTF-8 text \(byte 0xe9 on line 1\)"):
        build_dataset(cfg, "test", train=False, seed=0)
    # A UTF-8 BOM (as spreadsheets write it) is no reason to lose the first column.
    csv_path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())
    assert len(build_dataset(cfg, "test", train=False, seed=0)) == len(rows)
    # A missing source column is named, with the data.num_spks that needs it.
    _write_rows(csv_path, [{k: v for k, v in r.items() if k != "s2_path"} for r in rows])
    with pytest.raises(DataError, match=r"missing column s2_path .*data.num_spks=2"):
        build_dataset(cfg, "test", train=False, seed=0)
    csv_path.write_text(lines[0] + "\n")
    with pytest.raises(DataError, match=r"test.csv\): lists no examples"):
        build_dataset(cfg, "test", train=False, seed=0)
