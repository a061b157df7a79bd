"""Prior data: related measured tables (other plates, last year's campaign, literature) that
inform a campaign's model but are never its measurements.

``activemil init ... --prior other.csv --prior-target col`` copies each file, byte for byte,
into ``DIR/priors/`` and records it in ``campaign.json`` (``priors``: stored file, original
path, target column, SHA-256 of the content, rows, elements). A prior:

- measures the same property in the same direction as the campaign (its units may differ: the
  transfer weight is learned);
- may have another element set (the model works in the union of the elements);
- never enters the event log, ``observations``, exports or coverage figures: the only reader
  is the proposal's model (``activemil.acquisition.transfer``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from activemil.errors import InputError, StateError
from activemil.space import measured_table, read_csv_file

PRIORS_DIR = "priors"


@dataclass(frozen=True)
class PriorTable:
    """One validated prior table.

    Attributes:
        name: short name (the file stem). source: the path it was read from.
        target: its value column. elements: its element columns ``[E]``.
        fractions: float64 ``[R, E]``. values: float64 ``[R]``.
        sha256: hex digest of the file's bytes. content: the file's bytes.
    """

    name: str
    source: str
    target: str
    elements: tuple[str, ...]
    fractions: np.ndarray
    values: np.ndarray
    sha256: str
    content: bytes

    @property
    def rows(self) -> int:
        return len(self.values)

    def record(self, file: str) -> dict:
        """The ``campaign.json`` entry of this table stored as ``file`` (relative path)."""
        return {"file": file, "source": self.source, "target": self.target,
                "sha256": self.sha256, "rows": self.rows, "elements": list(self.elements)}


def describe_prior(record: Mapping[str, Any]) -> str:
    """One line for the user about a prior's ``campaign.json`` record (see
    :meth:`PriorTable.record`)."""
    return (f"Prior: {record.get('source') or record['file']} ({int(record['rows']):,} rows of "
            f"{','.join(record['elements'])}, {record['target']}; sha256 "
            f"{str(record['sha256'])[:12]}), learned from, never a measurement.")


def read_prior(path: str | Path, target: str | None) -> PriorTable:
    """Read and validate a prior table: element columns (fractions) and a numeric ``target``.

    Raises :class:`InputError` with one sentence (file, row, column, fix) on any problem.
    """
    path = Path(path)
    if not target:
        raise InputError(f"Prior file {path} needs its value column; pass --prior-target COLUMN "
                         "after the --prior.")
    df = read_csv_file(path, "--prior")
    elements, fractions, values = measured_table(df, target, source=str(path),
                                                 flag="--prior-target")
    if len(values) < 2:
        raise InputError(f"{path} has {len(values)} measured row(s); a prior needs at least 2.")
    content = path.read_bytes()
    return PriorTable(path.stem, str(path), str(target), elements, fractions, values,
                      hashlib.sha256(content).hexdigest(), content)


def read_priors(paths: Sequence[str | Path], targets: Sequence[str]) -> list[PriorTable]:
    """Read ``--prior`` files with their ``--prior-target`` columns.

    One target applies to every file; otherwise give one per file, in the same order.
    """
    paths, targets = list(paths), list(targets)
    if not paths:
        if targets:
            raise InputError("--prior-target was given without --prior; pass --prior FILE too.")
        return []
    if len(targets) == 1:
        targets = targets * len(paths)
    if len(targets) != len(paths):
        raise InputError(
            f"Got {len(paths)} --prior file(s) but {len(targets)} --prior-target column(s); give "
            "one --prior-target for all files, or one per file in the same order."
        )
    return [read_prior(p, t) for p, t in zip(paths, targets)]


def stored_name(index: int, table: PriorTable) -> str:
    """Relative path of the stored copy of the ``index``-th prior (0-based)."""
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in table.name)[:40] or "prior"
    return f"{PRIORS_DIR}/{index + 1:02d}-{stem}.csv"


def load_stored(directory: Path, entry: dict) -> PriorTable:
    """Load a stored prior of a campaign and check it against its recorded hash."""
    path = Path(directory) / str(entry["file"])
    try:
        content = path.read_bytes()
    except OSError:
        raise StateError(
            f"The prior file {path} recorded in campaign.json is missing; restore it from git, "
            "or remove its entry from the priors list of campaign.json."
        ) from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != entry["sha256"]:
        raise StateError(
            f"The prior file {path} has changed since it was recorded (SHA-256 {digest[:12]} "
            f"instead of {str(entry['sha256'])[:12]}); restore it from git, or start a new "
            "campaign with the new prior."
        )
    try:
        df = pd.read_csv(path)
        elements, fractions, values = measured_table(df, str(entry["target"]), source=str(path),
                                                     flag="--prior-target")
    except InputError as exc:
        raise StateError(f"The stored prior is no longer readable ({exc})") from None
    return PriorTable(path.stem, str(entry.get("source", path)), str(entry["target"]), elements,
                      fractions, values, digest, content)


__all__ = ["PRIORS_DIR", "PriorTable", "describe_prior", "load_stored", "read_prior", "read_priors", "stored_name"]
