"""Units of measured values: spelling normalisation and conversion within a family.

A campaign has one target unit (``campaign.json``); every ingested value is converted to it.
Conversion is only ever a scale factor inside one family (``mV`` <-> ``V``, ``meV`` <-> ``eV``,
``mA/cm2`` <-> ``A/cm2``). A unit this module does not know is accepted only if it is spelled
exactly like the campaign unit; anything else is refused rather than guessed.
"""

from __future__ import annotations

import re

from activemil.errors import InputError

#: family -> {canonical unit: factor to the family's base unit}
FAMILIES: dict[str, dict[str, float]] = {
    "potential": {"V": 1.0, "mV": 1e-3, "uV": 1e-6},
    "energy": {
        "eV": 1.0,
        "meV": 1e-3,
        "kJ/mol": 1.0 / 96.485332,
        "J/mol": 1.0 / 96485.332,
        "kcal/mol": 1.0 / 23.060548,
    },
    "current density": {
        "A/cm2": 1.0,
        "mA/cm2": 1e-3,
        "uA/cm2": 1e-6,
        "A/m2": 1e-4,
        "mA/m2": 1e-7,
    },
    "current": {"A": 1.0, "mA": 1e-3, "uA": 1e-6, "nA": 1e-9},
    "mass activity": {"A/g": 1.0, "mA/mg": 1.0, "A/mg": 1e3, "mA/g": 1e-3, "mA/ug": 1e3},
    "Tafel slope": {"V/dec": 1.0, "mV/dec": 1e-3},
    "fraction": {"1": 1.0, "fraction": 1.0, "%": 1e-2},
    "resistance": {"ohm": 1.0, "mohm": 1e-3, "kohm": 1e3},
    "time": {"s": 1.0, "min": 60.0, "h": 3600.0},
}
_CANONICAL: dict[str, tuple[str, str]] = {
    u: (fam, u) for fam, units in FAMILIES.items() for u in units
}
#: all-lowercase spellings people type that are unambiguous (``MV`` is not ``mV``)
_LOWERCASE_ALIASES = {
    "v": "V", "mv": "mV", "uv": "uV", "ev": "eV", "mev": "meV", "kj/mol": "kJ/mol",
    "a/cm2": "A/cm2", "ma/cm2": "mA/cm2", "ua/cm2": "uA/cm2", "mv/dec": "mV/dec",
    "v/dec": "V/dec", "a/g": "A/g", "ma/mg": "mA/mg",
}


def _normalise(text: str) -> str:
    s = str(text).strip()
    s = s.replace("\u00b5", "u").replace("\u03bc", "u").replace("\u00b2", "2").replace("^", "")
    s = s.replace("\u2126", "ohm").replace("\u03a9", "ohm").replace("Ohm", "ohm")
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"^(\S+?)\s*(?:\*\s*)?cm-2$", r"\1/cm2", s)  # "mA cm-2" -> "mA/cm2"
    s = re.sub(r"^(\S+?)\s*(?:\*\s*)?m-2$", r"\1/m2", s)
    s = re.sub(r"/\s*decade$", "/dec", s)
    s = re.sub(r"\s*/\s*", "/", s)
    s = s.replace(" ", "")
    if s in {"-", "", "dimensionless"}:
        s = "1"
    return s


def canonical_unit(text: str) -> str | None:
    """The canonical spelling of a known unit (``"mA cm-2"`` -> ``"mA/cm2"``), else ``None``."""
    s = _normalise(text)
    if s in _CANONICAL:
        return s
    if s == s.lower():
        return _LOWERCASE_ALIASES.get(s)
    return None


def unit_family(text: str) -> str | None:
    """The family (e.g. ``"potential"``) of a known unit, else ``None``."""
    c = canonical_unit(text)
    return _CANONICAL[c][0] if c else None


def conversion_factor(from_unit: str, to_unit: str) -> float:
    """Factor ``f`` such that ``value_in_to_unit = f * value_in_from_unit``.

    Raises :class:`InputError` for an unknown unit or units of different families.
    """
    if str(from_unit).strip() == str(to_unit).strip():
        return 1.0
    a, b = canonical_unit(from_unit), canonical_unit(to_unit)
    if a is not None and a == b:
        return 1.0
    if b is None:
        raise InputError(
            f"unit {from_unit!r} differs from the campaign unit {to_unit!r}, which activemil "
            f"cannot convert; write values in {to_unit!r}."
        )
    if a is None:
        raise InputError(
            f"unknown unit {from_unit!r}; write values in {to_unit!r} or a unit of the same "
            f"family ({', '.join(FAMILIES[_CANONICAL[b][0]])})."
        )
    fam_a, fam_b = _CANONICAL[a][0], _CANONICAL[b][0]
    if fam_a != fam_b:
        raise InputError(
            f"unit {from_unit!r} is a {fam_a} unit but the campaign target is in {to_unit!r} "
            f"({fam_b}); write values in {to_unit!r}."
        )
    return FAMILIES[fam_a][a] / FAMILIES[fam_b][b]


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert ``value`` from ``from_unit`` to ``to_unit`` (same family only)."""
    return float(value) * conversion_factor(from_unit, to_unit)


#: largest plausible magnitude of a measured target, per family, in the family's base unit
#: (a value beyond it was almost always typed in another unit: 375 "V" meant 375 mV)
PLAUSIBLE: dict[str, float] = {
    "potential": 10.0,  # V: overpotentials and electrode potentials
    "Tafel slope": 10.0,  # V/dec
    "energy": 100.0,  # eV: adsorption and reaction energies
    "current density": 100.0,  # A/cm2
}


def plausible_limit(unit: str) -> float | None:
    """Largest plausible ``|value|`` in ``unit`` (``None`` when activemil has no opinion)."""
    c = canonical_unit(unit) if unit else None
    if c is None:
        return None
    family = _CANONICAL[c][0]
    if family == "fraction":
        return 1.0 / FAMILIES[family][c]  # 1 as a fraction, 100 in %
    base = PLAUSIBLE.get(family)
    return None if base is None else base / FAMILIES[family][c]
