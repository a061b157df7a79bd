"""Ingest measurement tables (CSV / XLSX) into a campaign: validate everything, then write all
rows as one transaction, or nothing.

Rules (also in docs/campaigns.md):

* A row names its candidate by ``id`` (a proposed candidate) or by composition (element columns
  or ``formula``). An id plus a composition that differs from the id's (EDX after synthesis)
  records the measured composition as its own point that *answers* the proposal.
* ``status``: ``measured`` (default when a value is present), ``failed``, ``replicate``, or
  ``pending`` (row skipped while its value is blank; with a value it counts as measured, with a
  warning). A row without a value must say ``failed`` (or ``pending``).
* A second value for a candidate already measured from the same ``source`` is a correction and
  needs ``--correct``; a row with status ``replicate`` or a new ``source`` is a replicate and is
  kept. A row identical to what the log already holds is skipped, so re-ingesting a sheet is safe.
* Values that are probably wrong (a zero beside a numeric note, ~1000x off the campaign's own
  scale, outside the unit's plausible range) are refused unless ``accept_outliers``.

The work is split in three steps: :func:`parse_table` (bytes -> header + string cells, streamed),
:func:`validate_rows` (per-row checks that need no campaign state, done outside the lock) and
:func:`plan_rows` (identification, duplicates, corrections and outliers against the state, the
only step repeated under the lock).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from activemil.campaigns.campaign import Campaign, CampaignState
from activemil.campaigns.events import Event
from activemil.campaigns.units import canonical_unit, conversion_factor, plausible_limit
from activemil.errors import InputError
from activemil.space import candidate_id, parse_candidate_id, parse_composition_table
from activemil.space.parse import FORMULA_COLUMNS

ID_COLUMNS = ("id", "candidate", "candidate_id")
STD_COLUMNS = ("std", "stdev", "sd", "uncertainty")
NOTE_COLUMNS = ("note", "notes", "comment", "comments")
STATUSES = ("measured", "failed", "replicate", "pending")
MAX_PROBLEMS_SHOWN = 200
PROGRESS_EVERY = 200_000
#: headers of activemil's own exports, which are not result sheets
EVENTS_EXPORT_COLUMNS = {"event_id", "kind", "candidate"}
OBSERVATIONS_EXPORT_COLUMNS = {"n", "sources", "on_grid"}


class IngestError(InputError):
    """A table failed validation; ``problems`` lists every problem (row and column named)."""

    def __init__(self, headline: str, problems: list[str]) -> None:
        self.headline = headline
        self.problems = problems
        super().__init__(f"{headline}: " + " | ".join(problems))


@dataclass
class IngestPlan:
    """What an ingest would write.

    Attributes:
        events: events to append, in file order.
        rows: one summary row per table row (row, candidate, action, value, unit, detail).
        warnings: one-line warnings (never block the ingest).
        skipped: counts of skipped rows by reason.
    """

    file: str
    events: list[Event] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


@dataclass
class _Row:
    i: int
    line: int
    status: str
    value: float | None
    raw_value: str
    std: float | None
    raw_unit: str
    factor: float
    source: str
    note: str
    candidate: str = ""
    fractions: np.ndarray | None = None
    answers: str | None = None
    linked_to: str | None = None
    new_point: bool = False


# ---------------------------------------------------------------------------- parsing
@dataclass
class Table:
    """A parsed measurement file: stripped header and string cells (blank = ``""``).

    Attributes:
        name: file name (for messages). columns: header cells. rows: data rows, each as wide as
        the header. lines: spreadsheet row number of each data row. problems: per-row problems
        found while parsing (extra cells). decimal_comma: numbers may use ``,`` as decimal mark
        (``;``-separated files).
    """

    name: str
    columns: list[str]
    rows: list[list[str]]
    lines: list[int]
    problems: list[str] = field(default_factory=list)
    decimal_comma: bool = False

    def column(self, c: str | None) -> list[str]:
        if c is None:
            return [""] * len(self.rows)
        j = self.columns.index(c)
        return [r[j] for r in self.rows]


def _records(text: str, sep: str, name: str) -> Iterator[list[str]]:
    try:
        yield from csv.reader(io.StringIO(text), delimiter=sep)
    except csv.Error as exc:
        raise InputError(
            f"{name} is not a readable CSV file ({exc}); re-export it as CSV UTF-8."
        ) from None


def parse_table(
    path: str | Path,
    *,
    max_rows: int | None = None,
    say: Callable[[str], None] | None = None,
) -> Table:
    """Read a CSV/TSV/XLSX file into a :class:`Table` (streamed; no validation of values).

    CR, LF and CRLF line endings are accepted; the separator is the most frequent of tab, ``;``
    and ``,`` in the header (``;`` files may use decimal commas). Empty trailing columns are
    dropped. Raises :class:`InputError` for unreadable files and files over ``max_rows`` rows.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file; check the path.")
    suffix = path.suffix.lower()
    decimal_comma = False
    if suffix in (".xlsx", ".xlsm"):
        try:
            df = pd.read_excel(path, sheet_name=0, dtype=object, header=None)
        except Exception as exc:  # openpyxl/zipfile raise many types for broken files
            raise InputError(
                f"{name} cannot be read as an Excel workbook ({type(exc).__name__}); re-save it "
                "as .xlsx or export the sheet as CSV (UTF-8)."
            ) from None
        records: Iterator[list[str]] = iter(
            [_cell_text(x) for x in row] for row in df.itertuples(index=False))
    elif suffix in (".csv", ".tsv", ".txt"):
        raw = path.read_bytes()
        if not raw.strip():
            raise InputError(f"{name} is empty; export the measurements with a header row.")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(
                f"{name} is not UTF-8 text; save it as 'CSV UTF-8' (or .xlsx) and retry."
            ) from None
        if "\x00" in text:
            raise InputError(f"{name} contains binary data; export the sheet as CSV or .xlsx.")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")  # CR-only (old Mac Excel)
        header = next((ln for ln in text.split("\n", 50) if ln.strip()), "")
        sep = max(("\t", ";", ","), key=header.count) if suffix != ".tsv" else "\t"
        decimal_comma = sep == ";"
        records = _records(text, sep, name)
    elif suffix == ".xls":
        raise InputError(f"{name} is an old .xls workbook; save it as .xlsx or CSV and retry.")
    else:
        raise InputError(
            f"{name} has an unsupported extension {path.suffix!r}; give a .csv or .xlsx file."
        )
    line = 0
    cols: list[str] | None = None
    for rec in records:
        line += 1
        if any(c.strip() for c in rec):
            cols = [c.strip() for c in rec]
            break
    if cols is None:
        raise InputError(f"{name} is empty; export the measurements with a header row.")
    while cols and not cols[-1]:
        cols.pop()  # empty trailing header cells (Excel exports stray separators)
    width = len(cols)
    rows: list[list[str]] = []
    lines: list[int] = []
    problems: list[str] = []
    limit = max_rows if max_rows is not None else math.inf
    for rec in records:
        line += 1
        if len(rec) > width and any(c.strip() for c in rec[width:]):
            extra = [c.strip() for c in rec[width:] if c.strip()]
            hint = ""
            if sep_is_comma(suffix, decimal_comma) and len(rec) == width + 1:
                hint = " (a decimal comma in a comma-separated file? write 0.375, not 0,375)"
            problems.append(
                f"{name} row {line}: the row has {len(rec)} cells but the header has {width}"
                f"{hint}; remove the extra cell(s) {', '.join(map(repr, extra[:3]))} or add a "
                "header for them."
            )
        cells = [c.strip() for c in rec[:width]]
        if len(cells) < width:
            cells += [""] * (width - len(cells))
        rows.append(cells)
        lines.append(line)
        if len(rows) > limit:
            raise InputError(
                f"{name} has more than {int(limit):,} data rows, the size limit of one ingest "
                "(ingest.max_rows in campaign.json); split the file and ingest the parts."
            )
        if say is not None and len(rows) % PROGRESS_EVERY == 0:
            say(f"Read {len(rows):,} rows of {name} ...")
    # empty trailing columns (no header, no content) are dropped
    while cols and not cols[-1] and not any(r[len(cols) - 1] for r in rows):
        cols.pop()
        for r in rows:
            r.pop()
    return Table(name, cols, rows, lines, problems, decimal_comma)


def sep_is_comma(suffix: str, decimal_comma: bool) -> bool:
    return suffix != ".tsv" and not decimal_comma


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/XLSX file into a DataFrame of stripped strings (blank cells = ``""``)."""
    t = parse_table(path)
    if t.problems:
        raise InputError(t.problems[0])
    return pd.DataFrame(t.rows, columns=t.columns, dtype=object)


def _cell_text(x: object) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if math.isnan(x) else repr(x)
    return str(x).strip()


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?inf(inity)?", re.IGNORECASE)
_COMMA_NUMBER = re.compile(r"[+-]?\d+,\d+([eE][+-]?\d+)?")


def _number(text: str, decimal_comma: bool = False) -> float | None:
    """Parse a number cell; ``None`` if not a number. NaN spellings give ``nan``."""
    s = text.strip().replace("\u2212", "-")
    if s.lower() in ("nan", "n/a", "na", "#n/a"):
        return float("nan")
    if decimal_comma and _COMMA_NUMBER.fullmatch(s):
        s = s.replace(",", ".")
    if not _NUMBER.fullmatch(s):
        return None
    return float(s)


# ---------------------------------------------------------------------------- validation
@dataclass
class _Columns:
    id: str | None
    value: str | None
    std: str | None
    unit: str | None
    status: str | None
    source: str | None
    note: str | None
    formula: str | None
    elements: list[str]
    foreign: list[str]


@dataclass
class Validated:
    """Rows of a :class:`Table` that passed the state-independent checks."""

    table: Table
    cols: _Columns
    rows: list[_Row]
    problems: list[str]
    warnings: list[str]
    skipped: Counter


def _columns(campaign: Campaign, t: Table, problems: list[str], warnings: list[str]) -> _Columns:
    name, cols, elements = t.name, t.columns, list(campaign.elements)
    lower: dict[str, str] = {}
    for c in cols:
        lower.setdefault(c.lower(), c)
    if EVENTS_EXPORT_COLUMNS <= set(lower):
        raise InputError(
            f"{name} is an activemil event log export (`activemil export --table events`), not "
            "a result sheet, so it cannot be ingested; ingest the filled-in lab sheet "
            "(batches/<batch>.csv) or a table with id and value columns."
        )
    if OBSERVATIONS_EXPORT_COLUMNS <= set(lower):
        raise InputError(
            f"{name} is an activemil observations export (`activemil export --table "
            "observations`: averages of points already in the log), not a result sheet, so "
            "re-ingesting it would record every point twice; ingest the lab sheets instead."
        )
    dupes = sorted({c for c in cols if cols.count(c) > 1 and c} | {
        m.group(1) for c in cols if (m := re.fullmatch(r"(.+)\.(\d+)", c)) and m.group(1) in cols
    })  # pandas renames a repeated Excel header "value" to "value.1"
    if dupes:
        problems.append(f"{name}: column(s) {', '.join(dupes)} appear more than once; keep one.")

    def col(*names: str) -> str | None:
        return next((lower[n] for n in names if n in lower), None)

    c = _Columns(
        id=col(*ID_COLUMNS), value=col("value", campaign.target.lower()), std=col(*STD_COLUMNS),
        unit=col("unit", "units"), status=col("status"), source=col("source"),
        note=col(*NOTE_COLUMNS), formula=col(*FORMULA_COLUMNS),
        elements=[x for x in cols if x in elements],
        foreign=[x for x in cols if x in chemical_symbols[1:] and x not in elements],
    )
    if c.value is None:
        problems.append(
            f"{name}: required column 'value' is missing; add a 'value' column with the "
            f"measured {campaign.target} in {campaign.unit or 'the campaign unit'}."
        )
    if c.id is None and not c.elements and c.formula is None:
        problems.append(
            f"{name}: no column identifies the candidates; add an 'id' column (e.g. "
            f"{campaign.composition_id(np.full(len(elements), 1 / len(elements)))}), one "
            f"column per element ({','.join(elements)}) or a 'formula' column."
        )
    used = {c.id, c.value, c.std, c.unit, c.status, c.source, c.note, c.formula, *c.elements}
    ignored = [x for x in cols if x not in used]
    if any(not x for x in ignored):
        problems.append(f"{name}: a column has no header; name it or delete it.")
    ignored = [x for x in ignored if x and x not in c.foreign]
    if ignored:
        warnings.append(f"{name}: ignoring unknown column(s) {', '.join(ignored)}.")
    return c


def _fractions(t: Table, c: _Columns, elements: list[str], tol: float,
               problems: dict[int, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Compositions of every row (NaN where absent or bad) and which rows carry one."""
    n = len(t.rows)
    out = np.full((n, len(elements)), np.nan)
    if c.elements:
        idx = [t.columns.index(e) for e in c.elements]
        fidx = [t.columns.index(e) for e in c.foreign]
        has = np.zeros(n, dtype=bool)
        for i, r in enumerate(t.rows):
            cells = [r[j] for j in idx]
            if not any(cells):
                continue
            has[i] = True
            row = np.zeros(len(elements))
            bad = False
            for el, raw in zip(c.elements, cells):
                v = _number(raw, t.decimal_comma) if raw else 0.0
                if v is None or not math.isfinite(v) or v < 0:
                    problems.setdefault(i, []).append(
                        f"column {el}: {raw!r} is not an atomic fraction >= 0; enter e.g. 0.25 "
                        "or 0.")
                    bad = True
                    continue
                row[elements.index(el)] = v
            if bad:
                continue
            total = float(row.sum())
            pct = total > 1.5
            # a column named like an element outside the space counts only if it completes the
            # composition (Pt=0.2 beside Ni+Fe=0.8); No/I/U sample numbers, currents, voltages not
            for el, j in zip(c.foreign, fidx):
                v = _number(r[j], t.decimal_comma) if r[j] else None
                if v and math.isfinite(v) and v > 0 and abs(total + v - (100 if pct else 1)) <= (
                        100 * tol if pct else tol):
                    problems.setdefault(i, []).append(
                        f"column {el}: {r[j]} of {el}, an element outside this design space "
                        f"({','.join(elements)}); remove that element's fraction or use a "
                        "campaign that includes it.")
                    bad = True
            if bad:
                continue
            if pct and abs(total - 100.0) <= 100 * tol:
                row, total = row / 100.0, total / 100.0
            if abs(total - 1.0) > tol:
                problems.setdefault(i, []).append(
                    f"element fractions sum to {total:.6g}, not 1 (tolerance {tol:g}); fix the "
                    "fractions so they add up to 1.")
                continue
            out[i] = row / total
        return out, has
    if c.formula is not None:
        cells = t.column(c.formula)
        has = np.array([bool(x) for x in cells], dtype=bool)
        rows = np.flatnonzero(has)
        if len(rows):
            sub = pd.DataFrame({c.formula: [cells[i] for i in rows]}, dtype=object)
            fr, probs = parse_composition_table(sub, elements, tol, "@")
            out[rows] = fr
            for p in probs:
                m = re.match(r"@ row (\d+)(?:, )?(.*)$", p)
                if m:
                    problems.setdefault(int(rows[int(m.group(1)) - 2]), []).append(m.group(2))
        return out, has
    return out, np.zeros(n, dtype=bool)


def validate_rows(
    campaign: Campaign, t: Table, say: Callable[[str], None] | None = None
) -> Validated:
    """Check every row of ``t`` that can be checked without the campaign's state.

    Collects every problem of every row (row and column named) instead of stopping at the first.
    """
    name, elements, unit = t.name, list(campaign.elements), campaign.unit
    max_abs = float(campaign.cfg.ingest.max_abs_value)
    tol = float(campaign.cfg.ingest.composition_tolerance)
    problems: list[str] = []
    warnings: list[str] = []
    skipped: Counter = Counter()
    c = _columns(campaign, t, problems, warnings)
    if problems:
        raise IngestError(f"{name} cannot be ingested; nothing was recorded", problems)
    row_problems: dict[int, list[str]] = {}
    fractions, has_comp = _fractions(t, c, elements, tol, row_problems)
    j = {k: (t.columns.index(v) if v is not None else None) for k, v in vars(c).items()
         if not isinstance(v, list)}

    def get(r: list[str], key: str) -> str:
        k = j[key]
        return "" if k is None else r[k]

    factors: dict[str, float | str] = {}
    rows: list[_Row] = []
    blank = 0
    for i, r in enumerate(t.rows):
        if not any(r):
            blank += 1
            continue
        if say is not None and i and i % PROGRESS_EVERY == 0:
            say(f"Checked {i:,} of {len(t.rows):,} rows ...")
        mine = row_problems.setdefault(i, [])
        status = get(r, "status").lower()
        if status and status not in STATUSES:
            mine.append(
                f"column {c.status}: status {get(r, 'status')!r} is not one of "
                f"{', '.join(STATUSES)}; leave it blank for a measured value.")
            status = "?"
        raw_value = get(r, "value")
        value = _number(raw_value, t.decimal_comma) if raw_value else float("nan")
        if value is None:
            mine.append(
                f"column {c.value}: {raw_value!r} is not a number; write e.g. 412.5 (a dot as "
                "decimal separator, no unit in the cell).")
            value = float("nan")
            status = "?"
        if status == "pending":
            if math.isnan(value) and not mine:
                skipped["pending"] += 1
                del row_problems[i]
                continue
            if not math.isnan(value):
                status = "measured"  # the lab filled in the value and left the sheet's status
                warnings.append(f"{name} row {t.lines[i]}: status is 'pending' but a value is "
                                "given; it is recorded as measured.")
        if math.isnan(value) and status not in ("failed", "?"):
            mine.append(
                f"column {c.value}: the value is empty or NaN; enter the measured value, or set "
                "status to failed.")
        raw_unit = get(r, "unit")
        factor = 1.0
        if raw_unit:
            f = factors.get(raw_unit)
            if f is None:
                try:
                    f = conversion_factor(raw_unit, unit)
                except InputError as exc:
                    f = str(exc)
                factors[raw_unit] = f
            if isinstance(f, str):
                mine.append(f"column {c.unit}: {f}")
            else:
                factor = f
        if status == "failed" and not math.isnan(value):
            warnings.append(f"{name} row {t.lines[i]}: status failed, so the value "
                            f"{raw_value} is ignored.")
        out_value: float | None = None
        if status != "failed" and not math.isnan(value):
            if math.isinf(value) or abs(value * factor) > max_abs:
                mine.append(
                    f"column {c.value}: {raw_value} is not a plausible value (limit |value| <= "
                    f"{max_abs:g} {unit}); check the cell and the unit.")
            else:
                out_value = value * factor
        raw_std = get(r, "std")
        std = None
        if raw_std and status != "failed":
            s = _number(raw_std, t.decimal_comma)
            if s is None or math.isnan(s) or math.isinf(s) or s < 0 or abs(s * factor) > max_abs:
                mine.append(
                    f"column {c.std}: {raw_std!r} is not a standard deviation (a finite number "
                    ">= 0); fix it or leave the cell blank.")
            else:
                std = s * factor
        if mine:
            continue
        del row_problems[i]
        rows.append(_Row(i, t.lines[i], status or "measured", out_value, raw_value, std,
                         raw_unit, factor, get(r, "source"), get(r, "note")))
        row = rows[-1]
        if has_comp[i]:
            row.fractions = fractions[i]
    for i, probs in sorted(row_problems.items()):
        for msg in probs:  # every problem of the row, each naming its column
            sep = ", " if msg.startswith("column ") else ": "
            problems.append(f"{name} row {t.lines[i]}{sep}{msg}")
    problems = t.problems + problems
    if blank:
        skipped["blank"] += blank
    if not rows and not problems and not skipped.get("pending"):
        raise InputError(f"{name} has a header but no data rows; add the measurements.")
    return Validated(t, c, rows, problems, warnings, skipped)


# ---------------------------------------------------------------------------- planning
def _outliers(campaign: Campaign, state: CampaignState, rows: list[_Row],
              c: _Columns, name: str) -> list[str]:
    """Problems for values that are probably wrong (override with ``accept_outliers``)."""
    out: list[str] = []
    unit = campaign.unit
    factor = float(campaign.cfg.ingest.outlier_factor)
    limit = plausible_limit(unit)
    measured = [r for r in rows if r.value is not None]
    existing = [m.value for m in state.measurements.values() if m.value is not None]
    ref = np.abs(np.array(existing + [r.value for r in measured], dtype=float))
    ref = ref[ref > 0]
    # a unit slip (V vs mV) needs a unit with prefixes; values in arbitrary units (a.u.,
    # activities spanning decades) have no scale to slip from
    scale = (float(np.median(ref)) if len(ref) >= 2 and canonical_unit(unit) not in (None, "1")
             else None)
    signs = {np.sign(v) for v in existing + [r.value for r in measured] if v}
    how = "; check the value and its unit, or pass --accept-outliers if it is right"
    for r in measured:
        where = f"{name} row {r.line}, column {c.value}"
        v = float(r.value)
        if v == 0 and _number(r.note) not in (None, 0.0) and r.raw_value.strip() in ("0", "-0"):
            out.append(
                f"{where}: value 0 beside the number {r.note!r} in column {c.note} looks like a "
                f"decimal comma split the cell (0,{r.note}); write 0.{r.note} in one cell{how}.")
            continue
        if limit is not None and abs(v) > limit:
            out.append(
                f"{where}: {r.raw_value}{' ' + r.raw_unit if r.raw_unit else ''} = {v:g} {unit} "
                f"is outside the plausible range of {unit} values (|value| <= {limit:g} {unit}); "
                f"was it typed in another unit (e.g. m{unit})? set the unit column{how}.")
            continue
        if scale is None or v == 0:
            continue
        ratio = abs(v) / scale
        if ratio >= factor or (ratio <= 1 / factor and len(signs) == 1):
            # scale / |v|, not 1 / ratio: a subnormal |v| makes ratio 0.0 (underflow)
            off = ratio if ratio >= 1 else scale / abs(v)
            size = f"about {off:,.0f}x" if math.isfinite(off) else "many orders of magnitude"
            out.append(
                f"{where}: {v:g} {unit} is {size} off the "
                f"campaign's typical magnitude {scale:.4g} {unit} (a unit slip such as V vs "
                f"mV?){how}.")
    return out


def plan_rows(
    campaign: Campaign,
    v: Validated,
    state: CampaignState,
    *,
    correct: bool = False,
    accept_outliers: bool = False,
) -> IngestPlan:
    """Identify the candidates of validated rows against ``state`` and build the events.

    Raises :class:`IngestError` listing every problem (nothing is written by this function).
    """
    t, c, name = v.table, v.cols, v.table.name
    elements, unit = list(campaign.elements), campaign.unit
    tol = float(campaign.cfg.ingest.composition_tolerance)
    plan = IngestPlan(file=name, warnings=list(v.warnings), skipped=Counter(v.skipped))
    problems = list(v.problems)
    idj = t.columns.index(c.id) if c.id is not None else None

    proposals = {cid: x for cid, x in state.candidates.items() if x.proposal is not None}
    prop_ids = list(proposals)
    prop_fr = np.array([proposals[x].fractions for x in prop_ids]) if prop_ids else None

    def nearest_proposal(fr: np.ndarray) -> str | None:
        if prop_fr is None:
            return None
        return prop_ids[int(np.argmin(np.abs(prop_fr - fr[None, :]).sum(axis=1)))]

    good: list[_Row] = []
    for row in v.rows:
        where = f"{name} row {row.line}"
        cid_raw = t.rows[row.i][idj] if idj is not None else ""
        fr = row.fractions
        if cid_raw:
            known = state.candidates.get(cid_raw)
            if known is None:
                try:
                    parse_candidate_id(cid_raw, elements)
                except InputError as exc:
                    problems.append(f"{where}, column {c.id}: {exc}")
                    continue
                problems.append(
                    f"{where}, column {c.id}: {cid_raw} was never proposed in this campaign; "
                    "check for a typo, or leave the id blank and give the composition in the "
                    "element columns to add it as a new point.")
                continue
            if fr is not None and np.abs(fr - known.fractions).max() > tol:
                row.candidate = candidate_id(elements, fr)
                row.fractions, row.answers, row.linked_to = fr, cid_raw, cid_raw
                row.new_point = row.candidate not in state.candidates
                plan.warnings.append(
                    f"{where}: measured composition {row.candidate} differs from proposal "
                    f"{cid_raw}; it is recorded as its own point linked to {cid_raw}.")
            else:
                row.candidate, row.fractions = cid_raw, known.fractions
        elif fr is not None:
            cid = candidate_id(elements, fr)
            row.fractions, row.candidate = fr, cid
            if cid not in state.candidates:
                row.new_point = True
                row.linked_to = nearest_proposal(fr)
                grid = "on the design grid" if campaign.space.contains(fr) else (
                    "off the design grid")
                link = f"linked to the nearest proposal {row.linked_to}" if row.linked_to else (
                    "no proposal to link")
                plan.warnings.append(
                    f"{where}: composition {cid} ({grid}) was never proposed; it is recorded "
                    f"as its own point, {link}. To close a proposal instead, put its id in the "
                    "id column.")
        else:
            problems.append(
                f"{where}: the row names no candidate; fill the {c.id or 'id'} column or the "
                "composition columns.")
            continue
        target = state.candidates.get(row.answers or row.candidate)
        if target is not None and target.status == "abandoned" and target.abandoned is not None:
            plan.warnings.append(
                f"{where}: {target.id} was abandoned ({target.abandoned.get('reason', '')}); "
                "the result is recorded anyway, so check that the sample is the right one.")
        good.append(row)
    if not accept_outliers:
        problems.extend(_outliers(campaign, state, good, c, name))

    # --- duplicates within the file, existing measurements, corrections
    first_row: dict[tuple[str, str], int] = {}
    for row in good:
        if row.status == "replicate":
            continue
        key = (row.candidate, row.source)
        if key in first_row:
            problems.append(
                f"{name} row {row.line}: duplicates row {first_row[key]} (candidate "
                f"{row.candidate}, source {row.source or '(blank)'}); delete one, set status "
                "to replicate, or give them different sources.")
        else:
            first_row[key] = row.line

    # multiset of what is already recorded, for idempotent re-ingest
    recorded: Counter = Counter()
    latest_by_source: dict[tuple[str, str], str] = {}
    for x in state.candidates.values():
        for m in x.effective:
            recorded[(x.id, m.source, "measured", _key(m.value), _key(m.std))] += 1
            latest_by_source[(x.id, m.source)] = m.event.event_id
        for f in x.failures:
            recorded[(x.id, str(f.get("source") or ""), "failed", None, None)] += 1
    seen: Counter = Counter()
    current_round = state.current_round
    events: list[Event] = []
    measured_sources: dict[str, set[str]] = defaultdict(set)
    for x in state.candidates.values():
        measured_sources[x.id] = {m.source for m in x.effective}
    for row in good:
        where = f"{name} row {row.line}"
        kind_status = "failed" if row.status == "failed" else "measured"
        key = (row.candidate, row.source, kind_status, _key(row.value), _key(row.std))
        seen[key] += 1
        if seen[key] <= recorded[key]:
            plan.skipped["already recorded"] += 1
            plan.rows.append(_summary(row, "skip (already recorded)", unit))
            continue
        x = state.candidates.get(row.candidate)
        anchor = state.candidates.get(row.answers) if row.answers else None
        batch = (x.batch if x else None) or (anchor.batch if anchor else None)
        rnd = (x.round if x else None) or (anchor.round if anchor else None)
        if rnd is None:
            rnd = current_round
        prior = measured_sources.get(row.candidate) or set()  # read before the add below
        common: dict = {"source": row.source, "note": row.note, "file": name, "row": row.line}
        if row.new_point or row.answers:
            common["composition"] = {e: float(f) for e, f in zip(elements, row.fractions)
                                     if f > 0}
            common["on_grid"] = bool(campaign.space.contains(row.fractions))
        if row.linked_to:
            common["linked_to"] = row.linked_to
        if row.answers:
            common["answers"] = row.answers
        if row.raw_unit and row.factor != 1.0:
            common["raw_value"], common["raw_unit"] = row.raw_value, row.raw_unit
        is_replicate = row.status == "replicate" or bool(prior and row.source not in prior)
        if prior and not is_replicate:
            if not correct:
                old = latest_by_source[(row.candidate, row.source)]
                m = state.measurements.get(old)
                if m is None:
                    continue  # an earlier row of this file: reported as a duplicate above
                problems.append(
                    f"{where}, column {c.value}: {row.candidate} already has a measured value "
                    f"{m.value:g} {unit} from source {row.source or '(blank)'} (event {old}); "
                    "re-run with --correct to replace it, or set status to replicate to add a "
                    "replicate.")
                continue
            corrects = latest_by_source[(row.candidate, row.source)]
            events.append(Event.new(
                "corrected", row.candidate, batch, rnd, corrects=corrects, status=kind_status,
                value=row.value, std=row.std, unit=unit, **common,
            ))
            plan.rows.append(_summary(row, "correct", unit))
            continue
        if kind_status == "failed":
            events.append(Event.new("failed", row.candidate, batch, rnd, **common))
            plan.rows.append(_summary(row, "failed", unit))
            continue
        events.append(Event.new(
            "measured", row.candidate, batch, rnd, value=row.value, std=row.std, unit=unit,
            replicate=bool(is_replicate), **common,
        ))
        if row.status != "replicate":
            measured_sources[row.candidate].add(row.source)
        latest_by_source[(row.candidate, row.source)] = events[-1].event_id
        plan.rows.append(_summary(row, "replicate" if is_replicate else "measured", unit))

    if problems:
        n = len(problems)
        problems.sort(key=_row_of)
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if n > len(shown):
            shown.append(f"... and {n - len(shown)} more problem(s)")
        raise IngestError(
            f"{name} has {n} problem{'s' if n != 1 else ''}; nothing was recorded, fix "
            f"{'them' if n != 1 else 'it'} and re-run",
            shown,
        )
    plan.events = events
    return plan


def plan_ingest(
    campaign: Campaign,
    path: str | Path,
    *,
    correct: bool = False,
    accept_outliers: bool = False,
    state: CampaignState | None = None,
    say: Callable[[str], None] | None = None,
) -> IngestPlan:
    """Parse, validate and plan ``path`` against the campaign; returns the events it would write.

    Raises :class:`IngestError` listing every problem (nothing is written by this function).
    """
    t = parse_table(path, max_rows=campaign.cfg.ingest.max_rows, say=say)
    v = validate_rows(campaign, t, say=say)
    return plan_rows(campaign, v, state or campaign.state(), correct=correct,
                     accept_outliers=accept_outliers)

def _row_of(problem: str) -> int:
    m = re.search(r" row (\d+)\b", problem)
    return int(m.group(1)) if m else 0


def _key(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.12g}")


def _summary(row: _Row, action: str, unit: str) -> dict:
    return {
        "row": row.line, "candidate": row.candidate, "action": action,
        "value": row.value, "std": row.std, "unit": unit, "source": row.source,
        "linked_to": row.linked_to or "",
    }


def ingest(
    campaign: Campaign,
    path: str | Path,
    *,
    correct: bool = False,
    dry_run: bool = False,
    accept_outliers: bool = False,
    say: Callable[[str], None] | None = None,
) -> IngestPlan:
    """Validate ``path`` and, unless ``dry_run``, append all its events in one transaction.

    The file is parsed and checked outside the lock; only planning against the current state
    and the append happen under it, so concurrent ingests serialise and each sees the other's
    rows. Raises :class:`IngestError` (nothing written) on any problem; ``dry_run`` never writes.
    """
    t = parse_table(path, max_rows=campaign.cfg.ingest.max_rows, say=say)
    v = validate_rows(campaign, t, say=say)
    if dry_run:
        return plan_rows(campaign, v, campaign.state(), correct=correct,
                         accept_outliers=accept_outliers)
    with campaign.locked():
        plan = plan_rows(campaign, v, campaign.state(), correct=correct,
                         accept_outliers=accept_outliers)
        campaign.append(plan.events)
    return plan
