"""Events of the campaign log: one JSON object per line of ``events.jsonl``.

Every event has ``event_id``, ``time`` (UTC ISO 8601), ``kind``, ``candidate``, ``batch``,
``round`` and ``by`` (user@host); the remaining keys depend on the kind (see docs/campaigns.md).
"""

from __future__ import annotations

import getpass
import json
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from activemil.campaigns.store import host_name, utc_now

KINDS = ("proposed", "submitted", "measured", "failed", "abandoned", "corrected")
VIAS = ("dft", "synthesis")
COMMON_KEYS = ("event_id", "time", "kind", "candidate", "batch", "round", "by")
TXN_KEYS = ("txn", "txn_size")


def new_event_id() -> str:
    """A unique, roughly time-ordered event id such as ``ev-20250301T101500123456-3fa9c1``."""
    t = utc_now().replace("-", "").replace(":", "").replace(".", "").rstrip("Z")
    return f"ev-{t}-{secrets.token_hex(3)}"


@lru_cache(maxsize=1)
def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(getattr(os, "getuid", lambda: "user")())
    return f"{user}@{host_name()}"


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars -> Python, NaN/inf -> None, tuples -> lists."""
    if value is None or type(value) in (str, int, bool):  # fast path (1 M-row ingests)
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Event:
    """One immutable entry of the log.

    Attributes:
        kind: one of :data:`KINDS`.
        candidate: candidate id (e.g. ``Ni20Fe80``).
        batch: batch id (``b003``) or ``None`` for points that were never proposed.
        round: round number (1-based) or ``None``.
        data: kind-specific payload (JSON-serialisable).
        event_id, time, by: filled in by :meth:`new`.
    """

    kind: str
    candidate: str
    batch: str | None
    round: int | None
    data: dict = field(default_factory=dict)
    event_id: str = ""
    time: str = ""
    by: str = ""

    @classmethod
    def new(
        cls, kind: str, candidate: str, batch: str | None, round: int | None, **data: Any
    ) -> Event:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        return cls(
            kind=kind,
            candidate=candidate,
            batch=batch,
            round=None if round is None else int(round),
            data=_clean(data),
            event_id=new_event_id(),
            time=utc_now(),
            by=_who(),
        )

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def to_dict(self) -> dict:
        d = {
            "event_id": self.event_id,
            "time": self.time,
            "kind": self.kind,
            "candidate": self.candidate,
            "batch": self.batch,
            "round": self.round,
            "by": self.by,
        }
        d.update(self.data)
        return d

    def to_line(self, txn: str | None = None, txn_size: int = 1) -> bytes:
        d = self.to_dict()
        if txn is not None:
            d["txn"], d["txn_size"] = txn, txn_size
        return (json.dumps(d, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")

    @classmethod
    def from_dict(cls, d: Mapping) -> Event:
        data = {k: v for k, v in d.items() if k not in COMMON_KEYS and k not in TXN_KEYS}
        return cls(
            kind=d["kind"],
            candidate=d["candidate"],
            batch=d.get("batch"),
            round=d.get("round"),
            data=data,
            event_id=d["event_id"],
            time=d["time"],
            by=d.get("by", ""),
        )


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def validate_record(d: dict) -> str | None:
    """``None`` if ``d`` is a well-formed event, else a short description of the problem."""
    for key in ("event_id", "time", "kind", "candidate"):
        if not isinstance(d.get(key), str) or not d.get(key):
            return f"missing or empty {key!r}"
    if d["kind"] not in KINDS:
        return f"unknown kind {d['kind']!r}"
    if d.get("batch") is not None and not isinstance(d["batch"], str):
        return "'batch' is not a string"
    if d.get("round") is not None and (not isinstance(d["round"], int) or d["round"] < 0):
        return "'round' is not a non-negative integer"
    kind = d["kind"]
    if kind == "measured" and not _number(d.get("value")):
        return "measured event without a finite 'value'"
    if kind == "submitted" and d.get("via") not in VIAS:
        return f"submitted event with 'via' not in {VIAS}"
    if kind == "corrected":
        if not isinstance(d.get("corrects"), str):
            return "corrected event without 'corrects'"
        if d.get("status") == "measured" and not _number(d.get("value")):
            return "corrected event without a finite 'value'"
    if "txn" in d and not (isinstance(d.get("txn_size"), int) and d["txn_size"] >= 1):
        return "'txn' without a positive 'txn_size'"
    return None
