"""Recipes turn a composition into an atomistic surface with random occupancy and sites.

Contract: ``Recipe.build(composition, seed)`` returns a :class:`Surface` whose element counts are
exact integers (largest-remainder rounding of ``fraction * n_atoms``), identical for the same
seed, and whose :class:`Site` objects list the atom indices of every neighbour zone in the
recipe's fixed zone layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from activemil.errors import InputError


@dataclass(frozen=True)
class Site:
    """An adsorption site.

    Attributes:
        kind: site kind, one of the recipe's ``site_kinds`` (e.g. ``"ontop"``, ``"fcc"``).
        position: Cartesian position of the adsorption point ``[3]`` in Å (surface plane).
        zones: zone name -> atom indices into ``Surface.atoms``; names and sizes follow
            ``Recipe.zone_layout[kind]``.
    """

    kind: str
    position: np.ndarray
    zones: Mapping[str, tuple[int, ...]]

    @property
    def center(self) -> tuple[int, ...]:
        """Atom indices of the site's first zone (the on-top atom, the hollow's ensemble)."""
        return next(iter(self.zones.values()))


@dataclass(frozen=True)
class Surface:
    """A generated surface: the ase ``Atoms`` plus its sites.

    Attributes:
        atoms: the slab (periodic in x, y; vacuum along z).
        sites: every adsorption site the recipe defines on the top layer.
        recipe: recipe name; ``composition``: ``{element: fraction}``; ``seed``: occupancy seed.
        zone_layout: kind -> ((zone name, zone size), ...), copied from the recipe.
    """

    atoms: Atoms
    sites: tuple[Site, ...]
    recipe: str
    composition: Mapping[str, float]
    seed: int
    zone_layout: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)

    @property
    def site_kinds(self) -> tuple[str, ...]:
        """Site kinds in the recipe's order (the order of ``zone_layout``)."""
        return tuple(self.zone_layout)

    def symbols(self) -> np.ndarray:
        return np.asarray(self.atoms.get_chemical_symbols())

    def zone_counts(self, site: Site, elements: Sequence[str]) -> np.ndarray:
        """Element counts per zone of ``site``: int64 ``[n_zones * E]``, zone-major."""
        symbols = self.symbols()
        out = []
        for zone, _size in self.zone_layout[site.kind]:
            zs = symbols[list(site.zones[zone])]
            out.extend(int((zs == el).sum()) for el in elements)
        return np.asarray(out, dtype=np.int64)


def exact_counts(composition: Mapping[str, float], n_atoms: int) -> dict[str, int]:
    """Integer element counts summing to ``n_atoms`` (largest-remainder rounding).

    Ties in the remainder are broken by element symbol so the result is deterministic.
    """
    items = sorted((el, float(x)) for el, x in composition.items() if x > 0)
    if not items:
        raise InputError("Composition is empty; give at least one element with a fraction > 0.")
    total = sum(x for _, x in items)
    raw = [(el, x / total * n_atoms) for el, x in items]
    counts = {el: int(np.floor(v)) for el, v in raw}
    left = n_atoms - sum(counts.values())
    order = sorted(raw, key=lambda t: (-(t[1] - np.floor(t[1])), t[0]))
    for el, _ in order[:left]:
        counts[el] += 1
    return counts


def random_occupancy(composition: Mapping[str, float], n_sites: int, seed: int) -> list[str]:
    """Shuffle exact element counts over ``n_sites`` positions with a seeded generator."""
    counts = exact_counts(composition, n_sites)
    symbols = [el for el, c in sorted(counts.items()) for _ in range(c)]
    rng = np.random.default_rng(seed)
    return [symbols[i] for i in rng.permutation(n_sites)]


def occupy_sublattice(
    template: Atoms, indices: Sequence[int] | np.ndarray, composition: Mapping[str, float],
    seed: int,
) -> Atoms:
    """Copy of ``template`` with the atoms at ``indices`` (one sublattice, e.g. the cations)
    shuffled to exact integer counts of ``composition``; other atoms are kept."""
    atoms = template.copy()
    symbols = np.asarray(atoms.get_chemical_symbols(), dtype=object)
    symbols[np.asarray(indices)] = random_occupancy(composition, len(indices), seed)
    atoms.set_chemical_symbols(list(symbols))
    return atoms


class Recipe(ABC):
    """Builds surfaces for compositions. Subclass it and :func:`register_recipe` your own."""

    name: str = ""
    #: site kinds this recipe produces, in the order bags list them
    site_kinds: tuple[str, ...] = ()
    #: kind -> ((zone name, zone size), ...)
    zone_layout: Mapping[str, tuple[tuple[str, int], ...]] = {}
    #: task name passed to UMA for this kind of system (e.g. "oc20" for catalyst surfaces)
    uma_task: str = "oc20"

    @abstractmethod
    def build(self, composition: Mapping[str, float], seed: int = 0) -> Surface:
        """Build a surface with random occupancy for ``composition`` (fractions sum to 1)."""

    def check_elements(self, composition: Mapping[str, float]) -> None:
        """Raise :class:`InputError` if the composition names an element this recipe refuses."""

    def settings(self) -> dict:
        """JSON-serialisable settings that change the generated surfaces (part of cache keys)."""
        return {}


_REGISTRY: dict[str, Callable[..., Recipe]] = {}


def register_recipe(name: str, factory: Callable[..., Recipe]) -> None:
    """Register a recipe factory under ``name`` (e.g. ``register_recipe("fcc100", MyRecipe)``)."""
    _REGISTRY[name] = factory


def available_recipes() -> list[str]:
    return sorted(_REGISTRY)


def get_recipe(name: str, **settings) -> Recipe:
    """Instantiate the registered recipe ``name`` with ``settings``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"Unknown recipe {name!r}; choose one of {', '.join(available_recipes())} or "
            "register your own with activemil.structures.register_recipe."
        ) from None
    return factory(**settings)


def lateral_displacements(atoms: Atoms, origin: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Minimum-image in-plane displacement ``[len(indices), 2]`` (Å) from ``origin`` ``[2 or 3]``.

    Assumes the first two cell vectors span the periodic surface plane (z is vacuum).
    """
    cell2 = atoms.cell.array[:2, :2]
    inv = np.linalg.inv(cell2)
    d = atoms.positions[indices, :2] - np.asarray(origin)[None, :2]
    frac = d @ inv
    frac -= np.round(frac)
    return frac @ cell2
