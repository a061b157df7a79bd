"""Per-site DFT data: site files -> instance feature rows in the ``zones`` encoder's layout.

A site file is a CSV with one row per DFT site: its neighbour-zone element counts and its
energy (the bundled ``agirpdptru_sites_OH_ontop.csv`` / ``agirpdptru_sites_O_fcc.csv``, or a
user's own). Column names:

- zone counts ``{zone}_{El}`` or ``z{zone}_{El}`` for every zone of one of the recipe's site
  kinds (``fcc111`` on-top: ``site``, ``1A``, ``2A``, ``3B``; fcc hollow: ``ens``, ``1A``,
  ``1B``, ``2A``, ``2B``, ``3C``), e.g. ``site_Pt``, ``z1A_Ag``. The zones present decide the
  site kind of the whole file. An element of the element order without columns counts 0.
- one energy column (eV): ``energy_column`` if given, else the only other column, else the one
  other column whose name starts with ``dE`` or contains ``energy``. Other columns are ignored.

Every problem is an :class:`~activemil.errors.InputError` of one sentence naming the file, the
row (spreadsheet numbering: header = row 1) and the column, and how to fix it. Zone counts must
sum to the zone size (``zone_sums="error"``, the default for a user's file; the bundled files
keep their 34 relaxation-shifted rows, see :func:`parse_site_frame`).

Each file is one *task* (an adsorbate on a site kind, e.g. ``OH_ontop``); tasks get separate
energy scales in the surrogate (:mod:`activemil.surrogates.mil`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from activemil.errors import InputError
from activemil.featurize.zones import SiteLayout, ZonesEncoder, zone_offsets

ZoneSums = Literal["error", "drop", "keep"]
_SYMBOLS = frozenset(chemical_symbols[1:])
_ENERGY_RE = re.compile(r"^dE_(?P<ads>[A-Za-z0-9]+?)(_eV)?$")


@dataclass(frozen=True)
class SiteSet:
    """Standalone DFT sites as zones-encoder instances.

    Attributes:
        features: float32 ``[S, D]`` rows in the ``zones`` layout of ``site_kinds`` x
            ``elements`` (the same columns bags of that recipe and element order have).
        kind: int8 ``[S]`` index into ``site_kinds``.
        energy: float64 ``[S]`` site energy, eV (as in the file, e.g. relative to Pt(111)).
        task: int64 ``[S]`` index into ``tasks`` (one task per adsorbate/site kind).
        tasks: task names, e.g. ``("OH_ontop", "O_fcc")``.
        site_kinds: the recipe's site kinds; ``elements``: the element order of ``features``.
        source: ``[S]`` file name of every row; ``row``: int64 ``[S]`` spreadsheet row in it.
    """

    features: np.ndarray
    kind: np.ndarray
    energy: np.ndarray
    task: np.ndarray
    tasks: tuple[str, ...]
    site_kinds: tuple[str, ...]
    elements: tuple[str, ...]
    source: tuple[str, ...]
    row: np.ndarray

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def subset(self, rows: Sequence[int] | np.ndarray) -> SiteSet:
        """Sites at ``rows`` (order kept); task names are kept even if a task loses all rows."""
        rows = np.asarray(rows, dtype=np.int64)
        return SiteSet(
            features=self.features[rows], kind=self.kind[rows], energy=self.energy[rows],
            task=self.task[rows], tasks=self.tasks, site_kinds=self.site_kinds,
            elements=self.elements, source=tuple(self.source[i] for i in rows),
            row=self.row[rows],
        )

    def zone_counts(self, kind: str, layout: SiteLayout) -> np.ndarray:
        """Zone counts ``[S_k, n_zones(kind) * E]`` (zone-major, site-file order) of the sites
        of ``kind``, in row order."""
        off = zone_offsets(layout, len(self.elements))[kind]
        width = len(layout.zone_layout[kind]) * len(self.elements)
        sel = self.kind == self.site_kinds.index(kind)
        return self.features[sel, off : off + width].astype(np.float64)

    def fingerprint(self) -> str:
        """Content hash (features, energies, tasks) for provenance records."""
        h = hashlib.sha256()
        for a in (self.features, self.energy, self.task):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update("|".join(self.tasks + self.elements + self.site_kinds).encode())
        return h.hexdigest()[:16]

    @staticmethod
    def concat(sets: Sequence[SiteSet]) -> SiteSet:
        """Stack site sets over the same recipe and element order; tasks with the same name
        are merged (they share one energy scale)."""
        if not sets:
            raise InputError("No site files given; pass at least one site file.")
        first = sets[0]
        tasks: list[str] = []
        for s in sets:
            if s.elements != first.elements or s.site_kinds != first.site_kinds:
                raise InputError(
                    f"Site set from {s.source[0] if s.source else '?'} uses elements "
                    f"{','.join(s.elements)} and kinds {','.join(s.site_kinds)}, not "
                    f"{','.join(first.elements)} / {','.join(first.site_kinds)}; read every "
                    "site file with the same recipe and element order."
                )
            tasks.extend(t for t in s.tasks if t not in tasks)
        remap = [np.array([tasks.index(t) for t in s.tasks], np.int64) for s in sets]
        return SiteSet(
            features=np.concatenate([s.features for s in sets]),
            kind=np.concatenate([s.kind for s in sets]),
            energy=np.concatenate([s.energy for s in sets]),
            task=np.concatenate([m[s.task] if len(s) else s.task for s, m in zip(sets, remap)]),
            tasks=tuple(tasks),
            site_kinds=first.site_kinds,
            elements=first.elements,
            source=tuple(x for s in sets for x in s.source),
            row=np.concatenate([s.row for s in sets]),
        )


def _zone_name(prefix: str, zones: set[str]) -> str | None:
    """The recipe zone a column prefix names (``1A``, ``z1A`` -> ``1A``), or None."""
    if prefix in zones:
        return prefix
    if prefix.startswith("z") and prefix[1:] in zones:
        return prefix[1:]
    return None


def _row(i: int) -> int:
    """Spreadsheet row of 0-based data row ``i`` (header is row 1)."""
    return i + 2


def resolve_site_file(spec: str | Path) -> Path:
    """A site-file path, or the bundled file of a :data:`activemil.data.SITE_FILES` key
    (``OH_ontop``, ``O_fcc``)."""
    from activemil.data import SITE_FILES, data_path

    if isinstance(spec, str) and spec in SITE_FILES:
        return data_path(SITE_FILES[spec])
    return Path(spec)


def parse_site_frame(
    df: pd.DataFrame,
    layout: SiteLayout,
    elements: Sequence[str],
    *,
    source: str = "site table",
    energy_column: str | None = None,
    task: str | None = None,
    zone_sums: ZoneSums = "error",
) -> SiteSet:
    """Validate a site table and turn it into a :class:`SiteSet` (see the module docstring).

    Args:
        df: one row per site: zone-count columns and an energy column (eV).
        layout: the recipe (its ``site_kinds`` and ``zone_layout``), e.g. ``FCC111Recipe()``.
        elements: element order of the feature columns (the design space's order).
        source: file name used in error messages and ``SiteSet.source``.
        energy_column: name of the energy column (default: detected, see module docstring).
        task: task name (default ``{adsorbate}_{kind}`` from a ``dE_{adsorbate}_eV`` column,
            else ``{energy column}_{kind}``).
        zone_sums: rows whose zone counts do not sum to the zone size: ``error`` (default),
            ``drop`` them, or ``keep`` them as they are. The bundled files hold 6 on-top and
            28 fcc rows where relaxation moved an atom between zones (e.g. 2 + 7 atoms in
            zones 1A + 1B instead of 3 + 6); they are kept, as the simulator's fit keeps them.

    Raises:
        InputError: unknown element or zone column, zone counts that are not whole numbers
            >= 0 or do not sum to the zone size, no (or an ambiguous) energy column, a
            non-numeric energy, an empty table.
    """
    elements = tuple(str(e) for e in elements)
    if len(set(elements)) != len(elements) or not elements:
        raise InputError(
            f"Element order {','.join(elements) or '(empty)'} for {source} is empty or has "
            "duplicates; pass each element of the design space once."
        )
    kinds = tuple(layout.site_kinds)
    all_zones = {z for k in kinds for z, _ in layout.zone_layout[k]}
    zone_cols: dict[str, dict[str, str]] = {}  # zone -> element -> column
    other: list[str] = []
    for col in (str(c) for c in df.columns):
        name = col.strip()
        prefix, _, el = name.rpartition("_")
        zone = _zone_name(prefix, all_zones) if prefix else None
        if zone is not None and el in _SYMBOLS:
            if el not in elements:
                raise InputError(
                    f"{source}, column {col!r}: element {el!r} is not in the element order "
                    f"{','.join(elements)}; add it to the design space or drop the column."
                )
            zone_cols.setdefault(zone, {})[el] = col
        elif prefix and el in elements and prefix.startswith("z"):
            raise InputError(
                f"{source}, column {col!r}: zone {prefix!r} is not a zone of the "
                f"{getattr(layout, 'name', 'recipe')} recipe ({', '.join(sorted(all_zones))}); "
                "rename the column or drop it."
            )
        else:
            other.append(col)
    if not zone_cols:
        raise InputError(
            f"{source} has no zone-count columns (like site_Pt or z1A_Ag for elements "
            f"{','.join(elements)}); give one column per zone and element."
        )
    found = set(zone_cols)
    matches = [k for k in kinds if found == {z for z, _ in layout.zone_layout[k]}]
    if not matches:
        best = max(kinds, key=lambda k: len(found & {z for z, _ in layout.zone_layout[k]}))
        want = [z for z, _ in layout.zone_layout[best]]
        missing = [z for z in want if z not in found]
        extra = sorted(found - set(want))
        what = (f"lacks the columns of zone(s) {', '.join(missing)}" if missing else
                f"mixes zones of several site kinds ({', '.join(extra)} are not {best} zones)")
        raise InputError(
            f"{source} {what} for a {best} site (zones {', '.join(want)}); give exactly the "
            "zones of one site kind per file."
        )
    kind = matches[0]
    # ---------------------------------------------------------------- energy column
    if energy_column is not None:
        if energy_column not in [str(c) for c in df.columns]:
            raise InputError(
                f"{source} has no energy column {energy_column!r}; pass one of "
                f"{', '.join(other) or '(none)'} as the energy column."
            )
        ecol = energy_column
    else:
        if not other:
            raise InputError(
                f"{source} has no energy column (only zone counts); add a column such as "
                "dE_OH_eV with each site's energy in eV."
            )
        cands = other if len(other) == 1 else [
            c for c in other if c.strip().startswith("dE") or "energy" in c.lower()
        ]
        if len(cands) != 1:
            raise InputError(
                f"{source}: cannot tell which of the columns {', '.join(other)} holds the site "
                "energy; name it dE_<adsorbate>_eV or pass energy_column."
            )
        ecol = cands[0]
    if len(df) == 0:
        raise InputError(f"{source} has no data rows; add one row per DFT site.")
    if zone_sums not in ("error", "drop", "keep"):
        raise InputError(f"zone_sums={zone_sums!r} is not one of error, drop, keep; use error.")
    # ---------------------------------------------------------------- values
    e_count = len(elements)
    keep = np.ones(len(df), bool)
    block = np.zeros((len(df), len(layout.zone_layout[kind]) * e_count), np.float64)
    for zi, (zone, size) in enumerate(layout.zone_layout[kind]):
        total = np.zeros(len(df))
        for el, col in zone_cols[zone].items():
            raw = df[col]
            vals = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
            bad = ~np.isfinite(vals) | (vals < 0) | (np.abs(vals - np.round(vals)) > 1e-9)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                more = int(bad.sum()) - 1
                raise InputError(
                    f"{source}, row {_row(i)}, column {col!r}: count {raw.iloc[i]!r} is not a "
                    f"whole number >= 0{f' (and {more} more rows)' if more else ''}; fix the "
                    "zone counts."
                )
            block[:, zi * e_count + elements.index(el)] = vals
            total += vals
        off = np.flatnonzero(np.abs(total - size) > 1e-9)
        if off.size and zone_sums == "drop":
            keep[off] = False
        elif off.size and zone_sums == "error":
            i = int(off[0])
            more = f" (and {off.size - 1} more rows)" if off.size > 1 else ""
            raise InputError(
                f"{source}, row {_row(i)}: zone {zone} counts sum to {total[i]:g}, not the zone "
                f"size {size}{more}; fix the counts, add the missing element columns "
                f"({','.join(elements)}), or read the file with zone_sums='keep' or 'drop'."
            )
    raw_e = df[ecol]
    energy = pd.to_numeric(raw_e, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(energy)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        more = int(bad.sum()) - 1
        raise InputError(
            f"{source}, row {_row(i)}, column {ecol!r}: energy {raw_e.iloc[i]!r} is not a finite "
            f"number{f' (and {more} more rows)' if more else ''}; give every site an energy in "
            "eV or drop the row."
        )
    if task is None:
        m = _ENERGY_RE.match(ecol.strip())
        task = f"{m.group('ads') if m else ecol.strip()}_{kind}"
    rows = np.flatnonzero(keep)
    counts = [block[i].astype(np.int64) for i in rows]
    feats = ZonesEncoder().encode_counts(layout, [kind] * len(rows), counts, e_count)
    return SiteSet(
        features=feats.reshape(len(rows), -1),
        kind=np.full(len(rows), kinds.index(kind), np.int8),
        energy=energy[rows],
        task=np.zeros(len(rows), np.int64),
        tasks=(str(task),),
        site_kinds=kinds,
        elements=elements,
        source=(source,) * len(rows),
        row=rows.astype(np.int64) + 2,
    )


def read_site_file(
    path: str | Path,
    layout: SiteLayout,
    elements: Sequence[str],
    *,
    energy_column: str | None = None,
    task: str | None = None,
    zone_sums: ZoneSums | None = None,
) -> SiteSet:
    """Read one site file (a path, or ``OH_ontop`` / ``O_fcc`` for the bundled ones) into a
    :class:`SiteSet`; see :func:`parse_site_frame` for the rules and errors. ``zone_sums``
    defaults to ``keep`` for the bundled files and ``error`` for any other file."""
    from activemil.data import SITE_FILES

    p = resolve_site_file(path)
    if zone_sums is None:
        zone_sums = "keep" if isinstance(path, str) and path in SITE_FILES else "error"
    if not p.is_file():
        raise InputError(f"Site file {p} does not exist; check the path (or use OH_ontop / "
                         "O_fcc for the bundled Ag-Ir-Pd-Pt-Ru files).")
    try:
        df = pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for malformed files
        raise InputError(f"Cannot read site file {p} as CSV ({type(exc).__name__}); save it as "
                         "comma-separated text with a header row.") from None
    return parse_site_frame(df, layout, elements, source=p.name, energy_column=energy_column,
                            task=task, zone_sums=zone_sums)


def read_site_files(
    paths: Sequence[str | Path], layout: SiteLayout, elements: Sequence[str],
) -> SiteSet:
    """Read and stack several site files (one task per adsorbate/site kind)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return SiteSet.concat([read_site_file(p, layout, elements) for p in paths])


def bundled_sites(elements: Sequence[str] = ("Ag", "Ir", "Pd", "Pt", "Ru")) -> SiteSet:
    """Both bundled Ag-Ir-Pd-Pt-Ru site files (*OH on-top, *O fcc; eV relative to Pt(111))
    over the ``fcc111`` recipe in the given element order (a superset of Ag,Ir,Pd,Pt,Ru)."""
    from activemil.structures.fcc111 import FCC111Recipe

    return read_site_files(["OH_ontop", "O_fcc"], FCC111Recipe, elements)
