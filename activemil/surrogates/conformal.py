"""Conformalized quantile regression (Romano, Patterson & Candès 2019) around ensembles.

Calibration methods:

- ``none``: one M-ensemble fitted on all bags, no offsets.
- ``split`` (``split-mondrian``): hold out ``split_fraction`` of the bags, fit the ensemble on
  the rest, score the held-out bags.
- ``cv`` (``cv-mondrian``, the default): K-fold cross-conformal; for each fold an M-ensemble is
  trained on the other folds and scores its held-out fold, so every training bag gets one
  out-of-fold score per alpha.

Scores ``s = max(q_lo - y, y - q_hi)`` per alpha; ``tau`` is the
``ceil((n+1)(1-alpha))``-th smallest of the ``n`` scores (the ``ceil((n+1)(1-alpha))/n``
empirical quantile). ``*-mondrian`` computes ``tau`` per stratum and falls back to the pooled
``tau`` when a stratum has fewer than ``min_stratum_scores`` scores (or too few for the level).
When even the pooled scores are too few for a level (``n < 1/alpha - 1``) ``tau`` is the
largest score and :attr:`ConformalMIL.notes` says so: the finite-sample guarantee is lost.

Final predictor for ``cv``: the average over the K fold-ensembles (K x M members, no refit).
Each fold-ensemble saw ``(K-1)/K`` of the data, exactly the models whose errors were scored,
so the offsets match the models they are applied to; averaging K of them is slightly better
than any one of them, which errs on the conservative side. A refit on all bags would need M
more fits and would be less well matched to the scores.

Applying ``tau``: the matching quantile pair moves to ``(lo - tau, hi + tau)`` for each alpha,
the median is kept, and the 9 quantiles are re-sorted so they never cross. The same offsets are
applied to every member's quantiles.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Self

import numpy as np

from activemil.errors import InputError
from activemil.featurize.bags import BagSet
from activemil.featurize.sites import SiteSet
from activemil.progress import ProgressBar, progress_enabled
from activemil.surrogates.base import Surrogate, check_training_data, load_arrays, save_arrays
from activemil.surrogates.ensemble import Ensemble, combine_predictions
from activemil.surrogates.names import CALIBRATIONS
from activemil.surrogates.prediction import ALPHAS, Prediction, interval_indices


def cqr_scores(quantiles: np.ndarray, y: np.ndarray, alphas: tuple[float, ...] = ALPHAS) -> np.ndarray:
    """CQR conformity scores ``[n, A]`` of ``quantiles [n,9]`` for targets ``y [n]``."""
    out = np.empty((len(y), len(alphas)))
    for a, alpha in enumerate(alphas):
        i, j = interval_indices(alpha)
        out[:, a] = np.maximum(quantiles[:, i] - y, y - quantiles[:, j])
    return out


def conformal_tau(scores: np.ndarray, alpha: float) -> float:
    """The ``ceil((n+1)(1-alpha))``-th smallest score; ``inf`` if that exceeds ``n``."""
    s = np.sort(np.asarray(scores, np.float64))
    n = len(s)
    k = math.ceil((n + 1) * (1 - alpha) - 1e-12)
    if n == 0 or k > n:
        return math.inf
    return float(s[k - 1])


def apply_offsets(quantiles: np.ndarray, tau: np.ndarray, alphas: tuple[float, ...] = ALPHAS) -> np.ndarray:
    """Widen ``quantiles [...,B,9]`` by ``tau [B,A]`` per alpha pair and sort along the last axis."""
    q = np.array(quantiles, dtype=np.float64, copy=True)
    for a, alpha in enumerate(alphas):
        i, j = interval_indices(alpha)
        q[..., i] -= tau[:, a]
        q[..., j] += tau[:, a]
    return np.sort(q, axis=-1)


class ConformalMIL(Surrogate):
    """Conformally calibrated ensemble surrogate (any kind: mil, conjunctive, mean, max, gp, hybrid).

    Args:
        kind: member kind. calibration: one of :data:`CALIBRATIONS`.
        n_folds: K for cross-conformal. n_members: M members per ensemble.
        split_fraction: calibration share for split conformal.
        min_stratum_scores: Mondrian fallback threshold (scores per stratum).
        seed: seed of folds and members (fold k uses member seeds ``seed + 100 k + m``).
        **settings: member settings (see :class:`~activemil.surrogates.mil.MILRegressor`).

    Attributes after :meth:`fit`: ``oof_median [n]`` (out-of-fold medians, NaN for bags that were
    never held out, i.e. the proper training part in split mode and all bags with ``none``),
    ``oof_quantiles [n,9]``, ``scores [n,A]``, ``tau [A]`` (pooled), ``stratum_tau``
    ``{stratum: [A]}`` (strata that have their own tau), ``train_embedding [n,d]`` and
    ``train_y [n]``, ``train_strata [n]``, ``notes`` (list of str).
    """

    kind = "conformal"

    def __init__(
        self,
        kind: str = "mil",
        calibration: str = "cv-mondrian",
        n_folds: int = 5,
        n_members: int = 3,
        split_fraction: float = 0.25,
        min_stratum_scores: int = 15,
        seed: int = 0,
        **settings: object,
    ) -> None:
        if calibration not in CALIBRATIONS:
            raise InputError(
                f"Unknown calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}."
            )
        if n_folds < 2:
            raise InputError(f"Cross-conformal needs n_folds >= 2, got {n_folds}; use 5.")
        if not 0 < split_fraction < 1:
            raise InputError(f"split_fraction must be in (0, 1), got {split_fraction}; use 0.25.")
        self.member_kind = kind
        self.calibration = calibration
        self.n_folds = int(n_folds)
        self.n_members = int(n_members)
        self.split_fraction = float(split_fraction)
        self.min_stratum_scores = int(min_stratum_scores)
        self.seed = int(seed)
        self._settings = dict(settings)
        self.alphas: tuple[float, ...] = ALPHAS
        # validates kind and settings early
        Ensemble(kind, n_members=self.n_members, seed=self.seed, **self._settings)
        self.models: list[Ensemble] = []
        self.tau = np.zeros(len(self.alphas))
        self.stratum_tau: dict[int, np.ndarray] = {}
        self.notes: list[str] = []
        self.n_train = 0

    @property
    def mondrian(self) -> bool:
        return self.calibration.endswith("mondrian")

    def settings(self) -> dict:
        return {
            "kind": self.member_kind,
            "calibration": self.calibration,
            "n_folds": self.n_folds,
            "n_members": self.n_members,
            "split_fraction": self.split_fraction,
            "min_stratum_scores": self.min_stratum_scores,
            "seed": self.seed,
            **self._settings,
        }

    def _ensemble(self, fold: int) -> Ensemble:
        return Ensemble(self.member_kind, self.n_members, self.seed + 100 * fold, **self._settings)

    # ------------------------------------------------------------------ fitting
    def fit(self, bags: BagSet, y: np.ndarray, sites: SiteSet | None = None) -> Self:
        """Fit the ensembles and the conformal offsets on ``bags`` and ``y [n]``.

        ``sites``: DFT sites supervising every MIL member's site head (all folds see all
        sites: they are not bag labels, so conformal scores stay out-of-fold in the bags)."""
        method = self.calibration
        min_bags = 2 if method == "none" else max(4, self.n_folds if method.startswith("cv") else 4)
        y = check_training_data(bags, y, min_bags=min_bags)
        n = len(y)
        rng = np.random.default_rng(self.seed)
        oof = np.full((n, 9), np.nan)
        self.models = []
        self.notes = []
        n_fits = self.n_members * (min(self.n_folds, n) if method.startswith("cv") else 1)
        bar = ProgressBar(progress_enabled(), n_fits, f"training {n_fits} networks on {n}",
                          unit="nets")
        step = bar.advance
        with bar:
            if method == "none":
                self.models.append(self._ensemble(0).fit(bags, y, on_member=step, sites=sites))
            elif method.startswith("split"):
                perm = rng.permutation(n)
                n_cal = min(n - 2, max(2, round(self.split_fraction * n)))
                cal, rest = np.sort(perm[:n_cal]), np.sort(perm[n_cal:])
                ens = self._ensemble(0).fit(bags.subset(rest), y[rest], on_member=step,
                                            sites=sites)
                oof[cal] = ens.predict(bags.subset(cal)).quantiles
                self.models.append(ens)
            else:
                folds = np.array_split(rng.permutation(n), min(self.n_folds, n))
                for k, held in enumerate(folds):
                    held = np.sort(held)
                    rest = np.setdiff1d(np.arange(n), held)
                    ens = self._ensemble(k).fit(bags.subset(rest), y[rest], on_member=step,
                                               sites=sites)
                    oof[held] = ens.predict(bags.subset(held)).quantiles
                    self.models.append(ens)
        self.oof_quantiles = oof
        self.oof_median = oof[:, 4].copy()
        scored = np.isfinite(oof[:, 4])
        self.scores = np.full((n, len(self.alphas)), np.nan)
        self.scores[scored] = cqr_scores(oof[scored], y[scored], self.alphas)
        self._set_taus(self.scores[scored], np.asarray(bags.strata)[scored])
        self.train_y = y.copy()
        self.train_strata = np.asarray(bags.strata, np.int64).copy()
        self.n_train = n
        self.train_embedding = self.predict(bags).embedding
        return self

    def _set_taus(self, scores: np.ndarray, strata: np.ndarray) -> None:
        a_n = len(self.alphas)
        self.tau = np.zeros(a_n)
        self.stratum_tau = {}
        if len(scores) == 0:
            return
        for a, alpha in enumerate(self.alphas):
            t = conformal_tau(scores[:, a], alpha)
            if not math.isfinite(t):
                t = float(scores[:, a].max())
                self.notes.append(
                    f"Only {len(scores)} calibration scores: too few for alpha={alpha} "
                    f"(need {math.ceil(1 / alpha) - 1}); used the largest score, so coverage is "
                    "not guaranteed."
                )
            self.tau[a] = t
        if not self.mondrian:
            return
        for s in np.unique(strata):
            sel = scores[strata == s]
            if len(sel) < self.min_stratum_scores:
                continue
            taus = np.array([conformal_tau(sel[:, a], al) for a, al in enumerate(self.alphas)])
            taus = np.where(np.isfinite(taus), taus, self.tau)  # per-level fallback
            self.stratum_tau[int(s)] = taus

    def recalibrate(self, calibration: str, min_stratum_scores: int | None = None) -> Self:
        """Recompute the offsets from the stored scores, switching between pooled and per-stratum
        tau (``cv`` <-> ``cv-mondrian``, ``split`` <-> ``split-mondrian``) without refitting."""
        self._check_fitted()
        base = self.calibration.removesuffix("-mondrian")
        if calibration.removesuffix("-mondrian") != base or calibration not in CALIBRATIONS:
            raise InputError(
                f"Cannot recalibrate a {self.calibration!r} surrogate as {calibration!r} without "
                f"refitting; choose {base!r} or '{base}-mondrian'."
            )
        self.calibration = calibration
        if min_stratum_scores is not None:
            self.min_stratum_scores = int(min_stratum_scores)
        self.notes = []
        scored = np.isfinite(self.scores[:, 0])
        self._set_taus(self.scores[scored], self.train_strata[scored])
        return self

    def tau_for(self, strata: np.ndarray) -> np.ndarray:
        """Offsets ``[B,A]`` for bags in ``strata [B]`` (pooled tau for strata without their own)."""
        out = np.tile(self.tau, (len(strata), 1))
        for s, t in self.stratum_tau.items():
            out[np.asarray(strata) == s] = t
        return out

    # ---------------------------------------------------------------- prediction
    def predict(self, bags: BagSet) -> Prediction:
        self._check_fitted()
        n_nets = sum(m.n_members for m in self.models)
        with ProgressBar(progress_enabled() and len(bags) > 1000, n_nets,
                         f"predicting {len(bags):,} bags", unit="nets") as bar:
            raw = combine_predictions([m.predict(bags, on_member=bar.advance) for m in self.models],
                                      self.models[0].contribution_mean)
        tau = self.tau_for(np.asarray(bags.strata))
        raw.quantiles = apply_offsets(raw.quantiles, tau, self.alphas)
        raw.member_quantiles = apply_offsets(raw.member_quantiles, tau, self.alphas)
        return raw

    def predict_sites(self, sites: SiteSet) -> np.ndarray:
        """Mean site-energy prediction ``[S]`` (eV) over all fold ensembles."""
        self._check_fitted()
        return np.mean([m.predict_sites(sites) for m in self.models], axis=0)

    # ---------------------------------------------------------------- save/load
    def _save(self, path: Path) -> dict:
        for k, m in enumerate(self.models):
            m.save(path / f"model_{k}")
        keys = np.array(sorted(self.stratum_tau), dtype=np.int64)
        save_arrays(
            path,
            tau=self.tau,
            stratum_keys=keys,
            stratum_tau=np.array([self.stratum_tau[int(k)] for k in keys]).reshape(-1, len(self.alphas)),
            oof_quantiles=self.oof_quantiles,
            scores=self.scores,
            train_embedding=self.train_embedding,
            train_y=self.train_y,
            train_strata=self.train_strata,
        )
        return {"n_models": len(self.models), "notes": self.notes, "alphas": list(self.alphas)}

    @classmethod
    def _load(cls, path: Path, meta: dict) -> Self:
        obj = cls(**meta["settings"])
        loaded = [Surrogate.load(path / f"model_{k}") for k in range(int(meta["n_models"]))]
        obj.models = [m for m in loaded if isinstance(m, Ensemble)]
        arr = load_arrays(path)
        obj.alphas = tuple(float(a) for a in meta["alphas"])
        obj.tau = arr["tau"]
        obj.stratum_tau = {int(k): t for k, t in zip(arr["stratum_keys"], arr["stratum_tau"])}
        obj.oof_quantiles = arr["oof_quantiles"]
        obj.oof_median = obj.oof_quantiles[:, 4].copy()
        obj.scores = arr["scores"]
        obj.train_embedding = arr["train_embedding"]
        obj.train_y = arr["train_y"]
        obj.train_strata = arr["train_strata"]
        obj.notes = list(meta["notes"])
        return obj


def make_surrogate(kind: str = "mil", **settings: object) -> Surrogate:
    """A conformally calibrated surrogate of ``kind``: ``mil`` (gated attention, default),
    ``conjunctive``, ``mean``, ``max``, ``gp``, ``hybrid``, ``sabatier`` (per-site volcano of a
    zone-linear descriptor; ``zones`` features only, see :mod:`activemil.surrogates.sabatier`).

    Settings: ``calibration`` (``none|split|split-mondrian|cv|cv-mondrian``, default
    ``cv-mondrian``), ``n_folds`` (5), ``n_members`` (3; 1 for ``gp``, whose fit is
    deterministic), ``split_fraction``, ``min_stratum_scores``, ``seed``, and member settings
    (network/training settings; ``baseline``, ``residual`` for ``hybrid``).
    """
    if kind == "gp":
        settings.setdefault("n_members", 1)
    return ConformalMIL(kind=kind, **settings)  # type: ignore[arg-type]
