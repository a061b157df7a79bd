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
        if nx < 4 or ny < 4 or nl < 3:
            raise InputError(
                f"fcc111 size {size} is too small; zones need at least 4x4 atoms and 3 layers."
            )
        self.size = (nx, ny, nl)
        self.vacuum = float(vacuum)
        self._topo: tuple | None = None

    def settings(self) -> dict:
        return {"size": list(self.size), "vacuum": self.vacuum}

    def check_elements(self, composition: Mapping[str, float]) -> None:
        for el in composition:
            if el not in atomic_numbers:
                raise InputError(f"Unknown element {el!r} in composition; use symbols like Pt.")

    def _topology(self) -> tuple[tuple[str, int, dict[str, tuple[int, ...]]], ...]:
        """Site kinds, anchor atoms and zone atom indices; independent of the lattice constant
        because ase orders fcc111 atoms the same way for every ``a`` (computed once)."""
        if self._topo is not None:
            return self._topo
        slab = fcc111("Cu", size=self.size, a=1.0, vacuum=self.vacuum, periodic=True)
        tags = slab.get_tags()  # 1 = top layer
        layers = {k: np.where(tags == k)[0] for k in (1, 2, 3)}
        d = 1.0 / np.sqrt(2)
        topo: list[tuple[str, int, dict[str, tuple[int, ...]]]] = []

        def zone(origin: np.ndarray, layer: int, r: float, n: int) -> tuple[int, ...]:
            cand = layers[layer]
            dist = np.linalg.norm(lateral_displacements(slab, origin, cand), axis=1)
            return tuple(int(i) for i in cand[_pick(dist, r, n, tol=0.02)])

        for t in layers[1]:
            origin = slab.positions[t]
            zones = {"site": (int(t),), "1A": zone(origin, 1, d, 6),
                     "2A": zone(origin, 2, d / np.sqrt(3), 3), "3B": zone(origin, 3, d / np.sqrt(3), 3)}
            topo.append(("ontop", int(t), zones))
        for h in layers[3]:
            origin = slab.positions[h]
            zones = {"ens": zone(origin, 1, d / np.sqrt(3), 3),
                     "1A": zone(origin, 1, 2 * d / np.sqrt(3), 3),
                     "1B": zone(origin, 1, np.sqrt(7 / 3) * d, 6),
                     "2A": zone(origin, 2, d / np.sqrt(3), 3),
                     "2B": zone(origin, 2, 2 * d / np.sqrt(3), 3)}
            # 3C: the C3 orbit of first-shell layer-3 atoms rotated +30 deg from the 2B atoms.
            cand = layers[3]
            disp = lateral_displacements(slab, origin, cand)
            ring = _pick(np.linalg.norm(disp, axis=1), d, 6, tol=0.02)
            ring_ang = np.arctan2(disp[ring, 1], disp[ring, 0])
            b_disp = lateral_displacements(slab, origin, np.asarray(zones["2B"]))
            chosen = []
            for ang in np.arctan2(b_disp[:, 1], b_disp[:, 0]) + np.pi / 6:
                diff = np.abs((ring_ang - ang + np.pi) % (2 * np.pi) - np.pi)
                chosen.append(int(cand[ring[int(np.argmin(diff))]]))
            if len(set(chosen)) != 3:
                raise RuntimeError("zone geometry: 3C orbit is not three distinct atoms")
            zones["3C"] = tuple(chosen)
            topo.append(("fcc", int(h), zones))
        self._topo = tuple(topo)
        return self._topo

    def build(self, composition: Mapping[str, float], seed: int = 0) -> Surface:
        self.check_elements(composition)
        a = vegard_lattice_constant(composition)
        atoms = fcc111("Cu", size=self.size, a=a, vacuum=self.vacuum, periodic=True)
        atoms.set_chemical_symbols(random_occupancy(composition, len(atoms), seed))
        z_top = float(atoms.positions[atoms.get_tags() == 1, 2].max())
        sites = []
        for kind, anchor, zones in self._topology():
            pos = atoms.positions[anchor].copy()
            pos[2] = z_top
            sites.append(Site(kind, pos, zones))
        return Surface(
            atoms=atoms,
            sites=tuple(sites),
            recipe=self.name,
            composition=dict(composition),
            seed=int(seed),
            zone_layout=self.zone_layout,
        )


register_recipe("fcc111", FCC111Recipe)
