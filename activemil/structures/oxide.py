"""Generic mixed-metal oxide: the cation sublattice of a rocksalt (100) slab.

Why rocksalt (100): the archetypal high-entropy oxide, (Mg,Co,Ni,Cu,Zn)O (Rost et al., Nat.
Commun. 2015), is a single-phase rocksalt with *one* cation sublattice on which every metal is
octahedral and equivalent, so "composition over cation sites" is exact and needs no site-
preference model (spinels and perovskites have two cation sublattices). (100) is the non-polar,
lowest-energy rocksalt facet (MgO, NiO, CoO), so the slab needs no dipole correction or
reconstruction. See docs/encoders.md.

Geometry (unrelaxed, a = Vegard mean of the binary rocksalt lattice constants, Å): square
surface cell of side ``d = a/sqrt2`` repeated ``size = (nx, ny)``; ``layers`` (001) layers
``a/2`` apart, each with ``nx*ny`` cations and ``nx*ny`` oxygens in a checkerboard; a cation sits
on top of an oxygen of the layer below. The composition is over all cations of the slab (exact
integer counts, seeded shuffle); oxygens are fixed.

Sites: every cation of the top layer, kind ``"metal"``, with zones (distances from the site
cation; ``d = a/sqrt2`` is the cation-cation nearest-neighbour distance):

- ``site`` 1: the cation itself;
- ``1A`` 4: in-plane nearest cations at ``d`` (they share an oxygen, 90 deg M-O-M);
- ``1B`` 4: in-plane next-nearest cations at ``a`` (linear 180 deg M-O-M);
- ``2A`` 4: second-layer cations at ``d`` (the subsurface part of the 12-cation first shell);
- ``O`` 5: the coordinating oxygens (4 in-plane at ``a/2`` plus 1 below), square pyramid.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from activemil.errors import InputError
from activemil.structures.base import (
    Recipe,
    Site,
    Surface,
    lateral_displacements,
    occupy_sublattice,
    register_recipe,
)

OXIDE_LAYOUT = (("site", 1), ("1A", 4), ("1B", 4), ("2A", 4), ("O", 5))

#: Experimental lattice constants (Å) of binary rocksalt monoxides MO (room temperature; CuO
#: and ZnO are not rocksalt at ambient pressure: the values are the rocksalt forms seen in the
#: (Mg,Co,Ni,Cu,Zn)O entropy-stabilised oxide literature and high-pressure ZnO).
ROCKSALT_A: dict[str, float] = {
    "Mg": 4.212, "Ca": 4.811, "Sr": 5.160, "Ba": 5.523, "Mn": 4.445, "Fe": 4.326,
    "Co": 4.260, "Ni": 4.177, "Cu": 4.170, "Zn": 4.280, "Cd": 4.695, "Ti": 4.180,
    "V": 4.090, "Eu": 5.144,
}
_O_CRYSTAL_RADIUS = 1.26  # Å, Shannon crystal radius of O2- (pymatgen's ionic_radii convention)

#: p-block and noble-gas elements that never occupy a cation site of an oxide
_NONMETALS = {"H", "He", "C", "N", "O", "F", "Ne", "P", "S", "Cl", "Ar", "Se", "Br", "Kr", "I",
              "Xe", "Rn"}


def check_cation_elements(composition: Mapping[str, float], recipe: str) -> None:
    """Raise :class:`InputError` unless every element is a known metal or metalloid symbol."""
    for el in composition:
        if el not in atomic_numbers or el == "X":
            raise InputError(
                f"Unknown element {el!r} in the {recipe} composition; use element symbols "
                "like Co or Ni."
            )
        if el in _NONMETALS:
            raise InputError(
                f"{el} cannot occupy a cation site of the {recipe} recipe; its composition is "
                "over the metal sites only, so list metals such as Co, Ni, Fe and leave O and H "
                "out."
            )


def rocksalt_lattice_constant(element: str) -> float:
    """Rocksalt MO lattice constant (Å): tabulated, else ``2 * (r_M + r_O)`` from Shannon
    crystal radii of the 2+ ion (or the ion with the lowest positive charge pymatgen knows)."""
    if element in ROCKSALT_A:
        return ROCKSALT_A[element]
    from pymatgen.core import Element

    radii = {q: r for q, r in Element(element).ionic_radii.items() if q > 0}
    if not radii:
        raise InputError(
            f"No rocksalt lattice constant or ionic radius is known for {element}; pass "
            "lattice_constant=... to the oxide recipe."
        )
    q = 2 if 2 in radii else min(radii)
    return 2.0 * (radii[q] + _O_CRYSTAL_RADIUS)


def lateral_distances(atoms: Atoms, origin: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """True minimum-image in-plane distance ``[len(indices)]`` (Å) from ``origin`` ``[2 or 3]``.

    Unlike rounding each fractional coordinate, this also finds the nearest image in oblique
    (e.g. 60 deg hexagonal) cells: it takes the shortest of the 3x3 neighbouring images.
    """
    disp = lateral_displacements(atoms, origin, indices)  # [N, 2], per-coordinate rounding
    cell2 = atoms.cell.array[:2, :2]
    shifts = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], float) @ cell2  # [9, 2]
    return np.linalg.norm(disp[:, None, :] + shifts[None, :, :], axis=2).min(axis=1)


def pick_shell(dist: np.ndarray, target: float, count: int, tol: float = 0.05) -> np.ndarray:
    """Positions in ``dist`` within ``tol`` Å of ``target``; exactly ``count`` or RuntimeError."""
    idx = np.where(np.abs(dist - target) < tol)[0]
    if len(idx) != count:
        raise RuntimeError(
            f"zone geometry: found {len(idx)} atoms at {target:.3f} Å, want {count}"
        )
    return idx


class CationSublatticeOxideRecipe(Recipe):
    """Rocksalt (100) mixed-metal oxide slab; composition over the cation sublattice.

    Args:
        size: ``(nx, ny)`` repeats of the ``a/sqrt2`` square surface cell (>= 3 each).
        layers: number of (001) MO layers (>= 2, the ``2A`` zone needs a subsurface layer).
        vacuum: vacuum (Å) on each side of the slab.
        lattice_constant: fixed rocksalt ``a`` (Å); default: Vegard mean of
            :func:`rocksalt_lattice_constant` over the cation fractions.
    """

    name = "oxide"
    site_kinds = ("metal",)
    zone_layout = {"metal": OXIDE_LAYOUT}  # noqa: RUF012 (read-only, as in fcc111)
    # UMA's "omat" task (PBE/PBE+U inorganic materials) rather than "oc20" (RPBE, no +U,
    # mostly metallic slabs): transition-metal oxides need the +U reference.
    uma_task = "omat"

    def __init__(
        self,
        size: tuple[int, int] = (4, 4),
        layers: int = 3,
        vacuum: float = 10.0,
        lattice_constant: float | None = None,
    ) -> None:
        nx, ny = (int(v) for v in size)
        if nx < 3 or ny < 3:
            raise InputError(
                f"oxide size {tuple(size)} is too small; zones need at least 3x3 surface cells."
            )
        if int(layers) < 2:
            raise InputError(f"oxide layers={layers} is too few; use at least 2.")
        if vacuum <= 0:
            raise InputError(f"oxide vacuum={vacuum} must be positive (Å on each side).")
        self.size = (nx, ny)
        self.layers = int(layers)
        self.vacuum = float(vacuum)
        self.lattice_constant = None if lattice_constant is None else float(lattice_constant)
        self._template_cache: dict[float, tuple[Atoms, np.ndarray, tuple[Site, ...]]] = {}

    def settings(self) -> dict:
        return {"size": list(self.size), "layers": self.layers, "vacuum": self.vacuum,
                "lattice_constant": self.lattice_constant}

    def check_elements(self, composition: Mapping[str, float]) -> None:
        check_cation_elements(composition, self.name)

    def lattice(self, composition: Mapping[str, float]) -> float:
        """Rocksalt lattice constant ``a`` (Å) for ``composition`` (Vegard's law)."""
        if self.lattice_constant is not None:
            return self.lattice_constant
        total = sum(composition.values())
        return float(sum(x / total * rocksalt_lattice_constant(el)
                         for el, x in composition.items() if x > 0))

    def _geometry(self, a: float) -> tuple[Atoms, np.ndarray, tuple[Site, ...]]:
        """Template slab, cation indices ``[n_cations]`` and sites for lattice constant ``a``."""
        key = round(a, 6)
        if key in self._template_cache:
            return self._template_cache[key]
        nx, ny = self.size
        d = a / np.sqrt(2)
        dz = a / 2
        symbols: list[str] = []
        positions: list[np.ndarray] = []
        layer_of: list[int] = []
        for layer in range(self.layers):  # layer 0 = surface
            shift = 0.5 * (layer % 2)
            for i in range(nx):
                for j in range(ny):
                    for el, off in (("Mg", shift), ("O", 0.5 - shift)):
                        positions.append(np.array([(i + off) * d, (j + off) * d, -layer * dz]))
                        symbols.append(el)
                        layer_of.append(layer)
        pos = np.asarray(positions)
        pos[:, 2] += self.vacuum + (self.layers - 1) * dz
        cell = [nx * d, ny * d, (self.layers - 1) * dz + 2 * self.vacuum]
        slab = Atoms(symbols, positions=pos, cell=cell, pbc=True)
        sym = np.asarray(symbols)
        lay = np.asarray(layer_of)
        cations = np.where(sym != "O")[0]
        metal = {k: np.where((sym != "O") & (lay == k))[0] for k in (0, 1)}
        oxy = {k: np.where((sym == "O") & (lay == k))[0] for k in (0, 1)}
        sites: list[Site] = []
        for t in metal[0]:
            origin = slab.positions[t]
            zones: dict[str, tuple[int, ...]] = {"site": (int(t),)}
            for zone, cand, r, n in (("1A", metal[0], d, 4), ("1B", metal[0], a, 4),
                                     ("2A", metal[1], dz, 4)):
                dist = lateral_distances(slab, origin, cand)
                zones[zone] = tuple(int(i) for i in cand[pick_shell(dist, r, n)])
            d0 = lateral_distances(slab, origin, oxy[0])
            d1 = lateral_distances(slab, origin, oxy[1])
            zones["O"] = tuple(int(i) for i in oxy[0][pick_shell(d0, dz, 4)]) + tuple(
                int(i) for i in oxy[1][pick_shell(d1, 0.0, 1)])
            sites.append(Site("metal", origin.copy(), zones))
        out = (slab, cations, tuple(sites))
        self._template_cache[key] = out
        return out

    def build(self, composition: Mapping[str, float], seed: int = 0) -> Surface:
        """Slab with the cations shuffled to exact integer counts of ``composition``."""
        self.check_elements(composition)
        slab, cations, sites = self._geometry(self.lattice(composition))
        atoms = occupy_sublattice(slab, cations, composition, seed)
        return Surface(atoms=atoms, sites=sites, recipe=self.name,
                       composition=dict(composition), seed=int(seed),
                       zone_layout=self.zone_layout)


register_recipe("oxide", CationSublatticeOxideRecipe)
