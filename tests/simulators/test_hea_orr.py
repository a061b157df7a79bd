"""HEAORRSimulator: geometry, determinism, greedy filling, kinetics, oracle behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activemil.data import SITE_FILES, data_path
from activemil.errors import InputError
from activemil.simulate import Oracle
from activemil.simulators import (
    BLOCKING_RULES,
    ELEMENTS,
    FCC_ZONES,
    ONTOP_ZONES,
    HEAORRSimulator,
    get_simulator,
)
from activemil.space import CandidatePool
from activemil.structures import FCC111Recipe, exact_counts

EQUIMOLAR = {el: 0.2 for el in ELEMENTS}


@pytest.fixture(scope="module")
def sim() -> HEAORRSimulator:
    return HEAORRSimulator(size=24)


def _grid_index(recipe_surface, n: int) -> dict[int, tuple[int, int, int]]:
    """Map ase atom index -> (layer, i, j) of the simulator grid convention."""
    atoms = recipe_surface.atoms
    tags = atoms.get_tags()
    cell = atoms.cell.array[:2, :2] / n  # unit lattice vectors a1, a2 (rows)
    inv = np.linalg.inv(cell)
    origin = atoms.positions[np.where(tags == 1)[0][0], :2]
    offsets = {1: (0.0, 0.0), 2: (2 / 3, 2 / 3), 3: (1 / 3, 1 / 3)}
    out = {}
    for a in range(len(atoms)):
        layer = int(tags[a])
        if layer not in offsets:
            continue
        f = (atoms.positions[a, :2] - origin) @ inv - np.asarray(offsets[layer])
        ij = np.round(f)
        assert np.allclose(f, ij, atol=1e-6), (layer, f)
        out[a] = (layer - 1, int(ij[0]) % n, int(ij[1]) % n)
    return out


def test_zone_offsets_match_fcc111_recipe() -> None:
    n = 6
    surface = FCC111Recipe(size=(n, n, 4)).build({"Pt": 1.0}, seed=0)
    index = _grid_index(surface, n)
    names = {"ontop": {"site": "site", "1A": "z1A", "2A": "z2A", "3B": "z3B"},
             "fcc": {"ens": "ens", "1A": "z1A", "1B": "z1B", "2A": "z2A", "2B": "z2B",
                     "3C": "z3C"}}
    checked = 0
    for site in surface.sites:
        centre = index[site.center[0]] if site.kind == "ontop" else None
        zones = ONTOP_ZONES if site.kind == "ontop" else FCC_ZONES
        if site.kind == "fcc":
            # the hollow (i, j) sits above layer-3 atom (i, j): locate it from the ensemble
            ens = {index[a] for a in site.zones["ens"]}
            centre = next(
                (2, i, j) for i in range(n) for j in range(n)
                if ens == {(0, (i + di) % n, (j + dj) % n) for _, di, dj in FCC_ZONES["ens"]}
            )
        _, i0, j0 = centre
        for zone, atoms in site.zones.items():
            mine = {(layer, (i0 + di) % n, (j0 + dj) % n)
                    for layer, di, dj in zones[names[site.kind][zone]]}
            assert {index[a] for a in atoms} == mine, (site.kind, zone)
            checked += 1
    assert checked == n * n * (4 + 6)


def test_exact_counts_and_determinism(sim: HEAORRSimulator) -> None:
    comp = {"Ag": 0.15, "Ir": 0.05, "Pd": 0.4, "Pt": 0.3, "Ru": 0.1}
    a, b = sim.random_grid(comp, seed=3), sim.random_grid(comp, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sim.random_grid(comp, seed=4))
    counts = exact_counts(comp, a.size)
    for k, el in enumerate(ELEMENTS):
        assert int((a == k).sum()) == counts.get(el, 0)
    r1, r2 = sim.surface(comp), sim.surface(comp)
    assert r1.activity == r2.activity
    np.testing.assert_array_equal(r1.contrib_ontop, r2.contrib_ontop)
    other = HEAORRSimulator(size=24, seed=1).surface(comp)
    assert other.activity != r1.activity


@pytest.mark.parametrize("blocking", sorted(BLOCKING_RULES))
def test_contributions_sum_to_activity(blocking: str) -> None:
    s = HEAORRSimulator(size=16, blocking=blocking)
    r = s.surface(EQUIMOLAR, seed=11)
    total = r.contrib_ontop.sum() + r.contrib_fcc.sum()
    assert total == pytest.approx(r.activity, rel=1e-12)
    assert r.activity > 0
    assert np.all(r.contrib_ontop[~r.occupied_ontop] == 0)
    assert np.all(r.contrib_fcc[~r.occupied_fcc] == 0)
    assert np.all(r.contrib_ontop[r.occupied_ontop] > 0)
    # each contribution is the diffusion-limited rate of its (scaled) energy per surface atom
    expect = s.rates(0.5 * r.energy_fcc[r.occupied_fcc]) / r.n_surface_atoms
    np.testing.assert_allclose(r.contrib_fcc[r.occupied_fcc], expect)


def _sequential_greedy(e_oh: np.ndarray, e_o: np.ndarray, offsets) -> tuple[np.ndarray, ...]:
    """Reference: visit sites in ascending energy, occupy unless blocked (plain loop)."""
    n = e_oh.shape[0]
    energies = np.concatenate([e_oh.ravel(), e_o.ravel()])
    occ = np.zeros(2 * n * n, bool)
    blocked = np.zeros(2 * n * n, bool)
    for s in np.argsort(energies, kind="stable"):
        if blocked[s]:
            continue
        occ[s] = True
        if s < n * n:
            i, j = divmod(s, n)
            for di, dj in offsets:
                blocked[n * n + ((i + di) % n) * n + (j + dj) % n] = True
        else:
            i, j = divmod(s - n * n, n)
            for di, dj in offsets:
                blocked[((i - di) % n) * n + (j - dj) % n] = True
    return occ[: n * n].reshape(n, n), occ[n * n :].reshape(n, n)


@pytest.mark.parametrize("blocking", ["ensemble", "extended"])
def test_parallel_fill_equals_sequential_greedy(blocking: str) -> None:
    s = HEAORRSimulator(size=12, blocking=blocking)
    rng = np.random.default_rng(0)
    for _ in range(5):
        e_oh, e_o = rng.normal(size=(12, 12)), rng.normal(size=(12, 12))
        got = s.fill(e_oh, e_o)
        want = _sequential_greedy(e_oh, e_o, BLOCKING_RULES[blocking])
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    # ties (pure metals): on-top sites come first, so all atoms take *OH and no hollow is free
    occ_oh, occ_o = s.fill(np.zeros((12, 12)), np.zeros((12, 12)))
    assert occ_oh.all() and not occ_o.any()


def test_filled_surface_is_a_maximal_conflict_free_cover(sim: HEAORRSimulator) -> None:
    r = sim.surface(EQUIMOLAR, seed=5)
    occ_oh, occ_o = r.occupied_ontop, r.occupied_fcc
    blocks_o = np.zeros_like(occ_o)
    blocks_oh = np.zeros_like(occ_oh)
    for di, dj in BLOCKING_RULES["ensemble"]:
        blocks_o |= np.roll(occ_oh, shift=(di, dj), axis=(0, 1))
        blocks_oh |= np.roll(occ_o, shift=(-di, -dj), axis=(0, 1))
    assert not (occ_o & blocks_o).any() and not (occ_oh & blocks_oh).any()  # no conflicts
    assert (occ_o | blocks_o).all() and (occ_oh | blocks_oh).all()  # maximal
    assert 0 < occ_oh.mean() < 1 and 0 < occ_o.mean() < 1


def test_pure_surfaces_order_as_site_data_imply(sim: HEAORRSimulator) -> None:
    oh = pd.read_csv(data_path(SITE_FILES["OH_ontop"]))
    data_order = sorted(ELEMENTS, key=lambda e: oh.loc[oh[f"site_{e}"] == 1].iloc[:, -1].mean())
    pure = {el: sim.surface({el: 1.0}) for el in ELEMENTS}
    sim_order = sorted(ELEMENTS, key=lambda e: pure[e].energy_ontop.mean())
    assert sim_order == data_order
    assert sim_order[-1] == "Ag" and set(sim_order[:2]) == {"Ru", "Ir"}
    o_order = sorted(ELEMENTS, key=lambda e: pure[e].energy_fcc.mean())
    assert o_order[-1] == "Ag" and o_order[:2] == ["Ru", "Ir"]
    # pure surfaces are uniform: one energy per site kind
    for r in pure.values():
        assert np.ptp(r.energy_ontop) < 1e-9 and np.ptp(r.energy_fcc) < 1e-9
    # Ru and Ir bind far too strongly: essentially no ORR activity; Pt beats Ru and Ir
    assert pure["Ru"].activity < 1e-6 and pure["Ir"].activity < 1e-6
    assert pure["Pt"].activity > 100 * pure["Ir"].activity


def test_fit_report_accuracy() -> None:
    rep = HEAORRSimulator(size=8).fit_report().set_index("adsorbate")
    assert rep.loc["OH", "mae_cv_eV"] < 0.08
    assert rep.loc["O", "mae_cv_eV"] < 0.12
    lin = HEAORRSimulator(size=8, model="linear").fit_report().set_index("adsorbate")
    assert lin.loc["O", "mae_cv_eV"] > rep.loc["O", "mae_cv_eV"]  # ensembles matter for *O


def test_agrees_with_published_table_on_a_sample() -> None:
    from activemil.simulators.compare import compare_with_table

    rows = np.random.default_rng(1).choice(10626, 120, replace=False)
    c = compare_with_table(HEAORRSimulator(size=24), rows=np.union1d(rows, [3400, 10361]))
    assert c.spearman > 0.75
    assert c.table_best[0] == "Ag20Pd80"


def test_oracle_protocol_and_errors(sim: HEAORRSimulator) -> None:
    assert isinstance(sim, Oracle) and sim.direction == "maximize"
    pool = CandidatePool(("Pt", "Pd", "Ag"), np.array([[1.0, 0, 0], [0, 0.8, 0.2], [0.2, 0.4, 0.4]]))
    y = sim.evaluate(pool, [2, 0])
    assert y.shape == (2,)
    assert y[1] == pytest.approx(sim.activity({"Pt": 1.0}))
    np.testing.assert_array_equal(sim.evaluate(pool, [2, 0]), y)
    bad = CandidatePool(("Ni", "Pt"), np.array([[0.5, 0.5]]))
    with pytest.raises(InputError, match="Ni"):
        sim.evaluate(bad, [0])
    with pytest.raises(InputError):
        HEAORRSimulator(blocking="everything")
    with pytest.raises(InputError):
        get_simulator("her")
    assert isinstance(get_simulator("hea-orr", size=8), HEAORRSimulator)
