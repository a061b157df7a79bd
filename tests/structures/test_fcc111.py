from collections import Counter

import numpy as np
import pytest

from activemil.errors import InputError
from activemil.structures import exact_counts, get_recipe, vegard_lattice_constant

COMP = {"Ag": 0.2, "Ir": 0.1, "Pd": 0.3, "Pt": 0.15, "Ru": 0.25}


def test_exact_integer_counts_and_seed_reproducibility():
    recipe = get_recipe("fcc111")
    s1, s2, s3 = recipe.build(COMP, seed=7), recipe.build(COMP, seed=7), recipe.build(COMP, seed=8)
    n = len(s1.atoms)
    assert Counter(s1.atoms.get_chemical_symbols()) == exact_counts(COMP, n)
    assert sum(exact_counts(COMP, n).values()) == n
    assert s1.atoms.get_chemical_symbols() == s2.atoms.get_chemical_symbols()
    assert s1.atoms.get_chemical_symbols() != s3.atoms.get_chemical_symbols()


def test_zone_sizes_match_published_layout():
    s = get_recipe("fcc111", size=(4, 4, 4)).build(COMP, seed=0)
    kinds = Counter(site.kind for site in s.sites)
    assert kinds == {"ontop": 16, "fcc": 16}
    for site in s.sites:
        sizes = {z: len(ix) for z, ix in site.zones.items()}
        expected = dict(s.zone_layout[site.kind])
        assert sizes == expected
        assert all(len(set(ix)) == len(ix) for ix in site.zones.values())


def test_zone_counts_agree_with_hand_built_environment():
    """Set the 12 nearest neighbours of one top atom by 3D distance, independent of the recipe's
    lateral-distance construction, and check the zone counts."""
    recipe = get_recipe("fcc111", size=(4, 4, 4))
    s = recipe.build({"Pt": 1.0}, seed=0)
    atoms = s.atoms
    site = next(x for x in s.sites if x.kind == "ontop")
    t = site.center[0]
    d = atoms.get_distances(t, range(len(atoms)), mic=True)
    tags = atoms.get_tags()
    nn = np.where((d > 0.1) & (d < 2.9))[0]
    symbols = np.array(atoms.get_chemical_symbols(), dtype=object)
    symbols[t] = "Ir"
    symbols[nn[tags[nn] == 1]] = "Ag"  # 6 in-plane neighbours
    symbols[nn[tags[nn] == 2]] = "Pd"  # 3 below
    atoms.set_chemical_symbols(list(symbols))
    counts = s.zone_counts(site, ["Ag", "Ir", "Pd", "Pt", "Ru"]).reshape(4, 5)
    assert counts.tolist() == [[0, 1, 0, 0, 0], [6, 0, 0, 0, 0], [0, 0, 3, 0, 0], [0, 0, 0, 3, 0]]


def test_fcc_hollow_ensemble_is_three_nearest_surface_atoms():
    s = get_recipe("fcc111", size=(4, 4, 4)).build({"Pt": 1.0}, seed=0)
    atoms = s.atoms
    top = np.where(atoms.get_tags() == 1)[0]
    for site in (x for x in s.sites if x.kind == "fcc"):
        probe = atoms.copy()
        probe.append("H")
        probe.positions[-1] = site.position + [0, 0, 1.0]
        d = probe.get_distances(len(probe) - 1, top, mic=True)
        assert set(top[np.argsort(d)[:3]]) == set(site.zones["ens"])


def test_vegard_between_pure_elements():
    a_ag, a_pt = vegard_lattice_constant({"Ag": 1}), vegard_lattice_constant({"Pt": 1})
    assert a_ag == pytest.approx(4.09, abs=0.01)
    assert a_ag > vegard_lattice_constant({"Ag": 0.5, "Pt": 0.5}) > a_pt


def test_unknown_recipe_and_bad_size():
    with pytest.raises(InputError, match="Unknown recipe 'bcc110'"):
        get_recipe("bcc110")
    with pytest.raises(InputError, match="too small"):
        get_recipe("fcc111", size=(3, 3, 4))
