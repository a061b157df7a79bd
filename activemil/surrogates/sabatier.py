"""SabatierRegressor: a per-site volcano model learned from bag labels (``zones`` features).

Activity on a random-alloy surface is a sum of per-site rates, each a Sabatier volcano of that
site's adsorption energy, and that energy is close to linear in the site's zone counts once the
centre (on-top atom, or fcc three-atom ensemble) is known (Batchelor et al., Joule 2019;
Clausen et al.). This member has exactly that form and nothing more:

- descriptor ``e_k = W . phi(x_k) + c`` (dimensionless, units of kT) on an interaction basis
  ``phi`` of the site's zone counts: every zone count, plus the centre zone's counts times
  every count of the same site kind (:func:`centre_basis`);
- rate ``r_k = exp(-sqrt(e_k^2 + tau^2))`` capped smoothly at ``exp(D)`` (diffusion limit);
- bag value ``y_hat = a + b * sum_k w_k r_k`` (``w`` the bag's instance weights; ``a, b``
  learned with the rest; solving them in closed form at each step, variable projection, was
  measured worse: it lets ``b < 0`` flip the volcano into wrong-physics minima).

Its per-site contributions ``b * w_k * r_k`` are what hypotheses read. Measured on hea-orr
(``benchmarks/site_recovery.py``), a flexible per-site MLP under the same pooling
interpolates 200 bag means in many ways and ranks sites no better than random, while this
low-capacity form recovers them; see ``docs/design-decisions.md``.

Fitting is non-convex (the volcano is symmetric): each member runs Adam from a random start
while ``tau`` anneals from ``tau0`` to 0.01 (a smooth bowl first, the sharp volcano last),
then L-BFGS, and keeps the best of ``restarts`` starts by training loss. An ensemble of members
(different seeds) averages their contributions; the spread over members is the interval the
hypotheses report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch
from scipy.stats import norm

from activemil.errors import InputError
from activemil.featurize.bags import BagSet
from activemil.surrogates.base import (
    Surrogate,
    check_bags,
    check_training_data,
    load_arrays,
    save_arrays,
)
from activemil.surrogates.prediction import QUANTILE_LEVELS, Prediction

_Z = norm.ppf(np.asarray(QUANTILE_LEVELS))
INTERACTIONS: tuple[str, ...] = ("centre", "none")


def zones_layout(bags: BagSet) -> tuple[tuple[str, ...], dict[str, tuple[tuple[str, int], ...]], int]:
    """``(site_kinds, zone_layout, n_elements)`` of ``zones`` bags, from ``bags.meta``.

    Raises one-sentence :class:`InputError` when the bags are not ``zones`` features.
    """
    from activemil.structures import get_recipe

    meta = bags.meta if isinstance(bags.meta, dict) else {}
    enc = meta.get("encoder") or {}
    name = enc.get("encoder") if isinstance(enc, dict) else enc
    if name != "zones" or not meta.get("recipe") or not meta.get("elements"):
        raise InputError(
            f"The sabatier surrogate reads zone counts, but these bags come from the "
            f"{name or 'unknown'!s} encoder; build the campaign with --encoder zones or choose "
            "another surrogate kind."
        )
    recipe = get_recipe(str(meta["recipe"]), **dict(meta.get("recipe_settings") or {}))
    kinds = tuple(recipe.site_kinds)
    layout = {k: tuple(recipe.zone_layout[k]) for k in kinds}
    n_el = len(meta["elements"])
    dim = len(kinds) + sum(len(layout[k]) * n_el for k in kinds)
    if bags.dim != dim:
        raise InputError(
            f"Bags have {bags.dim} features per site but the {meta['recipe']} zones layout has "
            f"{dim}; rebuild the bags with the zones encoder (clear the feature cache)."
        )
    return kinds, layout, n_el


def centre_basis(
    x: np.ndarray, kinds: Sequence[str], layout: Mapping[str, Sequence[tuple[str, int]]],
    n_elements: int, interactions: str = "centre",
) -> np.ndarray:
    """Interaction basis ``phi [..., P]`` of zones features ``x [..., D]``.

    Columns: the kind one-hot, every zone count, and with ``interactions="centre"`` for each
    kind the products of its centre-zone counts (first zone of the layout) with each other
    centre count (``i < j``) and with every outer-zone count. Columns that are constant on the
    training sites are dropped later by the model's standardisation.
    """
    if interactions not in INTERACTIONS:
        raise InputError(f"Unknown interactions {interactions!r}; use {', '.join(INTERACTIONS)}.")
    e = n_elements
    cols = [x[..., : len(kinds)]]
    col = len(kinds)
    for kind in kinds:
        width = len(layout[kind]) * e
        block = x[..., col : col + width]
        col += width
        cols.append(block)
        if interactions == "centre":
            c = block[..., :e]
            cols += [c[..., i : i + 1] * c[..., j : j + 1] for i in range(e) for j in range(i + 1, e)]
            cols += [c[..., i : i + 1] * block[..., e:] for i in range(e)]
    return np.concatenate(cols, axis=-1)


def site_rates(phi: torch.Tensor, w: torch.Tensor, c: torch.Tensor, d: torch.Tensor,
           tau: float) -> torch.Tensor:
    """Site rates ``[...]`` of standardised basis rows ``phi [..., P]``."""
    e = phi @ w + c
    log_r = -torch.sqrt(e * e + tau * tau)
    return torch.exp(log_r - torch.nn.functional.softplus(log_r - d))


def _pool(x: torch.Tensor, wt: torch.Tensor, w: torch.Tensor, c: torch.Tensor, d: torch.Tensor,
          tau: float) -> torch.Tensor:
    """Weighted mean site rate ``[B]`` of bags ``x [B, K, P]`` with weights ``wt [B, K]``."""
    return (site_rates(x, w, c, d, tau) * wt).sum(1)


class SabatierRegressor(Surrogate):
    """Per-site volcano of a zone-linear descriptor, pooled by the bag weights (module doc).

    Args:
        seed: random starts use ``seed``.
        restarts: random starts per fit; the lowest training loss is kept.
        steps: Adam steps per start (``tau`` anneals over the first 70%).
        lbfgs_iter: L-BFGS iterations after Adam (0 = none).
        tau0: initial smoothing of the volcano tip (kT units).
        lr: Adam learning rate.
        ridge: L2 penalty on ``W`` (standardised basis), in units of the mean squared error of
            standardised targets.
        interactions: basis, see :func:`centre_basis`.
        link_init: start of the affine link, see :meth:`_link_init`.
    """

    kind = "sabatier"
    #: members' site rates are averaged in log space (their volcano distances), measured
    #: better than the arithmetic mean (docs/design-decisions.md)
    contribution_mean = "geometric"

    def __init__(self, seed: int = 0, restarts: int = 1, steps: int = 1200, lbfgs_iter: int = 300,
                 tau0: float = 3.0, lr: float = 2e-2, ridge: float = 0.0,
                 interactions: str = "centre", link_init: str = "unit") -> None:
        if int(restarts) < 1 or int(steps) < 1 or int(lbfgs_iter) < 0:
            raise InputError("restarts and steps must be at least 1 and lbfgs_iter at least 0.")
        if interactions not in INTERACTIONS:
            raise InputError(f"Unknown interactions {interactions!r}; use {', '.join(INTERACTIONS)}.")
        self.seed, self.restarts, self.steps = int(seed), int(restarts), int(steps)
        self.lbfgs_iter, self.tau0, self.lr = int(lbfgs_iter), float(tau0), float(lr)
        if link_init not in ("ls", "unit"):
            raise InputError(f"Unknown link_init {link_init!r}; use 'ls' or 'unit'.")
        self.ridge, self.interactions, self.link_init = float(ridge), interactions, link_init
        self.n_train = 0
        self.params: dict[str, np.ndarray] = {}
        self.train_loss = float("nan")

    def settings(self) -> dict:
        return {"seed": self.seed, "restarts": self.restarts, "steps": self.steps,
                "lbfgs_iter": self.lbfgs_iter, "tau0": self.tau0, "lr": self.lr,
                "ridge": self.ridge, "interactions": self.interactions,
                "link_init": self.link_init}

    def _link_init(self, s: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Start ``(a, b)`` of the link: ``"unit"`` (default) ``(0, 1)``; ``"ls"`` least squares
        of ``y`` on the random start's pooled rates ``s [B]``. ``"ls"`` gives ``b`` its final
        size at once but was measured much worse (recall@3 0.21 vs 0.37 at 200 hea-orr labels,
        OOF MSE 0.24 vs 0.11): a random start's least-squares ``b`` is often negative, a
        flipped volcano the fit does not leave."""
        if self.link_init == "unit":
            return 0.0, 1.0
        sc = s - s.mean()
        b = float((sc * (y - y.mean())).sum() / ((sc * sc).sum() + 1e-12))
        return float(y.mean() - b * s.mean()), b

    def _loss(self, params: list[torch.Tensor], x: torch.Tensor, wt: torch.Tensor,
              yt: torch.Tensor, tau: float) -> torch.Tensor:
        """Mean squared error of standardised targets ``yt [B]`` plus the ridge penalty, for
        ``params = [w, c, d, a, b]``, basis ``x [B, K, P]`` and bag weights ``wt [B, K]``."""
        w, c, d, a, b = params
        pred = a + b * _pool(x, wt, w, c, d, tau)
        return ((pred - yt) ** 2).mean() + self.ridge * (w * w).sum()

    def _fit_start(self, x: torch.Tensor, wt: torch.Tensor, yt: torch.Tensor,
                   start: int) -> tuple[float, list[torch.Tensor]]:
        """One random start: annealed Adam, then L-BFGS. Returns ``(final loss, [w, c, d, a,
        b])`` (detached)."""
        f32 = x.dtype
        g = torch.Generator().manual_seed(self.seed * 1009 + start)
        w = (0.3 * torch.randn(x.shape[-1], generator=g, dtype=f32)).requires_grad_()
        c = torch.randn((), generator=g, dtype=f32).requires_grad_()
        d = torch.tensor(2.0, dtype=f32, requires_grad=True)
        a0, b0 = self._link_init(_pool(x, wt, w, c, d, self.tau0).detach(), yt)
        params = [w, c, d, torch.tensor(a0, dtype=f32, requires_grad=True),
                  torch.tensor(b0, dtype=f32, requires_grad=True)]
        opt = torch.optim.Adam(params, lr=self.lr)
        for it in range(self.steps):
            tau = max(0.01, self.tau0 * (1.0 - it / (0.7 * self.steps)))
            opt.zero_grad()
            self._loss(params, x, wt, yt, tau).backward()
            opt.step()
        if self.lbfgs_iter:
            lb = torch.optim.LBFGS(params, lr=1.0, max_iter=self.lbfgs_iter,
                                   line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                lb.zero_grad()
                out = self._loss(params, x, wt, yt, 0.01)
                out.backward()
                return out

            lb.step(closure)
        with torch.no_grad():
            final = float(self._loss(params, x, wt, yt, 0.01))
        return final, [p.detach().clone() for p in params]

    def _phi(self, bags: BagSet) -> np.ndarray:
        kinds, layout, n_el = zones_layout(bags)
        return centre_basis(bags.features.astype(np.float64), kinds, layout, n_el, self.interactions)

    def fit(self, bags: BagSet, y: np.ndarray) -> Self:
        """Fit on ``bags`` and targets ``y [B]`` (any units; an affine link maps mean rate to y)."""
        y = check_training_data(bags, y, min_bags=3)
        phi = self._phi(bags)
        real = phi[bags.mask]
        mu, sd = real.mean(0), real.std(0)
        keep = sd > 1e-9
        y_mu, y_sd = float(y.mean()), float(y.std()) or 1.0
        f32 = torch.float32  # float64 doubles the fit time and changes no measured score
        x = torch.as_tensor((phi[..., keep] - mu[keep]) / sd[keep], dtype=f32)
        wt = torch.as_tensor(np.where(bags.mask, bags.weights, 0.0), dtype=f32)
        yt = torch.as_tensor((y - y_mu) / y_sd, dtype=f32)
        best: tuple[float, list[torch.Tensor]] | None = None
        for r in range(self.restarts):
            final, params = self._fit_start(x, wt, yt, r)
            if np.isfinite(final) and (best is None or final < best[0]):
                best = (final, params)
        if best is None:
            raise InputError("The sabatier fit diverged from every start; use more restarts or "
                             "another surrogate kind.")
        self.train_loss = best[0]
        w, c, d, a, b = (p.numpy().astype(np.float64) for p in best[1])
        self.params = {"mu": mu, "sd": sd, "keep": keep.astype(np.int8), "w": w,
                       "scalars": np.array([float(c), float(d), float(a), float(b), y_mu, y_sd,
                                            float(phi.shape[-1])])}
        fit = self._forward(phi, bags)[0]
        self.params["resid_sd"] = np.array([max(float(np.std(y - fit, ddof=0)), 1e-9 * y_sd)])
        self.n_train = len(y)
        return self

    def _forward(self, phi: np.ndarray, bags: BagSet) -> tuple[np.ndarray, np.ndarray]:
        """Bag values ``[B]`` and per-site contributions ``[B, K]`` (target units)."""
        p = self.params
        keep = p["keep"].astype(bool)
        if phi.shape[-1] != int(p["scalars"][6]):
            raise InputError(
                f"Bags give {phi.shape[-1]} basis columns but the sabatier model was trained on "
                f"{int(p['scalars'][6])}; use the same elements, recipe and encoder as for training."
            )
        c, d, a, b, y_mu, y_sd = (float(v) for v in p["scalars"][:6])
        x = torch.as_tensor((phi[..., keep] - p["mu"][keep]) / p["sd"][keep], dtype=torch.float64)
        with torch.no_grad():
            r = site_rates(x, torch.as_tensor(p["w"], dtype=torch.float64),
                       torch.tensor(c, dtype=torch.float64), torch.tensor(d, dtype=torch.float64),
                       0.01).numpy()
        contrib = np.where(bags.mask, bags.weights, 0.0) * r * b * y_sd
        return y_mu + a * y_sd + contrib.sum(1), contrib

    def forward_numpy(self, bags: BagSet) -> dict[str, np.ndarray]:
        """Outputs in target units, as :meth:`MILRegressor.forward_numpy`: ``quantiles [B,9]``
        (``mean + z_l * s``, ``s`` the training residual sd; conformal calibration widens them),
        ``attention [B,K]`` (each site's share of the predicted site activity),
        ``contributions [B,K]`` (``b * w_k * r_k``) and ``embedding [B,2]`` (value, log site
        activity)."""
        self._check_fitted()
        check_bags(bags)
        mean, contrib = self._forward(self._phi(bags), bags)
        q = mean[:, None] + float(self.params["resid_sd"][0]) * _Z[None, :]
        mag = np.abs(contrib)
        return {
            "quantiles": q,
            "attention": mag / np.maximum(mag.sum(1, keepdims=True), 1e-300),
            "contributions": contrib,
            "embedding": np.stack([mean, np.log(np.maximum(mag.sum(1), 1e-300))], axis=1),
        }

    def predict(self, bags: BagSet) -> Prediction:
        """:meth:`forward_numpy` as a single-member :class:`Prediction`."""
        o = self.forward_numpy(bags)
        return Prediction(
            ids=tuple(bags.ids), quantiles=o["quantiles"], member_quantiles=o["quantiles"][None],
            attention=o["attention"], embedding=o["embedding"],
            strata=np.asarray(bags.strata, np.int64), contributions=o["contributions"],
        )

    def _save(self, path: Path) -> dict:
        save_arrays(path, **self.params)
        return {"train_loss": self.train_loss}

    @classmethod
    def _load(cls, path: Path, meta: dict) -> Self:
        obj = cls(**meta["settings"])
        obj.params = load_arrays(path)
        obj.train_loss = float(meta.get("train_loss", float("nan")))
        return obj
