"""Fault-injection scenarios shared by the reliability tests (reduced form) and ``bench/faults.py``
(full form).

Each scenario module exposes ``run(work: Path, corpus: Path, *, full: bool) -> list[Figure]``:
it injects its faults into real training runs / real CLI processes under ``work`` (a scratch
folder it owns), measures what happened and returns the figures. The tests assert on the figures
(every ``ok`` must hold, the message names the failing one); the bench prints them as the table of
``docs/reliability.md``. One implementation, two sizes: the CI run and the documented figures
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure of a fault category, with the requirement it is held to."""

    category: str  # "numerical", "crashes", "disk", "bad inputs", "ddp"
    name: str  # what was measured, e.g. "steps skipped / steps injected"
    value: str  # the measurement as shown in the table, e.g. "37 / 37"
    requirement: str  # e.g. "equal", "0"
    ok: bool  # whether the measurement meets the requirement

    def __str__(self) -> str:
        status = "ok" if self.ok else "FAILED"
        return (
            f"[{self.category}] {self.name}: {self.value} (required: {self.requirement}) {status}"
        )


def assert_all_ok(figures: list[Figure]) -> None:
    """Fail with every unmet figure listed (not just the first)."""
    failed = [str(f) for f in figures if not f.ok]
    assert not failed, "\n".join(failed)
