"""Disk faults (issue #9): the checkpoint directory (or the whole run directory) fills up or turns
read-only under a real ``sepkit train``. Training must stop with one clear error, keep its last
good checkpoint intact, and resume from it with the same command once the fault is cleared. The
reduced form of ``bench/faults.py --only disk``; the mechanisms (a small tmpfs, remounted
read-only, where ``mount`` works; ``RLIMIT_FSIZE`` and ``chmod`` elsewhere) and what each case
checks are in :mod:`helpers.faults.disk`."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.faults import Figure, assert_all_ok, disk


def check(figures: list[Figure]) -> None:
    """Every figure met, and the four verdicts of the case said plainly."""
    assert_all_ok(figures)
    assert len(figures) == 4, figures
    for figure in figures:
        assert figure.value.startswith("yes"), figure


def run_or_skip(work: Path, corpus: Path, case: disk.Case) -> None:
    """Run one case and check it; skip, saying why, where the machine offers no mechanism."""
    if case.mechanism is None:
        pytest.skip(f"{case.title}: {case.skip_reason}")
    check(disk.run_case(work, corpus, case))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_checkpoint_directory_full(demo_corpus: Path, tmp_path: Path) -> None:
    mechanism, why_not = disk.probe(tmp_path).best("full")
    run_or_skip(tmp_path, demo_corpus, disk.checkpoints_full(mechanism, skip_reason=why_not))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_checkpoint_directory_full_as_a_file_size_limit(demo_corpus: Path, tmp_path: Path) -> None:
    """The fallback where no tmpfs can be mounted, exercised wherever it works (any Linux)."""
    why_not = disk.probe(tmp_path).rlimit
    case = disk.checkpoints_full(None if why_not else disk.RLIMIT, skip_reason=why_not)
    run_or_skip(tmp_path, demo_corpus, case)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_checkpoint_directory_read_only(demo_corpus: Path, tmp_path: Path) -> None:
    mechanism, why_not = disk.probe(tmp_path).best("read-only")
    run_or_skip(tmp_path, demo_corpus, disk.checkpoints_read_only(mechanism, skip_reason=why_not))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_directory_full_logs_included(demo_corpus: Path, tmp_path: Path) -> None:
    mechanism, why_not = disk.probe(tmp_path).best("full")
    run_or_skip(tmp_path, demo_corpus, disk.run_dir_full(mechanism, skip_reason=why_not))
