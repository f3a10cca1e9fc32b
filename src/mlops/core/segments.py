"""Segmented append-only logs that several processes share: the prediction log (the scorer's
worker processes append to it; the sidecar follows it, seals it and ships it) and the sidecar's
label log.

A log at ``<dir>/<name>`` is one open segment (``<name>``, the file appended to) and closed
segments ``<name>.<number>``, the number growing with the time of closing (the Unix time in
microseconds), so the oldest has the smallest. A closed segment never changes again: the
shipper identifies it by the sha256 of its bytes.

Every change holds an exclusive ``flock`` on ``<name>.lock``: an append, a rotation (the open
segment becomes the newest closed one) and a seal (a rotation asked for from outside, e.g. by
the shipper once the open segment is old). Before appending, a process follows a rotation made
by another one. A process killed in the middle of a write (SIGKILL, the OOM killer) leaves the
unfinished end of a line; the next process to append (or seal) cuts it off first, so a new line
never continues a broken one. That end belonged to a request that was never answered: the
write is what its answer waited for.

Standard library only: the scorer and the sidecar both use it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("mlops.segments")

MAX_LINE_BYTES = 1 << 20  # longer lines are not read (the follower skips them): never write one
TAIL_CHUNK = 64 * 1024
LOCK_SUFFIX = ".lock"
WRITERS_SUFFIX = ".writers"


def closed_segments(path: Path) -> list[Path]:
    """The closed segments of the log at ``path``, oldest first."""
    prefix = path.name + "."
    try:
        names = [entry.name for entry in os.scandir(path.parent)]
    except FileNotFoundError:
        return []
    numbered = [name for name in names if name.startswith(prefix) and name[len(prefix) :].isdigit()]
    return [path.with_name(name) for name in sorted(numbered, key=lambda n: int(n[len(prefix) :]))]


def log_bytes(path: Path) -> int:
    """Bytes held by the log at ``path``: its closed segments and its open one."""
    total = 0
    for segment in [*closed_segments(path), path]:
        try:
            total += segment.stat().st_size
        except FileNotFoundError:
            continue
    return total


def segment_number(segment: Path) -> int:
    return int(segment.name.rsplit(".", 1)[1])


class SegmentedLog:
    """Appends whole chunks of lines to the open segment, rotating it before it would outgrow
    ``max_bytes``. ``keep``: how many closed segments to keep (the oldest are deleted beyond it);
    None keeps every one until a shipper removes it."""

    def __init__(self, path: Path, max_bytes: int, keep: int | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.cut_bytes = 0  # unfinished line ends cut off, left by writers killed mid-write
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        self._lock = os.open(self._sibling(LOCK_SUFFIX), flags, 0o666)
        self._fd = self._open()
        self._end: int | None = None  # where this process's last append ended

    def _sibling(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)

    @property
    def size(self) -> int:
        """Bytes in the open segment this process holds."""
        return os.fstat(self._fd).st_size

    @contextlib.contextmanager
    def locked(self, wait: bool = True) -> Iterator[int]:
        """Hold the log's lock, on the current open segment; yields its size (its unfinished
        last line, if any, cut off). ``wait=False``: BlockingIOError at once if another process
        holds the lock."""
        fcntl.flock(self._lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield self._repaired_size(self._follow())
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def append(self, data: bytes | bytearray | memoryview, wait: bool = True) -> None:
        """Write ``data`` (whole lines) to the end of the open segment as one piece: no other
        writer's lines come between its lines, and no rotation splits it. Raises OSError with the
        segment as it was before (a partial write is undone); ``wait=False``: BlockingIOError,
        nothing written, if another process holds the log's lock now."""
        with self.locked(wait) as size:
            if size and size + len(data) > self.max_bytes:
                self._rotate()
                size = 0
            self._write(data, size)

    def seal(self) -> Path | None:
        """Close the open segment now if it holds anything; the closed segment's path."""
        with self.locked() as size:
            return self._rotate() if size else None

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._lock)

    def _write(self, data: bytes | bytearray | memoryview, start: int) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            self._end = start
            raise
        self._end = start + len(data)

    def _follow(self) -> int:
        """Reopen the path if the open segment is no longer the file this process holds; the
        size of the one it holds then (the lock is held: nobody writes meanwhile)."""
        try:
            on_disk = self.path.stat()
        except FileNotFoundError:
            on_disk = None
        held = os.fstat(self._fd)
        if on_disk is None or (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
            os.close(self._fd)
            self._fd = self._open()
            self._end = None
            return os.fstat(self._fd).st_size
        return held.st_size

    def _repaired_size(self, size: int) -> int:
        """The open segment's ``size`` once an unfinished last line is cut off. Checked only
        when someone else wrote since this process did."""
        if size == self._end or size == 0:
            return size
        complete = _complete_length(self._fd, size)
        if complete < size:
            os.ftruncate(self._fd, complete)
            self.cut_bytes += size - complete
            logger.warning(
                "%s: cut off an unfinished line of %d bytes (a writer was killed in the middle "
                "of a write; that request was never answered)",
                self.path,
                size - complete,
            )
        self._end = complete
        return complete

    def _rotate(self) -> Path:
        closed = self.path.with_name(f"{self.path.name}.{self._next_number()}")
        self.path.rename(closed)
        os.close(self._fd)
        self._fd = self._open()
        self._end = 0
        if self.keep is not None:
            for old in closed_segments(self.path)[: -self.keep or None]:
                old.unlink(missing_ok=True)
        return closed

    def _next_number(self) -> int:
        existing = closed_segments(self.path)
        latest = segment_number(existing[-1]) if existing else 0
        return max(time.time_ns() // 1000, latest + 1)


def _complete_length(fd: int, size: int) -> int:
    """The length of the file's whole lines: up to and including its last newline."""
    if os.pread(fd, 1, size - 1) == b"\n":  # the usual case: one byte read
        return size
    end = size
    while end > 0:
        start = max(0, end - TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


class WriterPresence:
    """A process that writes the log holds a shared lock on ``<log>.writers`` for as long as it
    lives; the kernel releases it when the process ends, however it ends. Another process can
    then tell whether any writer is left (the sidecar, before it seals the open segment at its
    shutdown)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(
            path.with_name(path.name + WRITERS_SUFFIX), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666
        )

    def hold(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def none_left(self) -> bool:
        """True when no process holds the writers' lock (this one must not hold it)."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        return True

    def close(self) -> None:
        os.close(self._fd)
