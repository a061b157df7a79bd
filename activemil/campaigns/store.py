"""Durable file primitives: fsynced appends, atomic whole-file writes, a writer lock, and the
JSON-lines log reader that detects (and sets aside) a torn tail.

Guarantees (POSIX, local file systems; the module also imports and locks on Windows):

* :func:`append_bytes` returns only after the bytes are written and ``fsync``-ed.
* :func:`atomic_write` writes a temporary file in the same directory, ``fsync``-s it, renames it
  over the target with ``os.replace`` and ``fsync``-s the directory, so readers see either the
  old or the new content, never a mix.
* :class:`FileLock` is an exclusive OS lock (the ``filelock`` package: ``flock`` on POSIX,
  ``msvcrt`` on Windows) on a lock file; the OS releases it when the holder dies, so a killed
  command never blocks the next one. The holder checks that the lock file it locked is still the
  one on disk (:meth:`FileLock.verify`) before every write, so deleting the lock file while a
  command runs cannot let a second writer in unnoticed.
* :func:`scan_log` splits a log into the committed records and a *tail* that cannot be a complete
  record (a last line cut off by a crash, trailing NUL bytes, or the first lines of a multi-line
  transaction whose last line never landed); :func:`set_aside` moves such a tail to its own file
  instead of dropping it. A corrupt *complete* line is refused with its line number, nothing moved.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import filelock

from activemil.errors import StateError

LOCK_TIMEOUT_ENV = "ACTIVEMIL_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 60.0
BOM = b"\xef\xbb\xbf"


def host_name() -> str:
    """This machine's name (portable ``os.uname().nodename``)."""
    return platform.node() or "localhost"


def fsync_dir(path: Path) -> None:
    """``fsync`` a directory so a create/rename inside it survives a power loss (POSIX only)."""
    if not hasattr(os, "O_DIRECTORY"):  # Windows: directories cannot be opened or fsync-ed
        return
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
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
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


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably, refusing (``FileExistsError``) if ``path`` exists."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    atomic_write(tmp, data)
    try:
        os.link(tmp, path)  # atomic "create if absent" with the full content
    except (AttributeError, NotImplementedError, PermissionError):  # no hard links here
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0))
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def append_bytes(path: Path, data: bytes) -> None:
    """Append ``data`` to an existing file with one ``write`` loop, then ``fsync`` it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0))
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


def pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` runs on this machine (``None`` if that cannot be told)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return True


class FileLock:
    """Exclusive, re-entrant (per object) OS lock on ``path`` with a timeout.

    The lock file's content names the holder (pid, host, since) for messages only; the OS lock
    is what excludes. After acquiring, and on :meth:`verify` (called before every write), the
    holder checks that ``path`` is still the file it locked: if someone deleted the lock file
    meanwhile, a second command could lock a new one, so the holder refuses to write.

    Args:
        path: the lock file (created if missing).
        what: how to name the protected thing in messages (e.g. the campaign directory).
        timeout: seconds to wait; ``None`` reads :func:`lock_timeout`.
    """

    def __init__(self, path: Path, what: str, timeout: float | None = None) -> None:
        self.path = Path(path)
        self.what = what
        self.timeout = timeout
        self._lock: filelock.BaseFileLock | None = None
        self._ino: tuple[int, int] | None = None
        self._depth = 0
        self.notices: list[str] = []

    def _fd(self) -> int | None:
        ctx = getattr(self._lock, "_context", None)
        return getattr(ctx, "lock_file_fd", None)

    def _identity_ok(self) -> bool:
        fd = self._fd()
        if fd is None:
            return True
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino) and bool(
            mine.st_nlink)

    def __enter__(self) -> FileLock:
        if self._depth:
            self._depth += 1
            return self
        timeout = lock_timeout() if self.timeout is None else self.timeout
        deadline = time.monotonic() + timeout
        previous = self.holder()
        while True:
            lock = filelock.FileLock(str(self.path), timeout=max(0.0, deadline - time.monotonic()),
                                     thread_local=False, poll_interval=0.02)
            try:
                lock.acquire()
            except filelock.Timeout:
                raise StateError(self._busy_message(timeout)) from None
            except OSError as exc:
                raise StateError(
                    f"Cannot open the lock file {self.path} ({exc.strerror or exc}); check that "
                    f"you may write to {self.what}."
                ) from None
            self._lock = lock
            if self._identity_ok():
                break
            lock.release()  # the file was replaced between open and lock: lock the new one
            self._lock = None
        if previous and previous.get("pid") and previous.get("host") == host_name():
            pid = int(previous["pid"])
            if pid != os.getpid() and pid_alive(pid) is False:
                self.notices.append(
                    f"Found a stale lock from pid {pid} (since {previous.get('since', '?')}), a "
                    "command that was killed; the lock was released when it died, so nothing "
                    "needs to be done (never delete .lock by hand)."
                )
        self._write_holder(json.dumps(
            {"pid": os.getpid(), "since": utc_now(), "host": host_name()}).encode())
        self._depth = 1
        return self

    def _write_holder(self, info: bytes) -> None:
        fd = self._fd()
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            _write_all(fd, info)
        except OSError:  # the content is informative only
            pass

    def holder(self) -> dict | None:
        """The holder recorded in the lock file (``pid``, ``host``, ``since``), if any."""
        try:
            info = json.loads(self.path.read_bytes().decode() or "null")
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return info if isinstance(info, dict) else None

    def _busy_message(self, timeout: float) -> str:
        info = self.holder() or {}
        holder = ""
        if "pid" in info:
            holder = f" (pid {info['pid']} on {info.get('host')}, since {info.get('since')})"
            same_host = info.get("host") == host_name()
            if same_host and pid_alive(int(info["pid"])) is False:
                return (
                    f"{self.what} has a stale lock from pid {info['pid']} (not running) that the "
                    f"file system did not release within {timeout:g} s; check that no activemil "
                    "command still runs, then delete .lock and retry."
                )
        return (
            f"{self.what} is locked by another activemil command{holder} and stayed locked for "
            f"{timeout:g} s; wait for it to finish and retry (raise the wait with "
            f"{LOCK_TIMEOUT_ENV}=seconds)."
        )

    def verify(self) -> None:
        """Raise :class:`StateError` if the lock file was deleted or replaced while held."""
        if self._depth and not self._identity_ok():
            raise StateError(
                f"The lock file {self.path} was deleted or replaced while this command held it, "
                "so another command may be writing too; nothing was written, re-run the command "
                "(never delete .lock: it is released automatically)."
            )

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth:
            return
        lock, self._lock = self._lock, None
        assert lock is not None
        try:
            if self._identity_ok_for(lock):
                fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
                if fd is not None:
                    try:
                        os.ftruncate(fd, 0)
                    except OSError:
                        pass
        finally:
            lock.release()

    def _identity_ok_for(self, lock: filelock.BaseFileLock) -> bool:
        saved, self._lock = self._lock, lock
        try:
            return self._identity_ok()
        finally:
            self._lock = saved

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
        records: parsed JSON objects of the committed prefix, with their 1-based line numbers.
        good_length: byte length of the committed prefix.
        tail: bytes after the committed prefix (empty when the log is clean).
        reason: why the tail was judged torn.
        needs_newline: the prefix ends with a complete record that lacks its newline (kept; the
            next append writes the newline first).
    """

    records: list[tuple[int, dict]] = field(default_factory=list)
    good_length: int = 0
    tail: bytes = b""
    reason: str = ""
    needs_newline: bool = False


def _parse_line(line: bytes, validate: Callable[[dict], str | None]) -> tuple[dict | None, str]:
    try:
        rec = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except ValueError:
        return None, "not valid JSON"
    if not isinstance(rec, dict):
        return None, "not a JSON object"
    problem = validate(rec)
    return (rec, "") if problem is None else (None, problem)


def scan_log(data: bytes, name: str, validate: Callable[[dict], str | None]) -> LogScan:
    """Split JSON-lines ``data`` into committed records and a torn tail.

    ``validate(record)`` returns ``None`` for a well-formed record or a short problem. Only bytes
    that cannot be a committed record form the tail: an unparseable last line without newline,
    trailing NUL bytes, and the lines of a multi-line transaction (``txn``/``txn_size``) whose
    other lines never landed. A parseable last line without newline is kept. A corrupt complete
    line, a byte-order mark or a JSON array raise :class:`StateError`; nothing is moved.
    """
    label = Path(name).name
    if data.startswith(BOM):
        raise StateError(
            f"{name} starts with a UTF-8 byte-order mark (an editor re-saved it), so activemil "
            "will not touch it; remove only those 3 invisible bytes (re-save as UTF-8 without BOM "
            "or restore the file from git/backup), then retry."
        )
    head = data.lstrip(b" \t\r\n")
    if head.startswith(b"["):
        raise StateError(
            f"{name} holds a JSON array, not one JSON object per line, so activemil will not "
            "touch it; restore it from git/backup, or rewrite it with one event object per line."
        )
    lines = data.split(b"\n")
    partial = lines.pop()  # bytes after the last newline ("" if the file ends with one)
    records: list[tuple[int, dict]] = []
    offsets: list[int] = []
    pos = 0
    nul_from: int | None = None
    for i, line in enumerate(lines):
        offsets.append(pos)
        pos += len(line) + 1
        body = line.rstrip(b"\r")
        if not body.strip(b" \t"):
            continue
        if not body.strip(b"\x00"):  # NUL padding: a crash or power loss artefact
            nul_from = i if nul_from is None else nul_from
            continue
        if nul_from is not None:
            raise StateError(
                f"{name} line {nul_from + 1} holds only NUL bytes but later lines are intact; "
                f"delete that line of {label} (keep a copy), then retry."
            )
        rec, why = _parse_line(body, validate)
        if rec is None:
            raise StateError(
                f"{name} line {i + 1} is corrupt ({why}); nothing was changed, fix that line "
                f"by hand (keep a copy of {label}) or restore the file from git/backup, then "
                "retry."
            )
        records.append((i + 1, rec))
    good_length = pos if nul_from is None else offsets[nul_from]
    reason = "trailing NUL bytes (interrupted write)" if nul_from is not None else ""
    needs_newline = False
    if partial.strip(b" \t\r\x00"):
        rec, _ = _parse_line(partial.rstrip(b"\r"), validate) if nul_from is None else (None, "")
        if rec is not None:
            records.append((len(lines) + 1, rec))
            good_length, needs_newline = len(data), True
        else:
            reason = reason or "last line is cut off (interrupted write)"
    elif partial.strip(b" \t\r"):
        reason = reason or "trailing NUL bytes (interrupted write)"
    elif nul_from is None:
        good_length = len(data)  # trailing spaces / blank partial: nothing lost, keep
    # an incomplete transaction at the end of the committed prefix was never acknowledged
    if records and "txn" in records[-1][1]:
        txn = records[-1][1]["txn"]
        size = int(records[-1][1].get("txn_size", 1))
        k = 0
        while k < len(records) and records[len(records) - 1 - k][1].get("txn") == txn:
            k += 1
        if k < size:
            first = records[len(records) - k][0]
            records = records[: len(records) - k]
            good_length = offsets[first - 1] if first - 1 < len(offsets) else pos
            needs_newline = False
            reason = f"transaction {txn} has {k} of {size} lines (interrupted write)"
    tail = data[good_length:]
    return LogScan(records=records, good_length=good_length, tail=tail, reason=reason,
                   needs_newline=needs_newline)


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
    write_new(aside, scan.tail)
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
    try:
        os.ftruncate(fd, scan.good_length)
        os.fsync(fd)
    finally:
        os.close(fd)
    return aside
