"""Site-file parser: layout identical to the zones encoder, round trips, and one-sentence errors
for every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activemil.data import SITE_FILES, data_path
from activemil.errors import InputError
from activemil.featurize import ZonesEncoder
from activemil.featurize.sites import (
    SiteSet,
    bundled_sites,
    parse_site_frame,
    read_site_file,
    read_site_files,
)
from activemil.structures import FCC111Recipe

E5 = ("Ag", "Ir", "Pd", "Pt", "Ru")
R = FCC111Recipe


def _prefix(zone: str) -> str:
    return zone if zone in ("site", "ens") else f"z{zone}"


def site_frame(kind: str, counts: np.ndarray, energy: np.ndarray, elements=E5) -> pd.DataFrame:
    """A site table in the bundled files' column convention from zone-major counts."""
    cols = [f"{_prefix(z)}_{el}" for z, _ in R.zone_layout[kind] for el in elements]
    df = pd.DataFrame(np.asarray(counts, np.int64), columns=cols)
    df["dE_OH_eV" if kind == "ontop" else "dE_O_eV"] = energy
    return df


def ontop_frame(n: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    counts = np.hstack([rng.multinomial(size, [0.2] * 5, size=n) for _, size in R.zone_layout["ontop"]])
    return site_frame("ontop", counts, rng.normal(size=n))


def test_bundled_files_parse_in_file_order() -> None:
    s = bundled_sites()
    assert s.tasks == ("OH_ontop", "O_fcc") and len(s) == 2519 + 2520 and s.dim == 52
    for k, (kind, key) in enumerate([("ontop", "OH_ontop"), ("fcc", "O_fcc")]):
        df = pd.read_csv(data_path(SITE_FILES[key]))
        assert np.array_equal(s.zone_counts(kind, R), df.iloc[:, :-1].to_numpy(float))
        assert np.allclose(s.energy[s.task == k], df.iloc[:, -1])
        assert (s.kind[s.task == k] == R.site_kinds.index(kind)).all()
    assert np.array_equal(s.row[:3], [2, 3, 4])  # spreadsheet rows


def test_surface_sites_round_trip_through_a_site_file(tmp_path: Path) -> None:
    """Zone counts of a built surface, written as a site file and read back, give exactly the
    zones encoder's feature rows (same layout as the bags)."""
    elements = ("Pt", "Ru", "Ag")
    surf = FCC111Recipe().build({"Pt": 0.5, "Ru": 0.3, "Ag": 0.2}, seed=3)
    feats = ZonesEncoder().encode(surf, elements)
    sets = []
    for kind in R.site_kinds:
        idx = [i for i, site in enumerate(surf.sites) if site.kind == kind]
        counts = np.stack([surf.zone_counts(surf.sites[i], elements) for i in idx])
        path = tmp_path / f"{kind}.csv"
        site_frame(kind, counts, np.arange(len(idx)) * 0.01, elements).to_csv(path, index=False)
        s = read_site_file(path, R, elements)
        assert np.array_equal(s.features, feats[idx])
        sets.append(s)
    both = read_site_files([tmp_path / "ontop.csv", tmp_path / "fcc.csv"], R, elements)
    assert both.tasks == ("OH_ontop", "O_fcc") and len(both) == len(surf.sites)
    assert np.array_equal(both.features, SiteSet.concat(sets).features)


@st.composite
def site_tables(draw):
    elements = tuple(draw(st.permutations(E5)))[: draw(st.integers(1, 5))]
    kind = draw(st.sampled_from(R.site_kinds))
    n = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(len(elements)))
    counts = np.hstack([rng.multinomial(size, p, size=n) for _, size in R.zone_layout[kind]])
    energy = rng.normal(scale=0.3, size=n)
    return elements, kind, counts, energy, draw(st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(site_tables())
def test_parser_round_trip_property(table) -> None:
    """Any valid table (any element order, any column order, missing all-zero elements in the
    superset order) parses back to its counts and energies."""
    elements, kind, counts, energy, shuffle = table
    df = site_frame(kind, counts, energy, elements)
    if shuffle:
        df = df[list(np.random.default_rng(1).permutation(df.columns))]
    order = elements + tuple(e for e in E5 if e not in elements)  # superset order
    s = parse_site_frame(df, R, order, source="t.csv")
    assert s.site_kinds == R.site_kinds and (s.kind == R.site_kinds.index(kind)).all()
    got = s.zone_counts(kind, R).reshape(len(df), -1, len(order))[:, :, : len(elements)]
    assert np.array_equal(got.reshape(len(df), -1), counts)
    assert np.allclose(s.energy, energy)
    # the feature rows equal the zones encoder's assembly of the same counts
    full = np.zeros((len(df), len(R.zone_layout[kind]), len(order)), np.int64)
    full[:, :, : len(elements)] = counts.reshape(len(df), -1, len(elements))
    enc = ZonesEncoder().encode_counts(R, [kind] * len(df), list(full.reshape(len(df), -1)), len(order))
    assert np.array_equal(s.features, enc)


def _err(df: pd.DataFrame, **kw) -> str:
    with pytest.raises(InputError) as e:
        parse_site_frame(df, R, kw.pop("elements", E5), source="mine.csv", **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(".") and "mine.csv" in msg, msg
    return msg


def test_unknown_element_column() -> None:
    df = ontop_frame().rename(columns={"z1A_Ru": "z1A_Cu"})
    msg = _err(df)
    assert "'z1A_Cu'" in msg and "'Cu'" in msg and "design space" in msg


def test_unknown_zone_column() -> None:
    df = ontop_frame()
    df["z9Q_Ag"] = 0
    assert "zone 'z9Q'" in _err(df)


def test_zone_sum_wrong_names_row_and_zone() -> None:
    df = ontop_frame(4)
    df.loc[2, "z1A_Ag"] += 1
    msg = _err(df)
    assert "row 4" in msg and "zone 1A" in msg and "zone size 6" in msg
    s = parse_site_frame(df, R, E5, zone_sums="drop")
    assert len(s) == 3 and list(s.row) == [2, 3, 5]
    assert len(parse_site_frame(df, R, E5, zone_sums="keep")) == 4


@pytest.mark.parametrize("value", ["x", -1, 1.5, np.nan])
def test_bad_count_value(value) -> None:
    df = ontop_frame().astype(object)
    df.loc[1, "z2A_Pt"] = value
    msg = _err(df)
    assert "row 3" in msg and "'z2A_Pt'" in msg and "whole number" in msg


@pytest.mark.parametrize("value", ["high", np.nan, np.inf])
def test_bad_energy(value) -> None:
    df = ontop_frame().astype(object)
    df.loc[0, "dE_OH_eV"] = value
    msg = _err(df)
    assert "row 2" in msg and "'dE_OH_eV'" in msg and "energy" in msg


def test_no_energy_column() -> None:
    assert "no energy column" in _err(ontop_frame().drop(columns="dE_OH_eV"))


def test_ambiguous_energy_and_explicit_column() -> None:
    df = ontop_frame()
    df["E_a"], df["E_b"] = 1.0, 2.0
    df = df.drop(columns="dE_OH_eV")
    assert "cannot tell" in _err(df)
    assert "no energy column 'nope'" in _err(df, energy_column="nope")
    s = parse_site_frame(df, R, E5, energy_column="E_b", task="X")
    assert s.tasks == ("X",) and (s.energy == 2.0).all()
    # an id column next to a dE column is ignored
    ok = ontop_frame()
    ok["site_id"] = range(len(ok))
    assert parse_site_frame(ok, R, E5).tasks == ("OH_ontop",)


def test_missing_zone_mixed_kinds_and_no_zones() -> None:
    assert "lacks the columns of zone(s) 3B" in _err(
        ontop_frame().drop(columns=[f"z3B_{e}" for e in E5]))
    mixed = ontop_frame()
    mixed["ens_Ag"] = 3
    assert "several site kinds" in _err(mixed)
    assert "no zone-count columns" in _err(pd.DataFrame({"energy": [1.0]}))


def test_empty_table_and_bad_element_order() -> None:
    assert "no data rows" in _err(ontop_frame().iloc[:0])
    assert "duplicates" in _err(ontop_frame(), elements=("Ag", "Ag"))


def test_files_missing_or_not_csv(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_site_file(tmp_path / "none.csv", R, E5)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\x01\x02")
    with pytest.raises(InputError):
        read_site_file(bad, R, E5)
    other = tmp_path / "other.csv"
    ontop_frame().to_csv(other, index=False)
    fcc = bundled_sites(("Ag", "Ir", "Pd", "Pt", "Ru"))
    with pytest.raises(InputError, match="same recipe and element order"):
        SiteSet.concat([read_site_file(other, R, E5[::-1]), fcc])
