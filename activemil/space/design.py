"""Design spaces of compositions on a grid, and the candidate pools they enumerate.

A composition is a vector of atomic fractions over the space's elements that sums to 1. On a
grid of step ``s`` every fraction is an integer multiple of ``s``; internally a composition is
the integer vector ``counts`` with ``sum(counts) == n_units == round(1 / s)``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from activemil.errors import InputError

#: kept for callers that still pass ``limit``; spaces are now limited by :func:`pool_memory`
DEFAULT_POOL_LIMIT = 250_000
#: largest enumerated pool accepted, in bytes of RAM (override: ACTIVEMIL_MAX_POOL_GB)
MAX_POOL_BYTES = 3 * 2**30
#: rows per enumeration chunk
ENUM_CHUNK = 200_000
_ID_TOKEN = re.compile(r"([A-Z][a-z]?)(\d+(?:\.\d+)?)")


def validate_elements(elements: Sequence[str]) -> tuple[str, ...]:
    """Return ``elements`` as a tuple after checking symbols exist and are unique."""
    elements = tuple(str(e).strip() for e in elements)
    if not elements:
        raise InputError("No elements given; pass e.g. --elements Ni,Fe,Co.")
    for e in elements:
        if e not in chemical_symbols[1:]:
            raise InputError(
                f"Unknown element symbol {e!r}; use periodic-table symbols such as Ni, Fe, Co."
            )
    if len(set(elements)) != len(elements):
        raise InputError(f"Element list {','.join(elements)} repeats a symbol; list each once.")
    return elements


def format_percent(value: float) -> str:
    """Format an atomic percentage for a candidate id: ``20`` or ``12.5`` (2 decimals max)."""
    rounded = round(value, 2)
    if abs(rounded - round(rounded)) < 1e-9:
        return str(int(round(rounded)))
    return f"{rounded:.2f}".rstrip("0").rstrip(".")


def candidate_id(elements: Sequence[str], fractions: Sequence[float]) -> str:
    """Human-readable id of a composition, e.g. ``Ag20Pd80`` (atomic %, zero fractions dropped).

    Elements appear in the given order; ids are stable for a fixed element order.
    """
    parts = [
        f"{el}{format_percent(100.0 * float(x))}"
        for el, x in zip(elements, fractions, strict=True)
        if round(100.0 * float(x), 2) > 0
    ]
    return "".join(parts) if parts else "empty"


def parse_candidate_id(text: str, elements: Sequence[str]) -> np.ndarray:
    """Inverse of :func:`candidate_id`: ``"Ag20Pd80"`` -> fractions ``[E]`` over ``elements``."""
    tokens = _ID_TOKEN.findall(text)
    if not tokens or "".join(f"{a}{b}" for a, b in tokens) != text:
        raise InputError(f"{text!r} is not a candidate id; ids look like Ag20Pd80 (atomic %).")
    out = np.zeros(len(elements))
    for symbol, pct in tokens:
        if symbol not in elements:
            raise InputError(
                f"Candidate id {text!r} contains {symbol}, which is not one of the space's "
                f"elements {','.join(elements)}."
            )
        out[list(elements).index(symbol)] += float(pct) / 100.0
    return out


def pool_memory(n: int, n_elements: int) -> int:
    """Bytes an enumerated pool of ``n`` compositions over ``n_elements`` elements needs
    (fractions, counts during enumeration, ids and the id index; measured ~ 120 B/row + 16 B
    per element)."""
    return int(n * (120 + 16 * n_elements))


def max_pool_bytes() -> int:
    """The pool memory limit: ``ACTIVEMIL_MAX_POOL_GB`` (GiB) or :data:`MAX_POOL_BYTES`."""
    raw = os.environ.get("ACTIVEMIL_MAX_POOL_GB")
    if raw:
        try:
            return int(float(raw) * 2**30)
        except ValueError:
            raise InputError(
                f"ACTIVEMIL_MAX_POOL_GB={raw!r} is not a number; set it to e.g. 4."
            ) from None
    return MAX_POOL_BYTES


def ids_from_counts(elements: Sequence[str], counts: np.ndarray, n_units: int) -> list[str]:
    """:func:`candidate_id` of every row of grid ``counts [N, E]`` (fractions ``counts /
    n_units``), via one token table per (element, count): the same strings, much faster."""
    tokens = [
        [candidate_id([el], [c / n_units]) if c else "" for c in range(n_units + 1)]
        for el in elements
    ]
    cols = [np.asarray(tok, dtype=object)[counts[:, j]] for j, tok in enumerate(tokens)]
    out = cols[0]
    for col in cols[1:]:
        out = out + col
    return [t or "empty" for t in out.tolist()]


@dataclass(frozen=True)
class CandidatePool:
    """A finite set of candidate compositions.

    Attributes:
        elements: element symbols, length ``E``.
        fractions: atomic fractions, float64 ``[N, E]``, rows sum to 1.
        ids: stable human-readable ids, length ``N``.
    """

    elements: tuple[str, ...]
    fractions: np.ndarray
    ids: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        fr = np.asarray(self.fractions, dtype=np.float64)
        if fr.ndim != 2 or fr.shape[1] != len(self.elements):
            raise InputError(
                f"Pool fractions have shape {fr.shape}; expected [N, {len(self.elements)}]."
            )
        object.__setattr__(self, "fractions", fr)
        if not self.ids:
            object.__setattr__(
                self, "ids", tuple(candidate_id(self.elements, row) for row in fr)
            )
        if len(self.ids) != len(fr):
            raise InputError(f"Pool has {len(fr)} compositions but {len(self.ids)} ids.")
        if len(set(self.ids)) != len(self.ids):
            dup = pd.Series(self.ids)[pd.Series(self.ids).duplicated()].iloc[0]
            raise InputError(f"Pool contains the composition {dup} twice; remove duplicates.")

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {cid: i for i, cid in enumerate(self.ids)}

    def index(self, cid: str) -> int:
        """Row of candidate ``cid``; raises :class:`InputError` if it is not in the pool."""
        try:
            return self._index[cid]
        except KeyError:
            raise InputError(
                f"Candidate {cid!r} is not in the pool; check the id (e.g. Ag20Pd80) against "
                "the design space."
            ) from None

    def __contains__(self, cid: object) -> bool:
        return cid in self._index

    def composition(self, i: int) -> dict[str, float]:
        """Non-zero fractions of candidate ``i`` as ``{element: fraction}``."""
        return {e: float(x) for e, x in zip(self.elements, self.fractions[i]) if x > 0}

    @property
    def n_present(self) -> np.ndarray:
        """Number of elements present per candidate, int64 ``[N]`` (the default stratum)."""
        return (self.fractions > 1e-12).sum(axis=1).astype(np.int64)

    def subset(self, rows: Sequence[int] | np.ndarray) -> CandidatePool:
        rows = np.asarray(rows, dtype=np.int64)
        return CandidatePool(self.elements, self.fractions[rows], tuple(self.ids[i] for i in rows))

    def nearest(self, fractions: np.ndarray) -> tuple[int, float]:
        """Row of the pool composition closest (L1) to ``fractions`` ``[E]`` and the distance."""
        d = np.abs(self.fractions - np.asarray(fractions)[None, :]).sum(axis=1)
        i = int(np.argmin(d))
        return i, float(d[i])

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.fractions, columns=list(self.elements))
        df.insert(0, "id", list(self.ids))
        return df

    @classmethod
    def from_frame(cls, df: pd.DataFrame, elements: Sequence[str]) -> CandidatePool:
        """Pool from a table with one column per element (fractions summing to 1)."""
        from activemil.space.parse import parse_compositions

        fr = parse_compositions(df, elements)
        return cls(tuple(elements), fr)


@dataclass(frozen=True)
class DesignSpace:
    """Compositions over ``elements`` on a grid of ``step`` with per-element bounds.

    Args:
        elements: element symbols, e.g. ``("Ni", "Fe", "Co")``.
        step: grid step in atomic fraction (``0.05`` = 5 at.%); ``1/step`` must be an integer.
        min_fraction / max_fraction: per-element bounds (fraction; applies only to elements
            present for ``min_fraction``: an element is either absent or at least its minimum).
        min_elements / max_elements: how many elements may be present at once (k-of-n).
    """

    elements: tuple[str, ...]
    step: float = 0.05
    min_fraction: Mapping[str, float] = field(default_factory=dict)
    max_fraction: Mapping[str, float] = field(default_factory=dict)
    min_elements: int = 1
    max_elements: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", validate_elements(self.elements))
        if not (0 < self.step <= 1):
            raise InputError(f"Grid step {self.step} must lie in (0, 1]; e.g. --step 0.05.")
        n = 1.0 / self.step
        if abs(n - round(n)) > 1e-6:
            raise InputError(
                f"Grid step {self.step} does not divide 1 evenly; use e.g. 0.05, 0.1 or 0.125."
            )
        for name, bounds in (("min", self.min_fraction), ("max", self.max_fraction)):
            for el, v in bounds.items():
                if el not in self.elements:
                    raise InputError(
                        f"--{name} bound names {el}, which is not one of the elements "
                        f"{','.join(self.elements)}."
                    )
                if not (0 <= v <= 1):
                    raise InputError(f"--{name} bound for {el} is {v}; it must lie in [0, 1].")
        max_el = self.max_elements if self.max_elements is not None else len(self.elements)
        object.__setattr__(self, "max_elements", int(max_el))
        if not (1 <= self.min_elements <= self.max_elements <= len(self.elements)):
            raise InputError(
                f"Element-count limits {self.min_elements}..{self.max_elements} must satisfy "
                f"1 <= min <= max <= {len(self.elements)}."
            )

    @property
    def n_units(self) -> int:
        """Number of grid units in a composition (``round(1 / step)``)."""
        return int(round(1.0 / self.step))

    def _unit_bounds(self) -> list[tuple[int, int]]:
        """Per element, (min units when present, max units), in grid units."""
        out = []
        for el in self.elements:
            lo = self.min_fraction.get(el, 0.0) * self.n_units
            hi = self.max_fraction.get(el, 1.0) * self.n_units
            out.append((max(1, math.ceil(lo - 1e-9)), math.floor(hi + 1e-9)))
        return out

    def count(self) -> int:
        """Number of compositions in the space, computed without enumerating them.

        Dynamic programme over elements on the state (units used, elements present).
        """
        n, kmax = self.n_units, self.max_elements
        table = np.zeros((n + 1, kmax + 1), dtype=object)
        table[0, 0] = 1
        for lo, hi in self._unit_bounds():
            new = table.copy()  # element absent
            for used in range(n + 1):
                for k in range(kmax):
                    ways = table[used, k]
                    if ways == 0:
                        continue
                    for c in range(lo, min(hi, n - used) + 1):
                        new[used + c, k + 1] += ways
            table = new
        return int(sum(table[n, k] for k in range(self.min_elements, kmax + 1)))

    def iter_counts(self) -> Iterator[tuple[int, ...]]:
        """Yield every composition as integer grid counts ``[E]`` in lexicographic order."""
        bounds = self._unit_bounds()
        n_el = len(self.elements)

        def rec(i: int, left: int, present: int, prefix: tuple[int, ...]):
            if i == n_el - 1:
                lo, hi = bounds[i]
                options = [0] + list(range(lo, hi + 1))
                if left in options:
                    k = present + (left > 0)
                    if self.min_elements <= k <= self.max_elements:
                        yield prefix + (left,)
                return
            lo, hi = bounds[i]
            for c in [0] + list(range(lo, min(hi, left) + 1)):
                k = present + (c > 0)
                if k > self.max_elements:
                    continue
                yield from rec(i + 1, left - c, k, prefix + (c,))

        yield from rec(0, self.n_units, 0, ())

    def _suffix_count(self) -> Callable[[int, int, int], int]:
        """``f(i, left, present)``: number of ways to finish a composition with elements
        ``i..E-1`` holding ``left`` units, given ``present`` elements so far."""
        bounds, n_el = self._unit_bounds(), len(self.elements)

        @cache
        def f(i: int, left: int, present: int) -> int:
            if present > self.max_elements:
                return 0
            if i == n_el:
                return int(left == 0 and present >= self.min_elements)
            lo, hi = bounds[i]
            return f(i + 1, left, present) + sum(
                f(i + 1, left - c, present + 1) for c in range(lo, min(hi, left) + 1)
            )

        return f

    def _block(self, prefix: tuple[int, ...]) -> np.ndarray:
        """All completions of ``prefix`` (counts of the first elements), vectorised, in
        lexicographic order: int16 ``[M, E]``."""
        bounds, n_el = self._unit_bounds(), len(self.elements)
        rows = np.array([prefix], dtype=np.int16).reshape(1, len(prefix))
        left = np.array([self.n_units - sum(prefix)], dtype=np.int64)
        present = np.array([sum(c > 0 for c in prefix)], dtype=np.int64)
        for i in range(len(prefix), n_el):
            lo, hi = bounds[i]
            last = i == n_el - 1
            parts_r, parts_l, parts_p, parts_c = [], [], [], []
            for c in [0, *range(lo, hi + 1)]:
                ok = (left == c) if last else (left >= c)
                ok &= present + (c > 0) <= self.max_elements
                sel = np.flatnonzero(ok)
                if sel.size:
                    parts_r.append(sel)
                    parts_c.append(np.full(sel.size, c, np.int16))
                    parts_l.append(left[sel] - c)
                    parts_p.append(present[sel] + (c > 0))
            if not parts_r:
                return np.zeros((0, n_el), np.int16)
            src = np.concatenate(parts_r)
            order = np.argsort(src, kind="stable")  # keep lexicographic order: parent, then c
            src = src[order]
            rows = np.concatenate([rows[src], np.concatenate(parts_c)[order][:, None]], axis=1)
            left = np.concatenate(parts_l)[order]
            present = np.concatenate(parts_p)[order]
        return rows[present >= self.min_elements]

    def iter_count_chunks(self, chunk: int = ENUM_CHUNK) -> Iterator[np.ndarray]:
        """Yield the compositions as int16 grid counts ``[m, E]`` in chunks of at most about
        ``chunk`` rows (a prefix of counts is fixed until its completions fit), in the same
        lexicographic order as :meth:`iter_counts`; memory is bounded by the chunk."""
        f = self._suffix_count()
        bounds, n_el = self._unit_bounds(), len(self.elements)

        def rec(prefix: tuple[int, ...]) -> Iterator[np.ndarray]:
            i, left = len(prefix), self.n_units - sum(prefix)
            present = sum(c > 0 for c in prefix)
            size = f(i, left, present)
            if size == 0:
                return
            if size <= chunk or i >= n_el - 1:
                yield self._block(prefix)
                return
            lo, hi = bounds[i]
            for c in [0, *range(lo, min(hi, left) + 1)]:
                yield from rec(prefix + (c,))

        buf: list[np.ndarray] = []
        n_buf = 0
        for block in rec(()):
            buf.append(block)
            n_buf += len(block)
            if n_buf >= chunk:
                yield np.concatenate(buf)
                buf, n_buf = [], 0
        if buf:
            yield np.concatenate(buf)

    def check_size(self, total: int | None = None) -> int:
        """The number of compositions, after checking that enumerating them fits in memory
        (:func:`pool_memory` against :func:`max_pool_bytes`); raises :class:`InputError`."""
        total = self.count() if total is None else total
        if total == 0:
            raise InputError(
                "The design space is empty; loosen --min/--max bounds or the element-count limits."
            )
        need, cap = pool_memory(total, len(self.elements)), max_pool_bytes()
        if need > cap:
            raise InputError(
                f"The design space holds {total:,} compositions, which need about "
                f"{need / 2**30:.1f} GiB to enumerate (limit {cap / 2**30:.1f} GiB); coarsen "
                "--step, lower --max-elements, or raise ACTIVEMIL_MAX_POOL_GB."
            )
        return total

    def enumerate(
        self, limit: int | None = None, force: bool = False, progress: bool = False
    ) -> CandidatePool:
        """Enumerate the candidate pool in chunks (see :meth:`iter_count_chunks`).

        The space is counted first and refused when it would not fit in memory
        (:meth:`check_size`); ``limit`` (a row cap) is still honoured unless ``force``.
        """
        total = self.count()
        if limit is not None and total > limit and not force:
            raise InputError(
                f"The design space holds {total:,} compositions, more than the limit {limit:,}; "
                "coarsen --step, lower --max-elements, or pass --force to enumerate anyway."
            )
        self.check_size(total)
        from activemil.progress import ProgressBar

        parts: list[np.ndarray] = []
        ids: list[str] = []
        with ProgressBar(progress and total > ENUM_CHUNK, total, "enumerating") as bar:
            for counts in self.iter_count_chunks():
                parts.append(counts)
                ids.extend(ids_from_counts(self.elements, counts, self.n_units))
                bar.advance(len(counts))
        counts = np.concatenate(parts) if parts else np.zeros((0, len(self.elements)), np.int16)
        return CandidatePool(self.elements, counts / self.n_units, tuple(ids))

    def contains(self, fractions: np.ndarray, tol: float = 1e-6) -> bool:
        """Whether ``fractions`` ``[E]`` lies on the grid and within all bounds."""
        units = np.asarray(fractions) * self.n_units
        if np.any(np.abs(units - np.round(units)) > tol * self.n_units):
            return False
        c = np.round(units).astype(int)
        if c.sum() != self.n_units or np.any(c < 0):
            return False
        k = int((c > 0).sum())
        if not (self.min_elements <= k <= self.max_elements):
            return False
        return all(ci == 0 or lo <= ci <= hi for ci, (lo, hi) in zip(c, self._unit_bounds()))

    def to_dict(self) -> dict:
        return {
            "elements": list(self.elements),
            "step": self.step,
            "min_fraction": dict(self.min_fraction),
            "max_fraction": dict(self.max_fraction),
            "min_elements": self.min_elements,
            "max_elements": self.max_elements,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> DesignSpace:
        return cls(
            elements=tuple(d["elements"]),
            step=float(d["step"]),
            min_fraction=dict(d.get("min_fraction", {})),
            max_fraction=dict(d.get("max_fraction", {})),
            min_elements=int(d.get("min_elements", 1)),
            max_elements=d.get("max_elements"),
        )
