"""Unit spelling and conversion within a family; refusal of unknown or mismatched units."""

from __future__ import annotations

import pytest

from activemil.campaigns import canonical_unit, conversion_factor, convert, unit_family
from activemil.errors import InputError


@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [
        (0.35, "V", "mV", 350.0),
        (350, "mV", "V", 0.35),
        (120, "meV", "eV", 0.12),
        (1.5, "eV", "meV", 1500.0),
        (10, "mA/cm2", "A/cm2", 0.01),
        (10, "mA cm-2", "mA/cm2", 10.0),
        (10, "mA/cm²", "A/cm2", 0.01),
        (2, "µA/cm^2", "mA/cm2", 0.002),
        (96.485332, "kJ/mol", "eV", 1.0),
        (45, "%", "fraction", 0.45),
        (60, "mV/dec", "V/dec", 0.06),
        (0.3, "v", "mV", 300.0),
    ],
)
def test_conversions(value, src, dst, expected):
    assert convert(value, src, dst) == pytest.approx(expected, rel=1e-9)


def test_canonical_spellings():
    assert canonical_unit("mA cm-2") == "mA/cm2"
    assert canonical_unit("MV") is None  # megavolt is not millivolt
    assert unit_family("meV") == "energy"
    assert unit_family("furlong") is None


@pytest.mark.parametrize(
    ("src", "dst", "match"),
    [
        ("furlong", "mV", "unknown unit"),
        ("eV", "mV", "energy unit"),
        ("mA/cm2", "V", "current density"),
        ("mV", "arb. units", "cannot convert"),
    ],
)
def test_refusals(src, dst, match):
    with pytest.raises(InputError, match=match):
        conversion_factor(src, dst)


def test_unknown_campaign_unit_accepts_identical_spelling():
    assert conversion_factor("arb. units", "arb. units") == 1.0
