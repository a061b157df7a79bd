"""Deep ensembles: M members of one kind with different seeds, combined by averaging quantiles."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import numpy as np

from activemil.errors import InputError
from activemil.featurize.bags import BagSet
from activemil.featurize.sites import SiteSet
from activemil.surrogates.base import Surrogate, check_training_data
from activemil.surrogates.gp import GPSurrogate, HybridSurrogate
from activemil.surrogates.mil import MILRegressor
from activemil.surrogates.prediction import Prediction
from activemil.surrogates.sabatier import SabatierRegressor

#: member classes with a site head (accept ``fit(..., sites=)`` and ``predict_sites``)
_SITE_MODELS = (MILRegressor, HybridSurrogate)

#: surrogate kinds -> (member class, fixed constructor settings)
KINDS: dict[str, tuple[type[Surrogate], dict]] = {
    "mil": (MILRegressor, {"pooling": "attention"}),
    "conjunctive": (MILRegressor, {"pooling": "conjunctive"}),
    "mean": (MILRegressor, {"pooling": "mean"}),
    "max": (MILRegressor, {"pooling": "max"}),
    "gp": (GPSurrogate, {}),
    "hybrid": (HybridSurrogate, {}),
    "sabatier": (SabatierRegressor, {}),
}


def make_member(kind: str, seed: int, settings: dict) -> Surrogate:
    """One unfitted member of ``kind`` (see :data:`KINDS`) with ``seed`` and ``settings``."""
    if kind not in KINDS:
        raise InputError(f"Unknown surrogate kind {kind!r}; choose one of {', '.join(KINDS)}.")
    cls, fixed = KINDS[kind]
    clash = sorted(set(fixed) & set(settings))
    if clash:
        raise InputError(
            f"Setting {clash[0]!r} is fixed by kind {kind!r}; pick the kind instead of passing it."
        )
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(settings) - set(params))
        if unknown:
            hint = " (site data need a MIL kind)" if any(u.startswith("site_") for u in unknown) else ""
            raise InputError(
                f"Kind {kind!r} does not take setting(s) {', '.join(unknown)}{hint}; drop them or "
                "choose another kind."
            )
    return cls(seed=seed, **fixed, **settings)


def combine_predictions(preds: Sequence[Prediction], contribution_mean: str = "arithmetic") -> Prediction:
    """Pool members: concatenate ``member_quantiles`` and average quantiles, attention,
    embedding and contributions (quantile averaging keeps them sorted).

    ``contribution_mean="geometric"``: contributions ``[B,K]`` are the geometric mean of the
    members' magnitudes with the sign of their arithmetic mean (0 where any member is 0, e.g.
    padding), and attention is each site's share of that; for models whose contributions are
    rates (``SabatierRegressor``), so averaging them is averaging log-rates."""
    if contribution_mean not in ("arithmetic", "geometric"):
        raise ValueError(f"contribution_mean {contribution_mean!r}: arithmetic or geometric")
    first = preds[0]
    members = np.concatenate([p.member_quantiles for p in preds], axis=0)  # [M,B,9]

    def avg(name: str) -> np.ndarray | None:
        vals = [getattr(p, name) for p in preds]
        if any(v is None for v in vals):
            return None
        return np.mean(np.stack(vals), axis=0)

    contrib = avg("contributions")
    if contribution_mean == "geometric" and contrib is not None:
        mag = np.abs(np.stack([p.contributions for p in preds]))  # type: ignore[misc]  # [M,B,K]
        with np.errstate(divide="ignore"):
            geo = np.exp(np.log(mag).mean(axis=0))
        contrib = np.sign(contrib) * np.where((mag > 0).all(axis=0), geo, 0.0)
        attention = np.abs(contrib) / np.maximum(np.abs(contrib).sum(axis=1, keepdims=True), 1e-300)
    else:
        attention = avg("attention")
    return Prediction(
        ids=first.ids,
        quantiles=members.mean(axis=0),
        member_quantiles=members,
        attention=attention,
        embedding=avg("embedding"),  # type: ignore[arg-type]
        strata=first.strata,
        contributions=contrib,
    )


class Ensemble(Surrogate):
    """M members of ``kind`` trained on the same bags with seeds ``seed, seed+1, ...``.

    ``predict`` averages member quantiles (Vincentisation) and keeps every member's quantiles in
    ``Prediction.member_quantiles [M,B,9]``. MIL members differ in initialisation, inner
    early-stopping split and minibatch order.
    """

    kind = "ensemble"

    def __init__(self, kind: str = "mil", n_members: int = 3, seed: int = 0, **settings: object) -> None:
        if n_members < 1:
            raise InputError(f"An ensemble needs n_members >= 1, got {n_members}.")
        self.member_kind = kind
        self.n_members = int(n_members)
        self.seed = int(seed)
        self._settings = dict(settings)
        self.members: list[Surrogate] = [
            make_member(kind, self.seed + m, self._settings) for m in range(self.n_members)
        ]
        self.n_train = 0

    @property
    def contribution_mean(self) -> str:  # type: ignore[override]
        """The members' :attr:`Surrogate.contribution_mean`."""
        return type(self.members[0]).contribution_mean

    def settings(self) -> dict:
        return {"kind": self.member_kind, "n_members": self.n_members, "seed": self.seed,
                **self._settings}

    def fit(
        self, bags: BagSet, y: np.ndarray, on_member: Callable[[], None] | None = None,
        sites: SiteSet | None = None,
    ) -> Self:
        """Fit every member; ``on_member()`` is called after each (progress). ``sites``: DFT
        sites for MIL members (see :meth:`MILRegressor.fit`)."""
        y = check_training_data(bags, y, min_bags=2)
        if sites is not None and not all(isinstance(m, _SITE_MODELS) for m in self.members):
            raise InputError(
                f"Site data supervise a MIL instance head; kind {self.member_kind!r} has none, so "
                "choose mil, conjunctive, mean, max or hybrid (or drop the site data)."
            )
        for m in self.members:
            if sites is not None:
                assert isinstance(m, _SITE_MODELS)
                m.fit(bags, y, sites=sites)
            else:
                m.fit(bags, y)
            if on_member is not None:
                on_member()
        self.n_train = len(y)
        return self

    def predict(self, bags: BagSet, on_member: Callable[[], None] | None = None) -> Prediction:
        """Average the members' predictions; ``on_member()`` is called after each."""
        self._check_fitted()
        preds = []
        for m in self.members:
            preds.append(m.predict(bags))
            if on_member is not None:
                on_member()
        return combine_predictions(preds, self.contribution_mean)

    def predict_sites(self, sites: SiteSet) -> np.ndarray:
        """Members' mean site-energy prediction ``[S]`` (eV)."""
        self._check_fitted()
        if not all(isinstance(m, _SITE_MODELS) for m in self.members):
            raise InputError(f"Kind {self.member_kind!r} has no site head; use a MIL kind.")
        return np.mean([m.predict_sites(sites) for m in self.members], axis=0)  # type: ignore[union-attr]

    def _save(self, path: Path) -> dict:
        for i, m in enumerate(self.members):
            m.save(path / f"member_{i}")
        return {}

    @classmethod
    def _load(cls, path: Path, meta: dict) -> Self:
        obj = cls(**meta["settings"])
        obj.members = [Surrogate.load(path / f"member_{i}") for i in range(obj.n_members)]
        return obj
