"""Follow a JSON-lines log like ``tail -F``, resumable from a persisted position.

The scorer closes its log into segments by renaming it (``name`` → ``name.<number>``, the number
growing with age: ``mlops.core.segments``) and starting a new file. The follower keeps the file
it is reading open, so after a rename it still reads that file to its end, then every newer
closed segment in order, then the new log: no record is lost. A file that
shrinks under the same inode was truncated and is read again from its start. Only complete lines
(ending in a newline) are returned; a partial line is left for the next poll. The position (inode,
offset and a fingerprint of the file's first bytes, which tells a reused inode from the same file)
is what a restart resumes from.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from mlops.core.segments import closed_segments

LOGGER = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20
# A line without a newline within this many bytes is dropped and counted as corrupt.
MAX_LINE_BYTES = CHUNK_BYTES
FINGERPRINT_BYTES = 256


@dataclass
class Position:
    inode: int | None = None
    offset: int = 0
    fingerprint: str = ""  # sha256 of the first ``fingerprint_length`` bytes
    fingerprint_length: int = 0
    skipping: bool = False  # inside an over-long line: drop bytes up to the next newline

    def to_json(self) -> dict[str, Any]:
        return {
            "inode": self.inode,
            "offset": self.offset,
            "fingerprint": self.fingerprint,
            "fingerprint_length": self.fingerprint_length,
            "skipping": self.skipping,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Position:
        return cls(
            inode=raw.get("inode"),
            offset=int(raw.get("offset", 0)),
            fingerprint=str(raw.get("fingerprint", "")),
            fingerprint_length=int(raw.get("fingerprint_length", 0)),
            skipping=bool(raw.get("skipping", False)),
        )


@dataclass
class ReadResult:
    lines: list[bytes] = field(default_factory=list)
    corrupt: int = 0  # over-long lines and a rotated file's unfinished last line
    rotations: int = 0
    truncations: int = 0
    lost_files: int = 0  # a restart found neither the file it was reading nor its rotated copy
    bytes_read: int = 0
    exhausted: bool = False  # the byte budget ran out before the end of the data


class LogFollower:
    def __init__(self, path: Path, position: Position | None = None) -> None:
        self.path = path
        self.position = position or Position()
        self._file: BinaryIO | None = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def unread_bytes(self) -> int:
        if self._file is None:
            return 0
        return max(0, os.fstat(self._file.fileno()).st_size - self.position.offset)

    def poll(self, budget: int = 8 * CHUNK_BYTES) -> ReadResult:
        """Complete lines added since the last poll, reading at most about ``budget`` bytes."""
        result = ReadResult()
        if self._file is None and not self._open(result):
            return result
        while self._read(result, budget):
            current = _stat(self.path)
            if current is None:
                return result  # renamed away and not recreated yet: keep reading the open file
            if current.st_ino == self.position.inode:
                if current.st_size >= self.position.offset:
                    return result
                LOGGER.warning("%s was truncated; reading it again from the start", self.path)
                self.position = Position(inode=current.st_ino)
                result.truncations += 1
                continue
            # Rotated: read what was written before the rename, then go on to the next file.
            if not self._read(result, budget):
                break
            if self.unread_bytes() and not self.position.skipping:
                result.corrupt += 1  # an unfinished last line: nobody will ever complete it
            if not self._advance(result):
                return result
        result.exhausted = True
        return result

    def _sequence(self) -> list[Path]:
        """The closed segments, oldest first, then the log itself."""
        return [*closed_segments(self.path), self.path]

    def _advance(self, result: ReadResult) -> bool:
        """Open the file written after the current one (several may have rotated since a poll)."""
        sequence = self._sequence()
        inodes = [status.st_ino if (status := _stat(path)) else None for path in sequence]
        current = self.position.inode
        start = inodes.index(current) + 1 if current in inodes else 0
        self.close()
        for path in sequence[start:]:
            if self._open_from_start(path):
                result.rotations += 1
                return True
        return False  # the position is kept: the next poll finds the file again and retries

    def _open(self, result: ReadResult) -> bool:
        """Open the file to read, resuming a persisted position if that file still exists."""
        position = self.position
        if position.inode is None:
            return self._open_from_start(self.path)
        for path in self._sequence():
            file = _open_if_same(path, position)
            if file is not None:
                self._file = file
                return True
        LOGGER.warning(
            "%s: the file read before the restart is gone (deleted or truncated); "
            "its unread lines are lost",
            self.path,
        )
        result.lost_files += 1
        # It was the oldest: every file still there is newer, so read them all.
        return any(self._open_from_start(path) for path in self._sequence())

    def _open_from_start(self, path: Path) -> bool:
        try:
            file = path.open("rb")
        except FileNotFoundError:
            return False
        self._file = file
        self.position = Position(inode=os.fstat(file.fileno()).st_ino)
        return True

    def _read(self, result: ReadResult, budget: int) -> bool:
        """Read complete lines from the position on; True once the end of the data is reached."""
        assert self._file is not None
        while result.bytes_read < budget:
            self._file.seek(self.position.offset)
            chunk = self._file.read(CHUNK_BYTES)
            result.bytes_read += len(chunk)
            self._consume(chunk, result)
            if len(chunk) < CHUNK_BYTES:
                return True
        return False

    def _consume(self, chunk: bytes, result: ReadResult) -> None:
        position = self.position
        start = 0
        if position.skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                position.offset += len(chunk)
                return
            position.skipping = False
            start = newline + 1
        end = chunk.rfind(b"\n", start) + 1
        if end > 0:
            result.lines.extend(
                line for line in chunk[start : end - 1].split(b"\n") if line.strip()
            )
        elif len(chunk) - start >= MAX_LINE_BYTES:
            position.skipping = True
            result.corrupt += 1
            end = len(chunk)
        else:
            end = start
        position.offset += end
        self._update_fingerprint()

    def _update_fingerprint(self) -> None:
        position = self.position
        if position.fingerprint_length >= FINGERPRINT_BYTES or self._file is None:
            return
        length = min(position.offset, FINGERPRINT_BYTES)
        if length > position.fingerprint_length:
            position.fingerprint = _fingerprint(self._file, length)
            position.fingerprint_length = length


def _fingerprint(file: BinaryIO, length: int) -> str:
    file.seek(0)
    return hashlib.sha256(file.read(length)).hexdigest()


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _open_if_same(path: Path, position: Position) -> BinaryIO | None:
    """``path`` opened if it is the file ``position`` was taken in, else None."""
    try:
        file = path.open("rb")
    except (FileNotFoundError, IsADirectoryError):
        return None
    status = os.fstat(file.fileno())
    same = status.st_ino == position.inode and status.st_size >= position.fingerprint_length
    if same and position.fingerprint_length:
        same = _fingerprint(file, position.fingerprint_length) == position.fingerprint
    if same and status.st_size < position.offset:
        LOGGER.warning("%s was truncated while the sidecar was stopped", path)
        position.offset, position.skipping = 0, False
    if not same:
        file.close()
        return None
    return file
