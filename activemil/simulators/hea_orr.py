"""HE-alloy ORR activity on Ag-Ir-Pd-Pt-Ru(111) from the published per-site DFT data.

Physics (Batchelor et al. 2019; Pedersen et al. 2021; see ``activemil/data/README.md``):

1. Per-site adsorption-energy models fitted on the zone counts of the bundled DFT site files
   (*OH on-top, *O fcc hollow; energies relative to Pt(111), eV). ``model="linear"`` is one
   zone-linear least-squares fit per adsorbate (the published recipe); ``model="piecewise"``
   fits one linear model per on-top element / per fcc ensemble composition.
2. A random (111) surface of ``size x size`` atoms in the top layer plus two subsurface layers
   (periodic index grids, ABC stacking as ``ase.build.fcc111`` lays it out, exact integer
   element counts over all ``3 * size**2`` atoms, shuffled with the seed).
3. Every on-top and fcc site's energy is predicted; *O energies are multiplied by 0.5.
4. Greedy filling, most stable (lowest scaled energy) first; an occupied site blocks the sites
   of the *other* kind it conflicts with (``blocking``, see :data:`BLOCKING_RULES`); sites of
   the same kind never block each other. Only occupied sites carry current.
5. ``j_k = exp(-(|dE_k - G_opt| - 0.86 + eU) / kT)``; activity
   ``j = sum_k 1 / (1/j_k + 1/jD) / n_surface_atoms``.

Grid convention: top-layer atom ``(i, j)`` sits at ``i a1 + j a2`` (``|a1| = |a2| = d``, 60
degrees); layer 2 atom ``(i, j)`` at ``+ 2(a1 + a2)/3``; layer 3 atom ``(i, j)`` at
``+ (a1 + a2)/3``; the fcc hollow ``(i, j)`` lies above layer-3 atom ``(i, j)``. Zone offsets
below are ``(layer, di, dj)`` and reproduce the distances in
:mod:`activemil.structures.fcc111` (tested against that recipe).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from activemil.data import SITE_FILES
from activemil.errors import InputError
from activemil.featurize.sites import read_site_file
from activemil.simulate.oracle import Oracle, stable_seed
from activemil.space import CandidatePool
from activemil.structures.base import exact_counts
from activemil.structures.fcc111 import FCC111Recipe

ELEMENTS: tuple[str, ...] = ("Ag", "Ir", "Pd", "Pt", "Ru")
KB_EV = 8.617333262e-5  # Boltzmann constant, eV/K

#: zone name -> list of (layer, di, dj); layer 0 = surface, 1 = subsurface, 2 = third layer
ONTOP_ZONES: dict[str, list[tuple[int, int, int]]] = {
    "site": [(0, 0, 0)],
    "z1A": [(0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1), (0, 1, -1), (0, -1, 1)],
    "z2A": [(1, -1, -1), (1, 0, -1), (1, -1, 0)],
    "z3B": [(2, 0, 0), (2, -1, 0), (2, 0, -1)],
}
FCC_ZONES: dict[str, list[tuple[int, int, int]]] = {
    "ens": [(0, 0, 0), (0, 1, 0), (0, 0, 1)],
    "z1A": [(0, 1, 1), (0, -1, 1), (0, 1, -1)],
    "z1B": [(0, 2, 0), (0, 0, 2), (0, -1, 0), (0, 0, -1), (0, 2, -1), (0, -1, 2)],
    "z2A": [(1, 0, 0), (1, -1, 0), (1, 0, -1)],
    "z2B": [(1, -1, -1), (1, 1, -1), (1, -1, 1)],
    "z3C": [(2, 1, 0), (2, -1, 1), (2, 0, -1)],
}

#: blocking rules: offsets (di, dj) from an on-top site (i, j) to the fcc hollows it blocks
#: (and, symmetrically, an occupied hollow blocks the on-top sites that list it).
#: ``ensemble``: *OH on an atom and *O on a hollow may not share a surface atom (3 hollows).
#: ``extended``: also the hollows whose first shell (1A) holds the atom (6 hollows).
#: ``none``: no blocking; every site is occupied and counts.
BLOCKING_RULES: dict[str, list[tuple[int, int]]] = {
    "ensemble": [(0, 0), (-1, 0), (0, -1)],
    "extended": [(0, 0), (-1, 0), (0, -1), (-1, -1), (1, -1), (-1, 1)],
    "none": [],
}


def _onehot_columns(prefix: str, elements: Sequence[str]) -> list[str]:
    return [f"{prefix}_{el}" for el in elements]


def _shift(grid: np.ndarray, di: int, dj: int) -> np.ndarray:
    """``out[..., i, j] = grid[..., i + di, j + dj]`` on a periodic grid (last two axes)."""
    return np.roll(grid, shift=(-di, -dj), axis=(-2, -1))


@dataclass(frozen=True)
class SiteModelFit:
    """A fitted per-site energy model and its accuracy.

    Attributes:
        adsorbate: ``"OH"`` or ``"O"``; ``kind``: ``"ontop"`` or ``"fcc"``.
        model: ``"linear"`` or ``"piecewise"``.
        columns: feature columns in the order of the site file (zone-major counts).
        coef: ``linear``: ``[F]``; ``piecewise``: group key -> ``[F_zone + 1]``.
        mae_train, mae_cv: mean absolute errors in eV (in-sample, 5-fold cross-validated).
        n: number of DFT sites.
    """

    adsorbate: str
    kind: str
    model: str
    columns: tuple[str, ...]
    coef: object
    mae_train: float
    mae_cv: float
    n: int


def _group_keys(x_center: np.ndarray) -> np.ndarray:
    """Group key per row from the centre-zone counts ``[N, E]``: a base-4 integer code."""
    return (x_center.astype(np.int64) * (4 ** np.arange(x_center.shape[1]))).sum(axis=1)


def _fit_linear(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return coef


def _fit_piecewise(
    x_center: np.ndarray, x_zone: np.ndarray, y: np.ndarray, base: np.ndarray, ridge: float
) -> dict[int, np.ndarray]:
    """Per centre composition (on-top element / fcc ensemble), a ridge-regularised linear model
    of zone counts + intercept fitted to the residual of the global zone-linear fit ``base``,
    so sparsely sampled groups shrink toward the global model."""
    x_full = np.hstack([x_center, x_zone])
    resid = y - x_full @ base
    keys = _group_keys(x_center)
    out: dict[int, np.ndarray] = {}
    for key in np.unique(keys):
        m = keys == key
        a = np.hstack([x_zone[m], np.ones((m.sum(), 1))])
        reg = ridge * np.eye(a.shape[1])
        reg[-1, -1] = 1e-9  # do not shrink the group intercept
        out[int(key)] = np.linalg.solve(a.T @ a + reg, a.T @ resid[m])
    return out


def _predict_piecewise(
    coef: Mapping[int, np.ndarray],
    x_center: np.ndarray,
    x_zone: np.ndarray,
    base: np.ndarray,
) -> np.ndarray:
    """Global zone-linear prediction plus the per-group correction (0 for unseen groups)."""
    keys = _group_keys(x_center)
    out = np.hstack([x_center, x_zone]) @ base
    for key in np.unique(keys):
        c = coef.get(int(key))
        if c is None:
            continue
        m = keys == key
        out[m] += x_zone[m] @ c[:-1] + c[-1]
    return out


class SiteEnergyModel:
    """Zone-count regression for one adsorbate; fitted on a bundled DFT site file.

    Args:
        which: ``"OH_ontop"`` or ``"O_fcc"`` (keys of :data:`activemil.data.SITE_FILES`).
        model: ``"linear"`` (zone-linear least squares) or ``"piecewise"``.
        ridge: ridge penalty of the piecewise per-group corrections (on count features).
    """

    def __init__(self, which: str, model: str = "piecewise", ridge: float = 30.0) -> None:
        if which not in SITE_FILES:
            raise InputError(f"Unknown site file {which!r}; use one of {', '.join(SITE_FILES)}.")
        if model not in ("linear", "piecewise"):
            raise InputError(f"Unknown site model {model!r}; use 'linear' or 'piecewise'.")
        self.which, self.model, self.ridge = which, model, float(ridge)
        self.kind = "ontop" if which == "OH_ontop" else "fcc"
        self.adsorbate = "OH" if which == "OH_ontop" else "O"
        zones = ONTOP_ZONES if self.kind == "ontop" else FCC_ZONES
        self.columns = tuple(c for z in zones for c in _onehot_columns(z, ELEMENTS))
        # one parser for site files (activemil.featurize.sites); bundled files keep the few
        # rows whose zone sums are off by relaxation, as the published fit does
        sites = read_site_file(which, FCC111Recipe, ELEMENTS)
        self.x = sites.zone_counts(self.kind, FCC111Recipe)
        self.y = sites.energy.astype(np.float64)
        self.n_center = len(ELEMENTS)
        self.coef_linear = _fit_linear(self.x, self.y)
        self.coef_piecewise = (
            _fit_piecewise(
                self.x[:, : self.n_center], self.x[:, self.n_center :], self.y,
                self.coef_linear, self.ridge,
            )
            if model == "piecewise"
            else None
        )

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Energies ``[N]`` (eV, relative to Pt(111)) for zone counts ``[N, F]``."""
        if self.model == "linear":
            return x @ self.coef_linear
        return _predict_piecewise(
            self.coef_piecewise, x[:, : self.n_center], x[:, self.n_center :], self.coef_linear
        )

    def _cv_mae(self, folds: int = 5, seed: int = 0) -> float:
        rng = np.random.default_rng(seed)
        fold = rng.permutation(len(self.y)) % folds
        err = np.empty_like(self.y)
        for k in range(folds):
            tr, te = fold != k, fold == k
            lin = _fit_linear(self.x[tr], self.y[tr])
            if self.model == "linear":
                err[te] = self.x[te] @ lin - self.y[te]
            else:
                pw = _fit_piecewise(
                    self.x[tr, : self.n_center], self.x[tr, self.n_center :], self.y[tr], lin,
                    self.ridge,
                )
                pred = _predict_piecewise(
                    pw, self.x[te, : self.n_center], self.x[te, self.n_center :], lin
                )
                err[te] = pred - self.y[te]
        return float(np.mean(np.abs(err)))

    @cached_property
    def fit_report(self) -> SiteModelFit:
        """Fit accuracy (in-sample and 5-fold CV MAE, eV)."""
        coef = self.coef_linear if self.model == "linear" else self.coef_piecewise
        return SiteModelFit(
            adsorbate=self.adsorbate,
            kind=self.kind,
            model=self.model,
            columns=self.columns,
            coef=coef,
            mae_train=float(np.mean(np.abs(self.predict_features(self.x) - self.y))),
            mae_cv=self._cv_mae(),
            n=len(self.y),
        )


@dataclass(frozen=True)
class SurfaceResult:
    """One simulated surface.

    Attributes:
        activity: ORR activity per surface atom (dimensionless current density, ``jD = 1``).
        grid: element index per atom, int8 ``[3, n, n]`` (layer 0 = surface), into ``elements``.
        elements: element order of ``grid``.
        energy_ontop: *OH on-top energies ``[n, n]`` (eV, relative to Pt(111)), site ``(i, j)``
            on top-layer atom ``(i, j)``.
        energy_fcc: *O fcc energies ``[n, n]`` (eV, relative to Pt(111), unscaled), hollow
            ``(i, j)`` above layer-3 atom ``(i, j)``.
        occupied_ontop, occupied_fcc: bool ``[n, n]`` sites holding an adsorbate after filling.
        contrib_ontop, contrib_fcc: per-site contributions ``[n, n]`` to ``activity`` (0 for
            unoccupied sites); ``contrib_ontop.sum() + contrib_fcc.sum() == activity``.
    """

    activity: float
    grid: np.ndarray
    elements: tuple[str, ...]
    energy_ontop: np.ndarray
    energy_fcc: np.ndarray
    occupied_ontop: np.ndarray
    occupied_fcc: np.ndarray
    contrib_ontop: np.ndarray
    contrib_fcc: np.ndarray

    @property
    def n_surface_atoms(self) -> int:
        return int(self.grid.shape[1] * self.grid.shape[2])


class HEAORRSimulator(Oracle):
    """ORR activity oracle for Ag-Ir-Pd-Pt-Ru(111) compositions with per-site ground truth.

    Args:
        size: top-layer edge in atoms (``size**2`` surface atoms); 96 as published.
        model: per-site energy model, ``"linear"`` or ``"piecewise"``.
        blocking: one of :data:`BLOCKING_RULES`.
        g_opt: optimal adsorption energy relative to Pt(111), eV.
        eu: electrode potential times e, eV. ``temperature``: K. ``j_d``: diffusion limit.
        o_scale: factor on *O energies (0.5 as published).
        seed: base seed; the surface of a composition uses ``stable_seed(seed, composition)``.
        repeats: surfaces averaged per composition in :meth:`evaluate`.
    """

    name = "hea-orr"
    direction = "maximize"
    target = "activity"

    def __init__(
        self,
        size: int = 96,
        model: str = "piecewise",
        blocking: str = "ensemble",
        g_opt: float = 0.10,
        eu: float = 0.82,
        temperature: float = 298.15,
        j_d: float = 1.0,
        o_scale: float = 0.5,
        seed: int = 0,
        repeats: int = 1,
    ) -> None:
        if int(size) < 4:
            raise InputError(f"Surface size {size} is too small; use at least 4 (96 published).")
        if blocking not in BLOCKING_RULES:
            raise InputError(
                f"Unknown blocking rule {blocking!r}; use one of {', '.join(BLOCKING_RULES)}."
            )
        if int(repeats) < 1:
            raise InputError(f"repeats={repeats} must be at least 1.")
        self.size, self.blocking, self.seed, self.repeats = int(size), blocking, int(seed), int(repeats)
        self.g_opt, self.eu, self.temperature = float(g_opt), float(eu), float(temperature)
        self.j_d, self.o_scale = float(j_d), float(o_scale)
        self.oh = SiteEnergyModel("OH_ontop", model)
        self.o = SiteEnergyModel("O_fcc", model)
        self.model = model

    # ------------------------------------------------------------------ settings and reports
    def settings(self) -> dict:
        """JSON-serialisable settings (enter result provenance)."""
        return {
            "size": self.size, "model": self.model, "blocking": self.blocking,
            "g_opt": self.g_opt, "eu": self.eu, "temperature": self.temperature,
            "j_d": self.j_d, "o_scale": self.o_scale, "seed": self.seed, "repeats": self.repeats,
        }

    def fit_report(self) -> pd.DataFrame:
        """Per-adsorbate fit accuracy: MAE in eV (in-sample and 5-fold CV)."""
        rows = []
        for m in (self.oh, self.o):
            r = m.fit_report
            rows.append({"adsorbate": r.adsorbate, "site": r.kind, "model": r.model, "n": r.n,
                         "mae_train_eV": r.mae_train, "mae_cv_eV": r.mae_cv})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ surfaces
    def _composition_vector(self, composition: Mapping[str, float]) -> dict[str, float]:
        comp = {str(k): float(v) for k, v in composition.items() if float(v) > 0}
        unknown = sorted(set(comp) - set(ELEMENTS))
        if unknown:
            raise InputError(
                f"The hea-orr simulator covers {','.join(ELEMENTS)} only; composition contains "
                f"{','.join(unknown)}: restrict the design space to those elements."
            )
        if not comp:
            raise InputError("Composition is empty; give at least one element fraction > 0.")
        return comp

    def random_grid(self, composition: Mapping[str, float], seed: int) -> np.ndarray:
        """Element index grid int8 ``[3, n, n]`` with exact integer counts, shuffled by ``seed``."""
        comp = self._composition_vector(composition)
        n_atoms = 3 * self.size * self.size
        counts = exact_counts(comp, n_atoms)
        flat = np.concatenate(
            [np.full(counts[el], ELEMENTS.index(el), np.int8) for el in sorted(counts)]
        )
        rng = np.random.default_rng(seed)
        return flat[rng.permutation(n_atoms)].reshape(3, self.size, self.size)

    @staticmethod
    def zone_counts(grid: np.ndarray, zones: Mapping[str, list[tuple[int, int, int]]]) -> np.ndarray:
        """Zone counts of every site, float64 ``[n*n, n_zones*E]`` (zone-major, site-file order).

        ``grid`` is ``[3, n, n]`` element indices; site ``(i, j)`` is row ``i * n + j``.
        """
        onehot = (grid[None] == np.arange(len(ELEMENTS))[:, None, None, None]).astype(np.float64)
        cols = []
        for offsets in zones.values():
            acc = np.zeros((len(ELEMENTS),) + grid.shape[1:])
            for layer, di, dj in offsets:
                acc += _shift(onehot[:, layer], di, dj)
            cols.append(acc.reshape(len(ELEMENTS), -1).T)
        return np.hstack(cols)

    def site_energies(self, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(*OH on-top, *O fcc) energies, each ``[n, n]`` eV relative to Pt(111), *O unscaled."""
        shape = grid.shape[1:]
        e_oh = self.oh.predict_features(self.zone_counts(grid, ONTOP_ZONES)).reshape(shape)
        e_o = self.o.predict_features(self.zone_counts(grid, FCC_ZONES)).reshape(shape)
        return e_oh, e_o

    def fill(self, e_oh: np.ndarray, e_o_scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy filling, most stable first, with cross-kind blocking.

        Equivalent to visiting all ``2 n^2`` sites in ascending energy (ties: on-top before fcc,
        then row-major) and occupying each site not yet blocked; computed in parallel rounds
        (a site is decided as soon as it precedes all its undecided conflicting neighbours).

        Returns bool ``(occupied_ontop [n, n], occupied_fcc [n, n])``.
        """
        n = e_oh.shape[0]
        offsets = BLOCKING_RULES[self.blocking]
        if not offsets:
            return np.ones_like(e_oh, bool), np.ones_like(e_o_scaled, bool)
        energies = np.concatenate([e_oh.ravel(), e_o_scaled.ravel()])
        order = np.argsort(energies, kind="stable")
        rank = np.empty(2 * n * n, np.int64)
        rank[order] = np.arange(2 * n * n)
        rank_oh, rank_o = rank[: n * n].reshape(n, n), rank[n * n :].reshape(n, n)
        big = np.iinfo(np.int64).max
        undecided_oh = np.ones((n, n), bool)
        undecided_o = np.ones((n, n), bool)
        occ_oh = np.zeros((n, n), bool)
        occ_o = np.zeros((n, n), bool)
        while undecided_oh.any() or undecided_o.any():
            r_oh = np.where(undecided_oh, rank_oh, big)
            r_o = np.where(undecided_o, rank_o, big)
            # lowest undecided rank among each site's conflicting neighbours of the other kind
            nb_for_oh = np.full((n, n), big)
            nb_for_o = np.full((n, n), big)
            for di, dj in offsets:
                nb_for_oh = np.minimum(nb_for_oh, _shift(r_o, di, dj))
                nb_for_o = np.minimum(nb_for_o, _shift(r_oh, -di, -dj))
            new_oh = undecided_oh & (rank_oh < nb_for_oh)
            new_o = undecided_o & (rank_o < nb_for_o)
            occ_oh |= new_oh
            occ_o |= new_o
            undecided_oh &= ~new_oh
            undecided_o &= ~new_o
            blocked_o = np.zeros((n, n), bool)
            blocked_oh = np.zeros((n, n), bool)
            for di, dj in offsets:
                blocked_o |= _shift(new_oh, -di, -dj)
                blocked_oh |= _shift(new_o, di, dj)
            undecided_oh &= ~blocked_oh
            undecided_o &= ~blocked_o
        return occ_oh, occ_o

    def rates(self, energies: np.ndarray) -> np.ndarray:
        """Diffusion-limited per-site rates ``1 / (1/j_k + 1/jD)`` for (scaled) energies, eV."""
        kt = KB_EV * self.temperature
        j_k = np.exp(-(np.abs(energies - self.g_opt) - 0.86 + self.eu) / kt)
        return 1.0 / (1.0 / j_k + 1.0 / self.j_d)

    def surface(self, composition: Mapping[str, float], seed: int | None = None) -> SurfaceResult:
        """Simulate one surface of ``composition`` (``{element: fraction}``).

        ``seed=None`` uses ``stable_seed(self.seed, composition)`` so the same composition
        always gets the same surface.
        """
        comp = self._composition_vector(composition)
        if seed is None:
            seed = self.composition_seed(comp, 0)
        grid = self.random_grid(comp, seed)
        e_oh, e_o = self.site_energies(grid)
        e_o_scaled = self.o_scale * e_o
        occ_oh, occ_o = self.fill(e_oh, e_o_scaled)
        n_surf = grid.shape[1] * grid.shape[2]
        c_oh = np.where(occ_oh, self.rates(e_oh), 0.0) / n_surf
        c_o = np.where(occ_o, self.rates(e_o_scaled), 0.0) / n_surf
        return SurfaceResult(
            activity=float(c_oh.sum() + c_o.sum()),
            grid=grid,
            elements=ELEMENTS,
            energy_ontop=e_oh,
            energy_fcc=e_o,
            occupied_ontop=occ_oh,
            occupied_fcc=occ_o,
            contrib_ontop=c_oh,
            contrib_fcc=c_o,
        )

    def composition_seed(self, composition: Mapping[str, float], repeat: int) -> int:
        key = ",".join(f"{el}{composition.get(el, 0.0):.6f}" for el in ELEMENTS)
        return stable_seed("hea-orr", self.seed, key, repeat)

    def activity(self, composition: Mapping[str, float]) -> float:
        """Mean activity over ``repeats`` surfaces of ``composition``."""
        comp = self._composition_vector(composition)
        return float(
            np.mean([self.surface(comp, self.composition_seed(comp, r)).activity
                     for r in range(self.repeats)])
        )

    # ------------------------------------------------------------------ Oracle protocol
    def evaluate(self, pool: CandidatePool, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Activities ``[len(rows)]`` of the pool compositions at ``rows``."""
        unknown = sorted(set(pool.elements) - set(ELEMENTS))
        if unknown:
            raise InputError(
                f"The hea-orr simulator covers {','.join(ELEMENTS)} only; the pool has "
                f"{','.join(unknown)}: choose a design space over those elements."
            )
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty(len(rows))
        for k, r in enumerate(rows):
            out[k] = self.activity(pool.composition(int(r)))
        return out
