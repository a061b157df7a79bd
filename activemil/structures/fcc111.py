"""High-entropy alloy fcc(111) slab with on-top and fcc-hollow sites.

Zones follow the Ag-Ir-Pd-Pt-Ru per-site DFT data (Batchelor et al. 2019; Pedersen et al. 2021),
so generated sites line up with the published site files (``d`` = nearest-neighbour distance,
distances are in-plane from the site; layer 1 is the surface):

- on-top (atom ``t`` of layer 1): ``site`` 1 (t), ``1A`` 6 (layer 1 at d), ``2A`` 3 (layer 2 at
  d/sqrt3), ``3B`` 3 (layer 3 at d/sqrt3).
- fcc hollow (above a layer-3 atom): ``ens`` 3 (layer 1 at d/sqrt3), ``1A`` 3 (layer 1 at
  2d/sqrt3), ``1B`` 6 (layer 1 at sqrt(7/3) d), ``2A`` 3 (layer 2 at d/sqrt3), ``2B`` 3 (layer 2
  at 2d/sqrt3), ``3C`` 3 (layer 3).

The source gives ``3C`` three atoms without a geometric definition; the first third-layer shell
around an fcc hollow is 1 atom below it plus 6 at ``d``. We take one C3 orbit of those six: the
three whose in-plane direction is closest to the directions of the three ``2B`` atoms'
clockwise neighbours (deterministic, symmetric under the site's C3 rotation). See
docs/design-decisions.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from ase.build import fcc111
from ase.data import atomic_numbers, covalent_radii, reference_states

from activemil.errors import InputError
from activemil.structures.base import (
    Recipe,
    Site,
    Surface,
    lateral_displacements,
    random_occupancy,
    register_recipe,
)

ONTOP_LAYOUT = (("site", 1), ("1A", 6), ("2A", 3), ("3B", 3))
FCC_LAYOUT = (("ens", 3), ("1A", 3), ("1B", 6), ("2A", 3), ("2B", 3), ("3C", 3))


def nearest_neighbour_distance(symbol: str) -> float:
    """Nearest-neighbour distance (Å) of an element's reference crystal (ase), with a fallback
    to twice the covalent radius for elements without a simple cubic/hexagonal reference."""
    z = atomic_numbers[symbol]
    ref = reference_states[z] or {}
    sym, a = ref.get("symmetry"), ref.get("a")
    if sym == "fcc":
        return a / np.sqrt(2)
    if sym == "bcc":
        return a * np.sqrt(3) / 2
    if sym == "hcp":
        return a
    return 2.0 * float(covalent_radii[z])


def vegard_lattice_constant(composition: Mapping[str, float]) -> float:
    """fcc lattice constant (Å) as the fraction-weighted mean of the elements' fcc-equivalent
    constants ``sqrt2 * d_nn`` (Vegard's law)."""
    total = sum(composition.values())
    return float(
        sum(x / total * np.sqrt(2) * nearest_neighbour_distance(el) for el, x in composition.items())
    )


def _pick(dist: np.ndarray, target: float, count: int, tol: float = 0.05) -> np.ndarray:
    idx = np.where(np.abs(dist - target) < tol)[0]
    if len(idx) != count:
        raise RuntimeError(f"zone geometry: found {len(idx)} atoms at {target:.3f} Å, want {count}")
    return idx


class FCC111Recipe(Recipe):
    """HE alloy fcc(111) slab of ``size = (nx, ny, layers)`` with ``vacuum`` Å on each side."""

    name = "fcc111"
    site_kinds = ("ontop", "fcc")
    zone_layout = {"ontop": ONTOP_LAYOUT, "fcc": FCC_LAYOUT}
    uma_task = "oc20"

    def __init__(self, size: tuple[int, int, int] = (6, 6, 4), vacuum: float = 10.0) -> None:
        nx, ny, nl = (int(v) for v in size)
        if nx < 3 or ny < 3 or nl < 3:
            raise InputError(
                f"fcc111 size {size} is too small; zones need at least 3x3 atoms and 3 layers."
            )
        self.size = (nx, ny, nl)
        self.vacuum = float(vacuum)
        self._template_cache: dict[float, tuple] = {}

    def settings(self) -> dict:
        return {"size": list(self.size), "vacuum": self.vacuum}

    def check_elements(self, composition: Mapping[str, float]) -> None:
        for el in composition:
            if el not in atomic_numbers:
                raise InputError(f"Unknown element {el!r} in composition; use symbols like Pt.")

    def _geometry(self, a: float):
        """Slab positions and zone index tables for lattice constant ``a`` (cached)."""
        key = round(a, 6)
        if key in self._template_cache:
            return self._template_cache[key]
        slab = fcc111("Cu", size=self.size, a=a, vacuum=self.vacuum, periodic=True)
        tags = slab.get_tags()  # 1 = top layer
        layers = {k: np.where(tags == k)[0] for k in (1, 2, 3)}
        d = a / np.sqrt(2)
        sites: list[Site] = []
        for t in layers[1]:
            origin = slab.positions[t]
            zones = {"site": (int(t),)}
            for zone, layer, r, n in (("1A", 1, d, 6), ("2A", 2, d / np.sqrt(3), 3),
                                      ("3B", 3, d / np.sqrt(3), 3)):
                cand = layers[layer]
                dist = np.linalg.norm(lateral_displacements(slab, origin, cand), axis=1)
                zones[zone] = tuple(int(i) for i in cand[_pick(dist, r, n)])
            top = origin.copy()
            sites.append(Site("ontop", top, zones))
        z_top = slab.positions[layers[1], 2].max()
        for h in layers[3]:
            origin = slab.positions[h]
            zones = {}
            for zone, layer, r, n in (("ens", 1, d / np.sqrt(3), 3),
                                      ("1A", 1, 2 * d / np.sqrt(3), 3),
                                      ("1B", 1, np.sqrt(7 / 3) * d, 6),
                                      ("2A", 2, d / np.sqrt(3), 3),
                                      ("2B", 2, 2 * d / np.sqrt(3), 3)):
                cand = layers[layer]
                dist = np.linalg.norm(lateral_displacements(slab, origin, cand), axis=1)
                zones[zone] = tuple(int(i) for i in cand[_pick(dist, r, n)])
            # 3C: the C3 orbit of first-shell layer-3 atoms rotated +30 deg from the 2B atoms.
            cand = layers[3]
            disp = lateral_displacements(slab, origin, cand)
            ring = _pick(np.linalg.norm(disp, axis=1), d, 6)
            ring_ang = np.arctan2(disp[ring, 1], disp[ring, 0])
            b_disp = lateral_displacements(slab, origin, np.asarray(zones["2B"]))
            chosen = []
            for ang in np.arctan2(b_disp[:, 1], b_disp[:, 0]) + np.pi / 6:
                diff = np.abs((ring_ang - ang + np.pi) % (2 * np.pi) - np.pi)
                chosen.append(int(cand[ring[int(np.argmin(diff))]]))
            if len(set(chosen)) != 3:
                raise RuntimeError("zone geometry: 3C orbit is not three distinct atoms")
            zones["3C"] = tuple(chosen)
            pos = np.array([origin[0], origin[1], z_top])
            sites.append(Site("fcc", pos, zones))
        self._template_cache[key] = (slab, tuple(sites))
        return slab, tuple(sites)

    def build(self, composition: Mapping[str, float], seed: int = 0) -> Surface:
        self.check_elements(composition)
        a = vegard_lattice_constant(composition)
        template, sites = self._geometry(a)
        atoms = template.copy()
        atoms.set_chemical_symbols(random_occupancy(composition, len(atoms), seed))
        return Surface(
            atoms=atoms,
            sites=sites,
            recipe=self.name,
            composition=dict(composition),
            seed=int(seed),
            zone_layout=self.zone_layout,
        )


register_recipe("fcc111", FCC111Recipe)
