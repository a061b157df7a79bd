"""Oracles: sources of labels for simulated campaigns (lookup tables, physics simulators).

``simulate`` defines the protocol; ``activemil.simulators`` implements physics oracles. An
oracle is only ever asked for the rows a strategy picked, so a recording oracle proves what a
campaign could have seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from activemil.errors import InputError
from activemil.space import CandidatePool


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``, stable across processes, platforms and Python versions."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


@runtime_checkable
class Oracle(Protocol):
    """Labels compositions of a pool.

    Attributes:
        name: short name used in outputs; ``direction``: ``"maximize"`` or ``"minimize"``;
        target: name of the labelled property.
    """

    name: str
    direction: str
    target: str

    def evaluate(self, pool: CandidatePool, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Labels float64 ``[len(rows)]`` of ``pool`` rows ``rows`` (target units)."""
        ...


class TableOracle:
    """Looks labels up in a table aligned with the pool rows.

    Args:
        values: float64 ``[N]``, one label per pool row.
        name, target, direction: see :class:`Oracle`.
    """

    def __init__(
        self, values: np.ndarray, *, name: str = "table", target: str = "y",
        direction: str = "maximize",
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise InputError(f"direction {direction!r} must be 'maximize' or 'minimize'.")
        self._values = np.asarray(values, dtype=np.float64).copy()
        self._values.setflags(write=False)
        self.name, self.target, self.direction = name, target, direction

    def __len__(self) -> int:
        return len(self._values)

    def evaluate(self, pool: CandidatePool, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        if len(pool) != len(self._values):
            raise InputError(
                f"Oracle table has {len(self._values)} rows but the pool has {len(pool)}; "
                "build the pool from the same table."
            )
        return self._values[np.asarray(rows, dtype=np.int64)].copy()
