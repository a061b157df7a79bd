"""Composition baselines: a BoTorch ``SingleTaskGP`` (and ridge regression) on the composition
vector, the GP as a :class:`Surrogate`, and the hybrid MIL-on-GP-residuals surrogate."""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Self

import numpy as np
import torch
from scipy.stats import norm

from activemil.errors import InputError
from activemil.featurize.bags import BagSet
from activemil.featurize.sites import SiteSet
from activemil.surrogates.base import (
    Surrogate,
    check_bags,
    check_training_data,
    composition_columns,
    load_arrays,
    save_arrays,
)
from activemil.surrogates.mil import MILRegressor
from activemil.surrogates.prediction import QUANTILE_LEVELS, Prediction

BASELINES: tuple[str, ...] = ("gp", "linear")
_Z = norm.ppf(np.asarray(QUANTILE_LEVELS))
_CACHE: OrderedDict[str, CompositionBaseline] = OrderedDict()
_CACHE_SIZE = 64


class CompositionBaseline:
    """Regression of ``y`` on the composition vector ``X [n,E]`` (fractions).

    ``kind="gp"``: BoTorch ``SingleTaskGP`` (Matern-5/2 ARD, standardised outcome, fitted by
    marginal likelihood). ``kind="linear"``: ridge regression with intercept, constant
    residual standard deviation. :meth:`predict` returns predictive mean and standard deviation
    (including observation noise) ``[n]`` in target units.
    """

    def __init__(self, kind: str = "gp", ridge: float = 1e-3) -> None:
        if kind not in BASELINES:
            raise InputError(f"Unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}.")
        self.kind = kind
        self.ridge = float(ridge)
        self.model = None
        self.coef: np.ndarray | None = None
        self.sigma = 1.0
        self.train_X: np.ndarray | None = None
        self.train_y: np.ndarray | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.float64)
        self.train_X, self.train_y = X, y
        if self.kind == "linear":
            A = np.hstack([X, np.ones((len(X), 1))])
            reg = self.ridge * np.eye(A.shape[1])
            reg[-1, -1] = 0.0
            self.coef = np.linalg.solve(A.T @ A + reg, A.T @ y)
            resid = y - A @ self.coef
            dof = max(1, len(y) - A.shape[1])
            self.sigma = float(max(np.sqrt((resid**2).sum() / dof), 1e-9))
        else:
            self.model = _fit_gp(X, y)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, np.float64)
        if self.kind == "linear":
            assert self.coef is not None
            mean = np.hstack([X, np.ones((len(X), 1))]) @ self.coef
            return mean, np.full(len(X), self.sigma)
        assert self.model is not None
        means, sds = [], []
        with torch.no_grad():
            for start in range(0, len(X), 4096):
                post = self.model.posterior(torch.as_tensor(X[start : start + 4096]),
                                            observation_noise=True)
                means.append(post.mean.squeeze(-1).numpy())
                sds.append(post.variance.clamp_min(1e-18).sqrt().squeeze(-1).numpy())
        return np.concatenate(means), np.concatenate(sds)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON fields and arrays that rebuild this baseline."""
        assert self.train_X is not None and self.train_y is not None
        arrays = {"base_X": self.train_X, "base_y": self.train_y}
        if self.kind == "linear":
            assert self.coef is not None
            arrays["base_coef"] = self.coef
        else:
            assert self.model is not None
            for k, v in self.model.state_dict().items():
                arrays[f"gp::{k}"] = v.detach().numpy()
        return {"baseline": self.kind, "ridge": self.ridge, "sigma": self.sigma}, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> CompositionBaseline:
        obj = cls(meta["baseline"], meta["ridge"])
        obj.train_X, obj.train_y = arrays["base_X"], arrays["base_y"]
        obj.sigma = float(meta["sigma"])
        if obj.kind == "linear":
            obj.coef = arrays["base_coef"]
        else:
            model = _make_gp(obj.train_X, obj.train_y)
            sd = {k[4:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("gp::")}
            model.load_state_dict(sd)
            model.eval()
            obj.model = model
        return obj


def _make_gp(X: np.ndarray, y: np.ndarray):  # -> SingleTaskGP
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize

    return SingleTaskGP(
        torch.as_tensor(X, dtype=torch.float64),
        torch.as_tensor(y, dtype=torch.float64).unsqueeze(-1),
        outcome_transform=Standardize(m=1),
    )


def _fit_gp(X: np.ndarray, y: np.ndarray):
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _make_gp(X, y)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(mll)
    model.eval()
    return model


def fit_baseline(kind: str, X: np.ndarray, y: np.ndarray) -> CompositionBaseline:
    """Fit (or fetch from a small in-process cache: fits are deterministic) a baseline."""
    key = hashlib.sha1(
        kind.encode() + np.ascontiguousarray(X, np.float64).tobytes()
        + np.ascontiguousarray(y, np.float64).tobytes()
    ).hexdigest()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    model = CompositionBaseline(kind).fit(X, y)
    _CACHE[key] = model
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return model


def composition(bags: BagSet) -> np.ndarray:
    """Composition fractions ``[B,E]`` (first E side columns, E from ``meta["elements"]``)."""
    return np.asarray(bags.side[:, : composition_columns(bags)], np.float64)


class GPSurrogate(Surrogate):
    """BoTorch ``SingleTaskGP`` on the composition vector with Gaussian quantiles.

    Quantiles are ``mean + z_l * sd`` of the predictive distribution (observation noise
    included); the embedding is the composition vector itself; there is no attention.
    """

    kind = "gp"

    def __init__(self, seed: int = 0, baseline: str = "gp") -> None:
        if baseline not in BASELINES:
            raise InputError(f"Unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}.")
        self.seed = int(seed)
        self.baseline = baseline
        self.model: CompositionBaseline | None = None
        self.n_train = 0
        self.n_cols = 0

    def settings(self) -> dict:
        return {"seed": self.seed, "baseline": self.baseline}

    def fit(self, bags: BagSet, y: np.ndarray) -> Self:
        y = check_training_data(bags, y, min_bags=3)
        X = composition(bags)
        self.n_cols = X.shape[1]
        self.model = fit_baseline(self.baseline, X, y)
        self.n_train = len(y)
        return self

    def predict(self, bags: BagSet) -> Prediction:
        self._check_fitted()
        assert self.model is not None
        check_bags(bags)
        X = composition(bags)
        if X.shape[1] != self.n_cols:
            raise InputError(
                f"Bags have {X.shape[1]} composition columns but the GP was trained on "
                f"{self.n_cols}; use the same design space as for training."
            )
        mean, sd = self.model.predict(X)
        q = mean[:, None] + sd[:, None] * _Z[None, :]
        return Prediction(
            ids=tuple(bags.ids),
            quantiles=q,
            member_quantiles=q[None],
            attention=None,
            embedding=X,
            strata=np.asarray(bags.strata, np.int64),
        )

    def _save(self, path: Path) -> dict:
        assert self.model is not None
        meta, arrays = self.model.state()
        save_arrays(path, **arrays)
        return {"baseline_state": meta, "n_cols": self.n_cols}

    @classmethod
    def _load(cls, path: Path, meta: dict) -> Self:
        obj = cls(**meta["settings"])
        obj.model = CompositionBaseline.from_state(meta["baseline_state"], load_arrays(path))
        obj.n_cols = int(meta["n_cols"])
        return obj


class HybridSurrogate(Surrogate):
    """MIL network on the residuals of a composition baseline (GP or ridge).

    ``y_hat = baseline_mean(composition) + MIL quantiles of the residual``. With
    ``residual="oof"`` (default) the MIL learns ``K``-fold out-of-fold residuals of the baseline
    (what the baseline misses on unseen compositions); ``"in-sample"`` uses the residuals of the
    baseline fitted on everything (small for an interpolating GP).

    Args:
        baseline: ``gp`` or ``linear``. residual: ``oof`` or ``in-sample``.
        residual_folds: folds for out-of-fold residuals. pooling, seed, **settings: as
            :class:`~activemil.surrogates.mil.MILRegressor`.
    """

    kind = "hybrid"

    def __init__(
        self,
        baseline: str = "gp",
        residual: str = "oof",
        residual_folds: int = 5,
        pooling: str = "attention",
        seed: int = 0,
        **settings: object,
    ) -> None:
        if baseline not in BASELINES:
            raise InputError(f"Unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}.")
        if residual not in ("oof", "in-sample"):
            raise InputError(f"Unknown residual mode {residual!r}; choose 'oof' or 'in-sample'.")
        self.baseline = baseline
        self.residual = residual
        self.residual_folds = int(residual_folds)
        self.pooling = pooling
        self.seed = int(seed)
        self._settings = dict(settings)
        self.mil = MILRegressor(pooling=pooling, seed=seed, **settings)
        self.base: CompositionBaseline | None = None
        self.n_train = 0

    def settings(self) -> dict:
        return {
            "baseline": self.baseline,
            "residual": self.residual,
            "residual_folds": self.residual_folds,
            "pooling": self.pooling,
            "seed": self.seed,
            **self._settings,
        }

    def fit(self, bags: BagSet, y: np.ndarray, sites: SiteSet | None = None) -> Self:
        """Fit the baseline, then the MIL on its residuals; ``sites``: DFT sites for the
        MIL's site head (see :meth:`MILRegressor.fit`)."""
        y = check_training_data(bags, y, min_bags=4)
        X = composition(bags)
        self.base = fit_baseline(self.baseline, X, y)
        n = len(y)
        folds = min(self.residual_folds, n // 2)
        if self.residual == "oof" and folds >= 2:
            oof = np.empty(n)
            # folds depend only on n so every ensemble member shares (cached) baseline fits
            parts = np.array_split(np.random.default_rng(12345).permutation(n), folds)
            for held in parts:
                rest = np.setdiff1d(np.arange(n), held)
                oof[held] = fit_baseline(self.baseline, X[rest], y[rest]).predict(X[held])[0]
            resid = y - oof
        else:
            resid = y - self.base.predict(X)[0]
        self.mil.fit(bags, resid, sites=sites)
        self.n_train = n
        return self

    def predict_sites(self, sites: SiteSet) -> np.ndarray:
        """Site-head energies ``[S]`` (eV) of the residual MIL."""
        self._check_fitted()
        return self.mil.predict_sites(sites)

    def predict(self, bags: BagSet) -> Prediction:
        self._check_fitted()
        assert self.base is not None
        p = self.mil.predict(bags)
        mean = self.base.predict(composition(bags))[0]
        p.quantiles = p.quantiles + mean[:, None]
        p.member_quantiles = p.member_quantiles + mean[None, :, None]
        return p

    def _save(self, path: Path) -> dict:
        assert self.base is not None
        self.mil.save(path / "mil")
        meta, arrays = self.base.state()
        save_arrays(path, **arrays)
        return {"baseline_state": meta}

    @classmethod
    def _load(cls, path: Path, meta: dict) -> Self:
        obj = cls(**meta["settings"])
        mil = MILRegressor.load(path / "mil")
        assert isinstance(mil, MILRegressor)
        obj.mil = mil
        obj.base = CompositionBaseline.from_state(meta["baseline_state"], load_arrays(path))
        return obj
