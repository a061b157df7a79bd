"""Doped layered oxyhydroxide (CoOOH-type, R-3m) basal-plane slab.

Geometry (constructive, unrelaxed; Delaplane et al. 1969): hexagonal a = 2.85 Å, c = 13.15 Å
(three CoO2 sheets per c, so sheets are ``c/3 = 4.383`` Å apart); each sheet is a triangular
layer of edge-sharing MO6 octahedra with M-O = 1.90 Å (oxygens ``h = 0.950`` Å above and below
the metal plane, laterally ``a/sqrt3`` away). Sheets follow the R-3m stacking: sheet ``n``
(0 = surface) has its (upper O, metal, lower O) at the hollow positions shifted by
``n * (1/3, 1/3)`` of the cell, so the upper O of sheet ``n+1`` sits right below the lower O of
sheet ``n`` and the proton bridges them linearly (O-H 0.98 Å, H...O 1.50 Å). Each sheet carries
one H per metal, on its upper O, so the slab is stoichiometric MOOH; the top face is the
fully hydroxylated (mu3-OH) basal surface, the bottom face is bare oxo.

The composition is over the metal (cation) sites of the whole slab (Co host plus dopants such as
Ni, Fe, Mn), with exact integer counts and a seeded shuffle; O and H are fixed.

Sites: every metal of the top sheet, kind ``"metal"``, with zones:

- ``site`` 1: the metal itself;
- ``1A`` 6: in-plane nearest metals at ``a`` (each shares two oxygens with the site);
- ``1B`` 6: in-plane next-nearest metals at ``a*sqrt3`` (no shared oxygen);
- ``O`` 6: the coordinating oxygens (3 hydroxyl O above, 3 oxo O below the metal plane).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from ase import Atoms

from activemil.errors import InputError
from activemil.structures.base import (
    Recipe,
    Site,
    Surface,
    occupy_sublattice,
    register_recipe,
)
from activemil.structures.oxide import check_cation_elements, lateral_distances, pick_shell

OXYHYDROXIDE_LAYOUT = (("site", 1), ("1A", 6), ("1B", 6), ("O", 6))

A_HEX = 2.85  # Å, in-plane lattice constant of CoOOH
C_HEX = 13.15  # Å, hexagonal c of R-3m CoOOH (3 sheets)
D_MO = 1.90  # Å, metal-oxygen bond
D_OH = 0.98  # Å, O-H bond



class OxyhydroxideRecipe(Recipe):
    """CoOOH-type (0001) slab of ``layers`` MOOH sheets, ``size = (nx, ny)`` hexagonal cells.

    Args:
        size: in-plane repeats (>= 4 each, so the ``1B`` shell has 6 distinct atoms).
        layers: number of MOOH sheets (1 or 2).
        vacuum: vacuum (Å) on each side of the slab.
    """

    name = "oxyhydroxide"
    site_kinds = ("metal",)
    zone_layout = {"metal": OXYHYDROXIDE_LAYOUT}  # noqa: RUF012 (read-only)
    # UMA's "omat" task (PBE/PBE+U inorganic materials): Co/Ni/Fe/Mn oxides need the +U
    # reference that the "oc20" (RPBE, mostly metallic) data lack.
    uma_task = "omat"

    def __init__(self, size: tuple[int, int] = (4, 4), layers: int = 1,
                 vacuum: float = 10.0) -> None:
        nx, ny = (int(v) for v in size)
        if nx < 4 or ny < 4:
            raise InputError(
                f"oxyhydroxide size {tuple(size)} is too small; zones need at least 4x4 cells."
            )
        if int(layers) not in (1, 2):
            raise InputError(f"oxyhydroxide layers={layers} is not supported; use 1 or 2.")
        if vacuum <= 0:
            raise InputError(f"oxyhydroxide vacuum={vacuum} must be positive (Å on each side).")
        self.size = (nx, ny)
        self.layers = int(layers)
        self.vacuum = float(vacuum)
        self._template: tuple[Atoms, np.ndarray, tuple[Site, ...]] | None = None

    def settings(self) -> dict:
        return {"size": list(self.size), "layers": self.layers, "vacuum": self.vacuum}

    def check_elements(self, composition: Mapping[str, float]) -> None:
        check_cation_elements(composition, self.name)

    def _geometry(self) -> tuple[Atoms, np.ndarray, tuple[Site, ...]]:
        """Template slab (host Co), metal indices ``[n_metals]`` and top-sheet sites."""
        if self._template is not None:
            return self._template
        nx, ny = self.size
        a1 = np.array([A_HEX, 0.0, 0.0])
        a2 = np.array([A_HEX / 2, A_HEX * np.sqrt(3) / 2, 0.0])
        h = float(np.sqrt(D_MO**2 - (A_HEX / np.sqrt(3)) ** 2))  # 0.950 Å
        spacing = C_HEX / 3
        symbols: list[str] = []
        positions: list[np.ndarray] = []
        role: list[str] = []  # "M", "Oup", "Odn", "H" per atom
        sheet: list[int] = []
        for n in range(self.layers):
            s = n / 3.0
            # hollow positions A=(0,0), B=(1/3,1/3), C=(2/3,2/3), all shifted by n/3
            o_up, metal, o_dn = (1 / 3 + s) % 1, (0 + s) % 1, (2 / 3 + s) % 1
            z0 = -n * spacing
            for i in range(nx):
                for j in range(ny):
                    for el, r, f, dz in (("Co", "M", metal, 0.0), ("O", "Oup", o_up, h),
                                         ("O", "Odn", o_dn, -h), ("H", "H", o_up, h + D_OH)):
                        symbols.append(el)
                        positions.append((i + f) * a1 + (j + f) * a2 + np.array([0, 0, z0 + dz]))
                        role.append(r)
                        sheet.append(n)
        pos = np.asarray(positions)
        z_min, z_max = pos[:, 2].min(), pos[:, 2].max()
        pos[:, 2] += self.vacuum - z_min
        cell = np.array([nx * a1, ny * a2, [0.0, 0.0, z_max - z_min + 2 * self.vacuum]])
        slab = Atoms(symbols, positions=pos, cell=cell, pbc=True)
        slab.wrap()
        role_a, sheet_a = np.asarray(role), np.asarray(sheet)
        metals = np.where(role_a == "M")[0]
        top_m = np.where((role_a == "M") & (sheet_a == 0))[0]
        top_o = np.where(((role_a == "Oup") | (role_a == "Odn")) & (sheet_a == 0))[0]
        r_o = A_HEX / np.sqrt(3)
        sites: list[Site] = []
        for t in top_m:
            origin = slab.positions[t]
            zones: dict[str, tuple[int, ...]] = {"site": (int(t),)}
            dist = lateral_distances(slab, origin, top_m)
            zones["1A"] = tuple(int(i) for i in top_m[pick_shell(dist, A_HEX, 6)])
            zones["1B"] = tuple(int(i) for i in top_m[pick_shell(dist, A_HEX * np.sqrt(3), 6)])
            dist_o = lateral_distances(slab, origin, top_o)
            zones["O"] = tuple(int(i) for i in top_o[pick_shell(dist_o, r_o, 6)])
            sites.append(Site("metal", origin.copy(), zones))
        self._template = (slab, metals, tuple(sites))
        return self._template

    def build(self, composition: Mapping[str, float], seed: int = 0) -> Surface:
        """Slab with the metal sites shuffled to exact integer counts of ``composition``."""
        self.check_elements(composition)
        slab, metals, sites = self._geometry()
        atoms = occupy_sublattice(slab, metals, composition, seed)
        return Surface(atoms=atoms, sites=sites, recipe=self.name,
                       composition=dict(composition), seed=int(seed),
                       zone_layout=self.zone_layout)


register_recipe("oxyhydroxide", OxyhydroxideRecipe)
