"""Oxyhydroxide and rocksalt cation-sublattice oxide recipes: counts, seeds, zones, errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activemil.errors import InputError
from activemil.structures.base import exact_counts, get_recipe
from activemil.structures.oxide import (
    OXIDE_LAYOUT,
    ROCKSALT_A,
    CationSublatticeOxideRecipe,
    rocksalt_lattice_constant,
)
from activemil.structures.oxyhydroxide import (
    A_HEX,
    OXYHYDROXIDE_LAYOUT,
    OxyhydroxideRecipe,
)

OOH = {"Co": 0.6, "Ni": 0.2, "Fe": 0.15, "Mn": 0.05}
HEO = {"Mg": 0.2, "Co": 0.2, "Ni": 0.2, "Cu": 0.2, "Zn": 0.2}
CASES = [
    pytest.param(OxyhydroxideRecipe(), OOH, id="oxyhydroxide-1"),
    pytest.param(OxyhydroxideRecipe(size=(5, 4), layers=2), OOH, id="oxyhydroxide-2"),
    pytest.param(CationSublatticeOxideRecipe(), HEO, id="oxide"),
    pytest.param(CationSublatticeOxideRecipe(size=(3, 5), layers=2), HEO, id="oxide-small"),
]


def metal_mask(atoms) -> np.ndarray:
    return ~np.isin(atoms.get_chemical_symbols(), ["O", "H"])


@pytest.mark.parametrize("recipe,comp", CASES)
def test_exact_counts_on_cation_sites_only(recipe, comp):
    s = recipe.build(comp, seed=3)
    sym = np.asarray(s.atoms.get_chemical_symbols())
    metals = metal_mask(s.atoms)
    n_m = int(metals.sum())
    assert dict(Counter(sym[metals])) == {k: v for k, v in exact_counts(comp, n_m).items() if v}
    n_o = int((sym == "O").sum())
    assert n_o == (2 * n_m if recipe.name == "oxyhydroxide" else n_m)
    assert int((sym == "H").sum()) == (n_m if recipe.name == "oxyhydroxide" else 0)


@pytest.mark.parametrize("recipe,comp", CASES)
def test_same_seed_identical_different_seed_differs(recipe, comp):
    a, b, c = recipe.build(comp, seed=11), recipe.build(comp, seed=11), recipe.build(comp, seed=12)
    assert a.atoms.get_chemical_symbols() == b.atoms.get_chemical_symbols()
    np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
    assert a.atoms.get_chemical_symbols() != c.atoms.get_chemical_symbols()
    np.testing.assert_array_equal(a.atoms.positions, c.atoms.positions)  # only occupancy moves


@pytest.mark.parametrize("recipe,comp", CASES)
def test_zone_sizes_species_and_distances(recipe, comp):
    s = recipe.build(comp, seed=0)
    nx, ny = recipe.size
    assert len(s.sites) == nx * ny and all(site.kind == "metal" for site in s.sites)
    assert set(s.zone_layout) == set(recipe.site_kinds) == {"metal"}
    metals = metal_mask(s.atoms)
    sym = np.asarray(s.atoms.get_chemical_symbols())
    z_top = s.atoms.positions[metals, 2].max()
    if recipe.name == "oxyhydroxide":
        a = A_HEX
        want = {"site": 0.0, "1A": a, "1B": a * np.sqrt(3), "O": 1.90}
    else:
        a = recipe.lattice(comp)
        want = {"site": 0.0, "1A": a / np.sqrt(2), "1B": a, "2A": a / np.sqrt(2), "O": a / 2}
    for site in s.sites:
        t = site.zones["site"][0]
        assert np.isclose(s.atoms.positions[t, 2], z_top)  # sites are surface cations
        np.testing.assert_allclose(site.position, s.atoms.positions[t])
        for zone, size in s.zone_layout["metal"]:
            idx = list(site.zones[zone])
            assert len(idx) == len(set(idx)) == size, zone
            assert (sym[idx] == "O").all() if zone == "O" else metals[idx].all()
            dist = s.atoms.get_distances(t, idx, mic=True)
            np.testing.assert_allclose(dist, want[zone], atol=1e-3, err_msg=zone)


def test_layouts():
    assert OxyhydroxideRecipe.zone_layout["metal"] == OXYHYDROXIDE_LAYOUT == (
        ("site", 1), ("1A", 6), ("1B", 6), ("O", 6))
    assert CationSublatticeOxideRecipe.zone_layout["metal"] == OXIDE_LAYOUT == (
        ("site", 1), ("1A", 4), ("1B", 4), ("2A", 4), ("O", 5))


def test_zone_counts_against_hand_count():
    s = OxyhydroxideRecipe().build({"Co": 0.5, "Ni": 0.5}, seed=5)
    site = s.sites[3]
    sym = s.atoms.get_chemical_symbols()
    counts = s.zone_counts(site, ["Co", "Ni"]).reshape(4, 2)
    for z, (zone, size) in enumerate(OXYHYDROXIDE_LAYOUT):
        names = [sym[i] for i in site.zones[zone]]
        assert counts[z].tolist() == [names.count("Co"), names.count("Ni")]
        assert counts[z].sum() == (0 if zone == "O" else size)


def test_oxyhydroxide_geometry_bonds():
    s = OxyhydroxideRecipe(layers=2).build({"Co": 1.0})
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", s.atoms, 2.0)
    sym = np.asarray(s.atoms.get_chemical_symbols())
    pair = {tuple(sorted((sym[a], sym[b]))) for a, b in zip(i, j)}
    assert pair == {("Co", "O"), ("H", "O")}  # no H-H, Co-H or Co-Co clashes below 2 Å
    np.testing.assert_allclose(d[(sym[i] == "Co")], 1.90, atol=1e-3)
    oh = np.sort(d[(sym[i] == "H")])
    np.testing.assert_allclose(oh[:32], 0.98, atol=1e-3)  # one O-H bond per proton
    np.testing.assert_allclose(oh[32:], 13.15 / 3 - 2 * 0.9500 - 0.98, atol=2e-3)  # H...O


def test_oxide_lattice_constant_is_vegard():
    r = CationSublatticeOxideRecipe()
    assert np.isclose(r.lattice({"Mg": 0.5, "Ni": 0.5}), (ROCKSALT_A["Mg"] + ROCKSALT_A["Ni"]) / 2)
    assert 3.9 < rocksalt_lattice_constant("Li") < 4.6  # from the ionic radius fallback
    assert CationSublatticeOxideRecipe(lattice_constant=4.0).lattice(HEO) == 4.0


@pytest.mark.parametrize("name,cls", [("oxyhydroxide", OxyhydroxideRecipe),
                                      ("oxide", CationSublatticeOxideRecipe)])
def test_bad_elements_and_settings_give_one_sentence(name, cls):
    recipe = get_recipe(name)
    assert isinstance(recipe, cls)
    for comp, word in (({"Co": 0.5, "Xx": 0.5}, "Xx"), ({"Co": 0.5, "O": 0.5}, "metal")):
        with pytest.raises(InputError, match=word) as err:
            recipe.build(comp, seed=0)
        msg = str(err.value)
        assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0
    with pytest.raises(InputError, match="too small"):
        cls(size=(2, 2))


def test_settings_change_with_geometry():
    assert OxyhydroxideRecipe().settings() != OxyhydroxideRecipe(layers=2).settings()
    assert CationSublatticeOxideRecipe().settings() != CationSublatticeOxideRecipe(
        vacuum=15).settings()
    with pytest.raises(InputError, match="1 or 2"):
        OxyhydroxideRecipe(layers=3)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=5), st.integers(0, 2**31))
def test_counts_property(weights, seed):
    els = ["Co", "Ni", "Fe", "Mn", "Cr"][: len(weights)]
    comp = {e: w / sum(weights) for e, w in zip(els, weights)}
    for recipe in (OxyhydroxideRecipe(), CationSublatticeOxideRecipe()):
        s = recipe.build(comp, seed=seed)
        sym = np.asarray(s.atoms.get_chemical_symbols())[metal_mask(s.atoms)]
        for e, x in comp.items():
            assert abs((sym == e).sum() - x * len(sym)) < 1.0
