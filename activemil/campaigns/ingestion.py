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
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from activemil.campaigns.campaign import Campaign, CampaignState
from activemil.campaigns.events import Event
from activemil.campaigns.units import conversion_factor
from activemil.errors import InputError
from activemil.space import candidate_id, parse_candidate_id, parse_composition_table, sheet_row
from activemil.space.parse import FORMULA_COLUMNS

ID_COLUMNS = ("id", "candidate", "candidate_id")
STD_COLUMNS = ("std", "stdev", "sd", "uncertainty")
NOTE_COLUMNS = ("note", "notes", "comment", "comments")
STATUSES = ("measured", "failed", "replicate", "pending")
MAX_PROBLEMS_SHOWN = 200


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


# ---------------------------------------------------------------------------- reading
def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/XLSX file into a DataFrame of stripped strings (blank cells = ``""``)."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file; check the path.")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        try:
            df = pd.read_excel(path, sheet_name=0, dtype=object, header=0)
        except Exception as exc:  # openpyxl/zipfile raise many types for broken files
            raise InputError(
                f"{name} cannot be read as an Excel workbook ({type(exc).__name__}); re-save it "
                "as .xlsx or export the sheet as CSV (UTF-8)."
            ) from None
        df = df.map(_cell_text)
        df.columns = [_cell_text(c) if not str(c).startswith("Unnamed: ") else ""
                      for c in df.columns]
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
        header = next((ln for ln in text.splitlines() if ln.strip()), "")
        sep = max(("\t", ";", ","), key=header.count) if suffix != ".tsv" else "\t"
        try:
            rows = list(csv.reader(io.StringIO(text), delimiter=sep))
        except csv.Error as exc:
            raise InputError(f"{name} is not a readable CSV file ({exc}); re-export it.") from None
        while rows and not any(c.strip() for c in rows[0]):
            rows.pop(0)  # leading blank lines
        if not rows:
            raise InputError(f"{name} is empty; export the measurements with a header row.")
        cols = [c.strip() for c in rows[0]]
        width = len(cols)
        body = []
        for k, r in enumerate(rows[1:]):
            if len(r) > width and any(c.strip() for c in r[width:]):
                raise InputError(
                    f"{name} row {k + 2} has {len(r)} cells but the header has {width}; remove "
                    "the extra cells or add a header for them."
                )
            body.append([c.strip() for c in (r + [""] * width)[:width]])
        df = pd.DataFrame(body, columns=cols, dtype=object)
    elif suffix == ".xls":
        raise InputError(f"{name} is an old .xls workbook; save it as .xlsx or CSV and retry.")
    else:
        raise InputError(
            f"{name} has an unsupported extension {path.suffix!r}; give a .csv or .xlsx file."
        )
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _cell_text(x: object) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if math.isnan(x) else repr(x)
    return str(x).strip()


def _number(text: str) -> float | None:
    """Parse a number cell; ``None`` if not a number. NaN spellings give ``nan``."""
    s = text.strip().replace("\u2212", "-")
    if s.lower() in ("nan", "n/a", "na", "#n/a"):
        return float("nan")
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?inf(inity)?", s,
                        flags=re.IGNORECASE):
        return None
    return float(s)


# ---------------------------------------------------------------------------- planning
def plan_ingest(
    campaign: Campaign,
    path: str | Path,
    *,
    correct: bool = False,
    state: CampaignState | None = None,
) -> IngestPlan:
    """Validate ``path`` against the campaign and return the events it would write.

    Raises :class:`IngestError` listing every problem (nothing is written by this function).
    """
    path = Path(path)
    name = path.name
    df = read_table(path)
    state = state or campaign.state()
    elements = list(campaign.elements)
    unit = campaign.unit
    max_abs = float(campaign.setting("ingest", "max_abs_value", 1e9))
    tol = float(campaign.setting("ingest", "composition_tolerance", 1e-3))
    plan = IngestPlan(file=name)

    # --- columns
    problems: list[str] = []
    cols = list(df.columns)
    lower = {c.lower(): c for c in cols}
    dupes = sorted({c for c in cols if cols.count(c) > 1 and c} | {
        m.group(1) for c in cols if (m := re.fullmatch(r"(.+)\.(\d+)", c)) and m.group(1) in cols
    })  # pandas renames a repeated Excel header "value" to "value.1"
    if dupes:
        problems.append(f"{name}: column(s) {', '.join(dupes)} appear more than once; keep one.")

    def col(*names: str) -> str | None:
        return next((lower[n] for n in names if n in lower), None)

    id_col = col(*ID_COLUMNS)
    value_col = col("value", campaign.target.lower())
    std_col, unit_col = col(*STD_COLUMNS), col("unit", "units")
    status_col, source_col, note_col = col("status"), col("source"), col(*NOTE_COLUMNS)
    formula_col = col(*FORMULA_COLUMNS)
    el_cols = [c for c in cols if c in elements]
    foreign = [c for c in cols if c in chemical_symbols[1:] and c not in elements]
    if foreign:
        problems.append(
            f"{name}: column(s) {', '.join(foreign)} name element(s) outside this design space "
            f"({','.join(elements)}); remove them or fix the header."
        )
    if value_col is None:
        problems.append(
            f"{name}: required column 'value' is missing; add a 'value' column with the "
            f"measured {campaign.target} in {unit or 'the campaign unit'}."
        )
    if id_col is None and not el_cols and formula_col is None:
        problems.append(
            f"{name}: no column identifies the candidates; add an 'id' column (e.g. "
            f"{campaign.composition_id(np.full(len(elements), 1 / len(elements)))}), one "
            f"column per element ({','.join(elements)}) or a 'formula' column."
        )
    used = {id_col, value_col, std_col, unit_col, status_col, source_col, note_col,
            formula_col, *el_cols, *foreign}
    ignored = [c for c in cols if c not in used]
    if any(not c for c in ignored):
        problems.append(f"{name}: a column has no header; name it or delete it.")
    ignored = [c for c in ignored if c]
    if ignored:
        plan.warnings.append(f"{name}: ignoring unknown column(s) {', '.join(ignored)}.")
    if problems:
        raise IngestError(f"{name} cannot be ingested; nothing was recorded", problems)
    if len(df) == 0:
        raise InputError(f"{name} has a header but no data rows; add the measurements.")

    def cell(i: int, c: str | None) -> str:
        return "" if c is None else str(df.iat[i, cols.index(c)]).strip()

    # --- compositions (rows that carry any composition information)
    comp_source = el_cols if el_cols else ([formula_col] if formula_col else [])
    has_comp = [any(cell(i, c) for c in comp_source) for i in range(len(df))]
    fractions = np.full((len(df), len(elements)), np.nan)
    if any(has_comp):
        table = df[comp_source].copy()
        fractions, comp_problems = parse_composition_table(table, elements, tol, name)
        for p in comp_problems:
            m = re.match(rf"{re.escape(name)} row (\d+)\b", p)
            if m is None or has_comp[int(m.group(1)) - 2]:
                problems.append(p)

    # --- per-row checks
    rows: list[_Row] = []
    blank = 0
    for i in range(len(df)):
        r = sheet_row(i)
        if not any(cell(i, c) for c in cols):
            blank += 1
            continue
        where = f"{name} row {r}"
        status_raw = cell(i, status_col).lower()
        status = status_raw or ""
        if status and status not in STATUSES:
            problems.append(
                f"{where}, column {status_col}: status {cell(i, status_col)!r} is not one of "
                f"{', '.join(STATUSES)}; leave it blank for a measured value."
            )
            continue
        raw_value = cell(i, value_col)
        value = _number(raw_value) if raw_value else float("nan")
        if value is None:
            problems.append(
                f"{where}, column {value_col}: {raw_value!r} is not a number; write e.g. 412.5 "
                "(a dot as decimal separator, no unit in the cell)."
            )
            continue
        if status == "pending":
            if math.isnan(value):
                plan.skipped["pending"] += 1
                continue
            status = "measured"  # the lab filled in the value and left the sheet's status
            plan.warnings.append(f"{where}: status is 'pending' but a value is given; it is "
                                 "recorded as measured.")
        if math.isnan(value) and status != "failed":
            problems.append(
                f"{where}, column {value_col}: the value is empty or NaN; enter the measured "
                "value, or set status to failed."
            )
            continue
        raw_unit = cell(i, unit_col)
        factor = 1.0
        if raw_unit:
            try:
                factor = conversion_factor(raw_unit, unit)
            except InputError as exc:
                problems.append(f"{where}, column {unit_col}: {exc}")
                continue
        if status == "failed" and not math.isnan(value):
            plan.warnings.append(f"{where}: status failed, so the value {raw_value} is ignored.")
        if status != "failed":
            if math.isinf(value) or abs(value * factor) > max_abs:
                problems.append(
                    f"{where}, column {value_col}: {raw_value} is not a plausible value (limit "
                    f"|value| <= {max_abs:g} {unit}); check the cell and the unit."
                )
                continue
            value = value * factor
        else:
            value = None
        raw_std = cell(i, std_col)
        std = None
        if raw_std and status != "failed":
            s = _number(raw_std)
            if s is None or math.isnan(s) or math.isinf(s) or s < 0 or abs(s * factor) > max_abs:
                problems.append(
                    f"{where}, column {std_col}: {raw_std!r} is not a standard deviation "
                    "(a finite number >= 0); fix it or leave the cell blank."
                )
                continue
            std = s * factor
        rows.append(_Row(i, status or "measured", value, raw_value, std, raw_unit, factor,
                         cell(i, source_col), cell(i, note_col)))

    # --- identify candidates
    proposals = {cid: c for cid, c in state.candidates.items() if c.proposal is not None}
    prop_ids = list(proposals)
    prop_fr = np.array([proposals[c].fractions for c in prop_ids]) if prop_ids else None

    def nearest_proposal(fr: np.ndarray) -> str | None:
        if prop_fr is None:
            return None
        return prop_ids[int(np.argmin(np.abs(prop_fr - fr[None, :]).sum(axis=1)))]

    good: list[_Row] = []
    for row in rows:
        where = f"{name} row {sheet_row(row.i)}"
        cid_raw = cell(row.i, id_col)
        fr = fractions[row.i] if has_comp[row.i] else None
        if fr is not None and np.isnan(fr).any():
            continue  # composition problem already reported
        if cid_raw:
            try:
                parse_candidate_id(cid_raw, elements)
            except InputError as exc:
                problems.append(f"{where}, column {id_col}: {exc}")
                continue
            if cid_raw not in state.candidates:
                problems.append(
                    f"{where}, column {id_col}: {cid_raw} was never proposed in this campaign; "
                    "check for a typo, or leave the id blank and give the composition in the "
                    "element columns to add it as a new point."
                )
                continue
            known = state.candidates[cid_raw]
            if fr is not None and np.abs(fr - known.fractions).max() > tol:
                row.candidate = candidate_id(elements, fr)
                row.fractions, row.answers, row.linked_to = fr, cid_raw, cid_raw
                row.new_point = row.candidate not in state.candidates
                plan.warnings.append(
                    f"{where}: measured composition {row.candidate} differs from proposal "
                    f"{cid_raw}; it is recorded as its own point linked to {cid_raw}."
                )
            else:
                row.candidate, row.fractions = cid_raw, known.fractions
        elif fr is not None:
            cid = candidate_id(elements, fr)
            row.fractions = fr
            row.candidate = cid
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
                    "id column."
                )
        else:
            problems.append(
                f"{where}: the row names no candidate; fill the {id_col or 'id'} column or the "
                "composition columns."
            )
            continue
        good.append(row)

    # --- duplicates within the file, existing measurements, corrections
    first_row: dict[tuple[str, str], int] = {}
    for row in good:
        if row.status == "replicate":
            continue
        key = (row.candidate, row.source)
        if key in first_row:
            problems.append(
                f"{name} row {sheet_row(row.i)}: duplicates row {first_row[key]} (candidate "
                f"{row.candidate}, source {row.source or '(blank)'}); delete one, set status "
                "to replicate, or give them different sources."
            )
        else:
            first_row[key] = sheet_row(row.i)

    # multiset of what is already recorded, for idempotent re-ingest
    recorded: Counter = Counter()
    latest_by_source: dict[tuple[str, str], str] = {}
    for c in state.candidates.values():
        for m in c.effective:
            recorded[(c.id, m.source, "measured", _key(m.value), _key(m.std))] += 1
            latest_by_source[(c.id, m.source)] = m.event.event_id
        for f in c.failures:
            recorded[(c.id, str(f.get("source") or ""), "failed", None, None)] += 1
    seen: Counter = Counter()
    current_round = state.current_round
    events: list[Event] = []
    measured_sources: dict[str, set[str]] = defaultdict(set)
    for c in state.candidates.values():
        measured_sources[c.id] = {m.source for m in c.effective}
    for row in good:
        where = f"{name} row {sheet_row(row.i)}"
        kind_status = "failed" if row.status == "failed" else "measured"
        key = (row.candidate, row.source, kind_status, _key(row.value), _key(row.std))
        seen[key] += 1
        if seen[key] <= recorded[key]:
            plan.skipped["already recorded"] += 1
            plan.rows.append(_summary(row, "skip (already recorded)", unit))
            continue
        c = state.candidates.get(row.candidate)
        anchor = state.candidates.get(row.answers) if row.answers else None
        batch = (c.batch if c else None) or (anchor.batch if anchor else None)
        rnd = (c.round if c else None) or (anchor.round if anchor else None)
        if rnd is None:
            rnd = current_round
        prior = set(measured_sources.get(row.candidate, set()))
        common = {
            "source": row.source, "note": row.note, "file": name, "row": sheet_row(row.i),
        }
        if row.new_point or row.answers:
            common["composition"] = {e: float(x) for e, x in zip(elements, row.fractions)
                                     if x > 0}
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
                    f"{where}, column {value_col}: {row.candidate} already has a measured value "
                    f"{m.value:g} {unit} from source {row.source or '(blank)'} (event {old}); "
                    "re-run with --correct to replace it, or set status to replicate to add a "
                    "replicate."
                )
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
    if blank:
        plan.skipped["blank"] += blank
    plan.events = events
    return plan


def _row_of(problem: str) -> int:
    m = re.search(r" row (\d+)\b", problem)
    return int(m.group(1)) if m else 0


def _key(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.12g}")


def _summary(row: _Row, action: str, unit: str) -> dict:
    return {
        "row": sheet_row(row.i), "candidate": row.candidate, "action": action,
        "value": row.value, "std": row.std, "unit": unit, "source": row.source,
        "linked_to": row.linked_to or "",
    }


def ingest(
    campaign: Campaign, path: str | Path, *, correct: bool = False, dry_run: bool = False
) -> IngestPlan:
    """Validate ``path`` and, unless ``dry_run``, append all its events in one transaction.

    Validation and append happen under the campaign lock, so concurrent ingests serialise and
    each sees the other's rows. Raises :class:`IngestError` (nothing written) on any problem.
    """
    if dry_run:
        return plan_ingest(campaign, path, correct=correct)
    with campaign.locked():
        plan = plan_ingest(campaign, path, correct=correct)
        campaign.append(plan.events)
    return plan
