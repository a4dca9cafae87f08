"""Atomic file output: a crash at any instant leaves either the old file or the new one, never half.

The recipe is the classic one: write to a temporary file in the *same* directory (so the rename
cannot cross file systems), flush and fsync it, ``os.replace`` it over the target, then fsync the
directory so the rename itself survives a power loss.

A process killed mid-write (SIGKILL, power loss) cannot remove its temporary file; the next run
calls :func:`remove_stale_temp_files` on the directories it owns, so crashes do not pile up
half-written copies (a checkpoint's can be gigabytes). A write that fails (disk full, read-only file
system) raises :class:`WriteError`, naming the target rather than its temporary sibling and giving
the operating system's cause even when a library (``torch.save``) wrapped it in another exception.
"""

from __future__ import annotations

import contextlib
import csv
import errno as errno_codes
import io
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

#: Names of atomic_open's temporary files: ``.<target>.<8 random characters>.tmp`` (mkstemp).
TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


class WriteError(OSError):
    """Writing ``filename`` failed for an operating-system reason (``strerror``, ``errno``).

    An ``OSError``, so callers (and the CLI) that handle disk faults keep working; ``str()`` reads
    ``<target>: <cause>``.
    """

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def os_error_in(err: BaseException) -> OSError | None:
    """The first ``OSError`` with an errno in ``err`` or its chain of causes and contexts.

    ``torch.save`` turns a failed write into ``RuntimeError: ... unexpected pos``; the real cause
    (``ENOSPC``, ``EFBIG``...) survives only as the context of that error.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        current = current.__cause__ or current.__context__
    return None


def as_write_error(err: BaseException, path: Path, what: str = "") -> BaseException:
    """``err`` as a :class:`WriteError` about ``path`` when an OS error caused it, else ``err``.

    ``what`` prefixes the cause (e.g. ``"cannot write checkpoint: "``).
    """
    cause = os_error_in(err)
    if cause is None:
        return err
    reason = cause.strerror or os.strerror(cause.errno or errno_codes.EIO)
    return WriteError(cause.errno, f"{what}{reason}", str(path))


def disk_fix_hint(errno: int | None, directory: Path) -> str:
    """What to do about a failed write in ``directory``, from the errno that stopped it.

    Why per errno: "free space" is the wrong advice when the directory was deleted while the run
    was going, and "make it writable" when the disk is full.
    """
    if errno == errno_codes.ENOENT:
        return f"{directory} no longer exists (deleted or moved during the run?)"
    if errno in (errno_codes.ENOSPC, errno_codes.EDQUOT, errno_codes.EFBIG):
        return f"free space for {directory}"
    if errno in (errno_codes.EACCES, errno_codes.EPERM, errno_codes.EROFS):
        return f"make {directory} writable"
    return f"free space or make {directory} writable"


def fsync_dir(directory: Path) -> None:
    """Persist a rename or a new entry in ``directory`` (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it atomically becomes ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was; an exception
    caused by the operating system (disk full, read-only, quota, file-size limit) is raised as a
    :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise as_write_error(err, path) from err
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600; a plain open() honours the umask
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        converted = as_write_error(err, path)
        if converted is err:
            raise
        raise converted from err
    fsync_dir(path.parent)


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux's
    ``/proc/self/status``): setting it to read it back would race with other threads' files."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open()``: 0666 less the umask (0644 with the usual 022),
    so that a group on a shared cluster can read checkpoints, reports and audio."""
    return 0o666 & ~current_umask()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Atomically write ``rows`` as CSV; the columns are every key, in order of first use."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def atomic_write_with(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write ``path`` with a function that writes to a binary file object."""
    with atomic_open(path, "wb") as handle:
        writer(handle)


def stale_temp_files(directory: Path, targets: Collection[str] | None = None) -> list[Path]:
    """Temporary files of :func:`atomic_open` in ``directory`` (for ``targets`` only, if given)."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = TEMP_NAME.match(entry.name)
        if match and (targets is None or match.group("target") in targets) and entry.is_file():
            found.append(entry)
    return sorted(found)


def remove_stale_temp_files(
    directory: Path, targets: Collection[str] | None = None
) -> tuple[list[Path], list[str]]:
    """Delete what :func:`atomic_open` writers killed mid-write left in ``directory``.

    Call it only where no other process can be writing (a run directory at the start of the one
    training process that owns it): a live writer's temporary file looks the same. Returns (the
    files removed, one message per file that could not be removed, e.g. on a read-only disk).
    """
    removed, failed = [], []
    for tmp in stale_temp_files(directory, targets):
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            continue
        except OSError as err:
            failed.append(f"{tmp}: {err.strerror or err}")
    if removed:
        fsync_dir(directory)
    return removed, failed


class LockHeld(RuntimeError):
    """Another process holds the lock on ``path``; ``holder`` is its PID as it wrote it."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path}: locked by process {holder}")
        self.path = path
        self.holder = holder


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (created if needed) for the ``with`` block.

    Why: two trainers on one run directory would interleave checkpoints and logs, and each start
    deletes the temporary files of "crashed" writes that may be the other's live ones. ``flock`` is
    released by the kernel when the holder dies, SIGKILL included, so a crash never leaves a stale
    lock behind. Raises :class:`LockHeld` at once instead of waiting.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise LockHeld(path, handle.read().strip() or "unknown") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
