"""Durable file primitives: fsynced appends, atomic whole-file writes, a writer lock, and the
JSON-lines log reader that detects (and sets aside) a torn tail.

Guarantees (POSIX, local file systems):

* :func:`append_bytes` returns only after the bytes are written and ``fsync``-ed.
* :func:`atomic_write` writes a temporary file in the same directory, ``fsync``-s it, renames it
  over the target with ``os.replace`` and ``fsync``-s the directory, so readers see either the
  old or the new content, never a mix.
* :class:`FileLock` is an exclusive ``fcntl.flock`` on a lock file; the kernel releases it when
  the holder dies, so a killed command never leaves a stale lock.
* :func:`scan_log` splits a log into the valid prefix and a *tail* of bytes that a crash left
  behind (a last line without newline, undecodable final lines, or an incomplete multi-line
  transaction); :func:`set_aside` moves such a tail to its own file instead of dropping it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from activemil.errors import StateError

LOCK_TIMEOUT_ENV = "ACTIVEMIL_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 60.0


def fsync_dir(path: Path) -> None:
    """``fsync`` a directory so a create/rename inside it survives a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp file + fsync + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_bytes(path: Path, data: bytes) -> None:
    """Append ``data`` to an existing file with one ``write`` loop, then ``fsync`` it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def create_empty(path: Path) -> None:
    """Create an empty file durably (fails if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(Path(path).parent)


def lock_timeout() -> float:
    """Seconds to wait for the campaign lock (env ``ACTIVEMIL_LOCK_TIMEOUT``, default 60)."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_LOCK_TIMEOUT
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


class FileLock:
    """Exclusive, re-entrant (per object) ``flock`` on ``path`` with a timeout.

    Args:
        path: the lock file (created if missing; its content names the current holder).
        what: how to name the protected thing in messages (e.g. the campaign directory).
        timeout: seconds to wait; ``None`` reads :func:`lock_timeout`.
    """

    def __init__(self, path: Path, what: str, timeout: float | None = None) -> None:
        self.path = Path(path)
        self.what = what
        self.timeout = timeout
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> FileLock:
        if self._depth:
            self._depth += 1
            return self
        timeout = lock_timeout() if self.timeout is None else self.timeout
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(
                f"Cannot open the lock file {self.path} ({exc.strerror}); check that you may "
                f"write to {self.what}."
            ) from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = self._holder(fd)
                    os.close(fd)
                    raise StateError(
                        f"{self.what} is locked by another activemil command{holder} and stayed "
                        f"locked for {timeout:g} s; wait for it to finish and retry (raise the "
                        f"wait with {LOCK_TIMEOUT_ENV}=seconds)."
                    ) from None
                time.sleep(0.02)
        info = json.dumps(
            {"pid": os.getpid(), "since": utc_now(), "host": os.uname().nodename}
        ).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        self._fd = fd
        self._depth = 1
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            return f" (pid {info['pid']} on {info['host']}, since {info['since']})"
        except (ValueError, KeyError, OSError):
            return ""

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth:
            return
        fd, self._fd = self._fd, None
        assert fd is not None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._depth > 0


def utc_now() -> str:
    """Current UTC time as ISO 8601 with microseconds and a ``Z`` suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LogScan:
    """Result of :func:`scan_log`.

    Attributes:
        records: parsed JSON objects of the valid prefix, with their 1-based line numbers.
        good_length: byte length of the valid prefix.
        tail: bytes after the valid prefix (empty when the log is clean).
        reason: why the tail was judged torn.
    """

    records: list[tuple[int, dict]] = field(default_factory=list)
    good_length: int = 0
    tail: bytes = b""
    reason: str = ""


def scan_log(data: bytes, name: str, validate: Callable[[dict], str | None]) -> LogScan:
    """Split JSON-lines ``data`` into valid records and a torn tail.

    ``validate(record)`` returns ``None`` for a well-formed record or a short problem. A bad line
    followed by good lines is corruption, not a crash artefact: it raises :class:`StateError`
    naming the line. Records carrying ``txn``/``txn_size`` belong to one multi-line append; an
    incomplete transaction at the end counts as torn.
    """
    lines = data.split(b"\n")
    partial = lines.pop()  # bytes after the last newline ("" if the file ends with one)
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    parsed: list[tuple[int, dict | None, str]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            parsed.append((i, {}, "blank"))
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            parsed.append((i, None, "not valid JSON"))
            continue
        if not isinstance(rec, dict):
            parsed.append((i, None, "not a JSON object"))
            continue
        problem = validate(rec)
        parsed.append((i, rec if problem is None else None, problem or ""))
    # the valid prefix ends at the last good line; everything after must be bad to be "torn"
    last_good = max((i for i, rec, why in parsed if rec), default=-1)
    for i, rec, why in parsed[: last_good + 1]:
        if rec is None:
            raise StateError(
                f"{name} line {i + 1} is corrupt ({why}) but later lines are intact; it was "
                "probably edited by hand: fix or delete that line (keep a copy), then retry."
            )
    good = [(i + 1, rec) for i, rec, _ in parsed[: last_good + 1] if rec]
    reason = ""
    if last_good + 1 < len(parsed):
        reason = "unreadable final line(s)"
    elif partial:
        reason = "last line has no newline (interrupted write)"
    # drop an incomplete transaction at the end of the valid prefix
    if good and "txn" in good[-1][1]:
        txn = good[-1][1]["txn"]
        size = int(good[-1][1].get("txn_size", 1))
        k = 0
        while k < len(good) and good[len(good) - 1 - k][1].get("txn") == txn:
            k += 1
        if k < size:
            good = good[: len(good) - k]
            reason = reason or f"transaction {txn} has {k} of {size} lines (interrupted write)"
    good_length = offsets[good[-1][0] - 1] + len(lines[good[-1][0] - 1]) + 1 if good else 0
    if not good:
        # keep leading blank lines in the prefix only if nothing else follows
        good_length = 0
    tail = data[good_length:]
    if tail and not tail.strip(b"\n\r\t ") and not partial.strip():
        # only blank lines after the prefix: keep them, nothing was lost
        good_length, tail, reason = len(data), b"", ""
    return LogScan(records=good, good_length=good_length, tail=tail, reason=reason)


def set_aside(path: Path, scan: LogScan) -> Path:
    """Move the torn tail of the log at ``path`` into ``<stem>.torn-<UTC time>.jsonl``.

    The tail is written (durably) before the log is truncated, so the bytes exist in at least
    one file at every instant. Returns the path of the set-aside file.
    """
    path = Path(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = path.with_name(f"{path.stem}.torn-{stamp}{path.suffix}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.stem}.torn-{stamp}-{n}{path.suffix}")
    atomic_write(aside, scan.tail)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, scan.good_length)
        os.fsync(fd)
    finally:
        os.close(fd)
    return aside
