"""Parse compositions from tables: one column per element, or a formula column.

Row numbers in messages follow the spreadsheet convention: the header is row 1, the first data
row is row 2, so a user can jump straight to the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from activemil.errors import InputError

SUM_TOLERANCE = 1e-3
FORMULA_COLUMNS = ("formula", "composition")


def read_csv_file(path: str | Path, flag: str) -> pd.DataFrame:
    """Read a composition table from CSV, or one sentence naming the file and the ``flag``."""
    path = Path(path)
    if not path.is_file():
        what = {"--data": "Data", "--prior": "Prior"}.get(flag, "Candidate")
        raise InputError(f"{what} file {path} does not exist; check the {flag} path.")
    try:
        return pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for malformed files
        raise InputError(f"Cannot read {path} as CSV ({type(exc).__name__}); save it as "
                         "comma-separated text with a header row.") from None


def sheet_row(i: int) -> int:
    """Spreadsheet row number of 0-based data row ``i`` (header is row 1)."""
    return i + 2


def parse_formula(text: str) -> dict[str, float]:
    """Parse a formula such as ``Ag0.2Pd0.8``, ``AgPd4`` or ``Ni20Fe80`` into fractions.

    Uses pymatgen's :class:`~pymatgen.core.Composition`; amounts are normalised to sum to 1.
    """
    from pymatgen.core import Composition

    if not isinstance(text, str) or not text.strip():
        raise InputError("Empty formula; write compositions like Ag0.2Pd0.8 or Ag20Pd80.")
    try:
        comp = Composition(text.strip())
    except Exception:  # pymatgen raises several types for bad formulas
        raise InputError(
            f"Cannot read formula {text!r}; write compositions like Ag0.2Pd0.8 or Ag20Pd80."
        ) from None
    total = comp.num_atoms
    if total <= 0:
        raise InputError(f"Formula {text!r} has no atoms; write e.g. Ag0.2Pd0.8.")
    return {str(el): float(n) / total for el, n in comp.get_el_amt_dict().items()}


def parse_composition_table(
    df: pd.DataFrame,
    elements: Sequence[str],
    tolerance: float = SUM_TOLERANCE,
    source: str = "table",
) -> tuple[np.ndarray, list[str]]:
    """Read compositions from ``df`` without raising; collect every problem.

    Element columns (symbols as headers; a missing element column counts as 0) take precedence;
    otherwise a ``formula``/``composition`` column is parsed and normalised. Element columns
    must sum to 1 within ``tolerance`` (percent columns summing to 100 are accepted and scaled).

    Returns:
        ``fractions`` float64 ``[N, E]`` (NaN rows where a row is bad) and a list of
        one-sentence problems naming ``source``, the row and the column.
    """
    elements = list(elements)
    n = len(df)
    out = np.full((n, len(elements)), np.nan)
    problems: list[str] = []
    cols = {str(c).strip(): c for c in df.columns}
    el_cols = [c for c in cols if c in elements]
    formula_col = next((cols[c] for c in cols if c.lower() in FORMULA_COLUMNS), None)

    if el_cols:
        for i in range(n):
            row = np.zeros(len(elements))
            ok = True
            for j, el in enumerate(elements):
                if el not in cols:
                    continue
                raw = df.iloc[i][cols[el]]
                try:
                    v = float(raw) if not (isinstance(raw, str) and raw.strip() == "") else 0.0
                except (TypeError, ValueError):
                    problems.append(
                        f"{source} row {sheet_row(i)}, column {el}: {raw!r} is not a number; "
                        "enter the atomic fraction (e.g. 0.25)."
                    )
                    ok = False
                    continue
                if not np.isfinite(v) or v < 0:
                    problems.append(
                        f"{source} row {sheet_row(i)}, column {el}: {raw!r} is not a fraction "
                        ">= 0; enter the atomic fraction (e.g. 0.25) or 0."
                    )
                    ok = False
                    continue
                row[j] = v
            if not ok:
                continue
            total = row.sum()
            if abs(total - 100.0) <= 100 * tolerance and total > 1.5:
                row, total = row / 100.0, total / 100.0
            if abs(total - 1.0) > tolerance:
                problems.append(
                    f"{source} row {sheet_row(i)}: element fractions sum to {total:.6g}, not 1 "
                    f"(tolerance {tolerance}); fix the fractions so they add up to 1."
                )
                continue
            out[i] = row / total
        return out, problems

    if formula_col is not None:
        for i in range(n):
            raw = df.iloc[i][formula_col]
            try:
                comp = parse_formula(raw if isinstance(raw, str) else "")
            except InputError:
                problems.append(
                    f"{source} row {sheet_row(i)}, column {formula_col}: cannot read formula "
                    f"{raw!r}; write compositions like Ag0.2Pd0.8 or Ag20Pd80."
                )
                continue
            unknown = sorted(set(comp) - set(elements))
            if unknown:
                problems.append(
                    f"{source} row {sheet_row(i)}, column {formula_col}: element(s) "
                    f"{','.join(unknown)} are not in this design space ({','.join(elements)})."
                )
                continue
            out[i] = [comp.get(el, 0.0) for el in elements]
        return out, problems

    problems.append(
        f"{source} has no composition columns: add one column per element "
        f"({','.join(elements)}) or a 'formula' column."
    )
    return out, problems


def parse_compositions(
    df: pd.DataFrame,
    elements: Sequence[str],
    tolerance: float = SUM_TOLERANCE,
    source: str = "table",
) -> np.ndarray:
    """Like :func:`parse_composition_table` but raise :class:`InputError` on any problem.

    Returns fractions float64 ``[N, E]``.
    """
    fractions, problems = parse_composition_table(df, elements, tolerance, source)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise InputError(problems[0] + more)
    return fractions


def element_columns(df: pd.DataFrame) -> tuple[str, ...]:
    """The columns of ``df`` that are element symbols, in column order."""
    from ase.data import chemical_symbols

    symbols = set(chemical_symbols[1:])
    return tuple(str(c) for c in df.columns if str(c) in symbols)


def measured_table(
    df: pd.DataFrame,
    target: str,
    *,
    elements: Sequence[str] | None = None,
    source: str = "table",
    flag: str = "--target",
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """A measured table: one column per element (fractions) and a numeric ``target`` column.

    ``elements=None`` takes every column that is an element symbol. Every problem is one
    sentence naming ``source``, the row and column and the fix (``flag`` names the option that
    chose the target column).

    Returns:
        ``(elements, fractions float64 [N, E], values float64 [N])``.
    """
    from activemil.space.design import validate_elements

    if target not in df.columns:
        raise InputError(
            f"{source} has no column {target!r}; pass {flag} with one of "
            f"{', '.join(map(str, df.columns))}."
        )
    if elements is None:
        elements = element_columns(df)
        if not elements:
            raise InputError(
                f"{source} has no element columns; add one column per element (e.g. Ni, Fe) "
                "holding atomic fractions."
            )
    elements = validate_elements(elements)
    if len(df) == 0:
        raise InputError(f"{source} has a header but no data rows; add measured rows.")
    y = pd.to_numeric(df[target], errors="coerce").to_numpy(np.float64)
    bad = np.where(~np.isfinite(y))[0]
    if len(bad):
        raise InputError(
            f"{source} row {sheet_row(int(bad[0]))}, column {target}: "
            f"{df[target].iloc[bad[0]]!r} is not a finite number ({len(bad)} such rows); "
            "fill in or drop those rows."
        )
    fractions = parse_compositions(df, elements, source=source)
    return elements, fractions, y
