"""One calibrated posterior over the candidate pool: an exact GP every policy reads.

The model is a BoTorch :class:`~botorch.models.SingleTaskGP` on pool inputs

``x = [composition fractions (E) | learned bag embedding, PCA to k dims, scaled to [0, 1] |
prior-mean column (1)]``

- kernel: Matern-5/2 with ARD over the first ``E + k`` columns and a Gamma lengthscale prior
  (as BayBE's default preset; ``kernel="rbf"``: BoTorch's RBF with its dimension-scaled
  lengthscale prior, Hvarfner et al. 2024), wrapped in a :class:`~gpytorch.kernels.ScaleKernel` with
  outputscale 1 on standardised outcomes (changed only by the ``scale`` calibration);
- mean: :class:`PriorColumnMean`, ``w * x[..., -1] + b``: the MIL ensemble's median (its
  out-of-fold median at the training points) enters as an input column, so the GP models the
  MIL's residual and the mean stays an ordinary function of ``x`` (fantasies, conditioning and
  pathwise sampling all work unchanged). Without a MIL the column is 0 and the model is a plain
  composition GP with a constant mean.

Outcomes are standardised and oriented (larger is better). Hyper-parameters are fitted by
maximum marginal likelihood (``fit_gpytorch_mll``); then the model is calibrated on K-fold
cross-validated normalised residuals ``|y_i - mu_{-k(i)}| / sd_{-k(i)}`` (each fold's GP
refitted, hyper-parameters included; cross-conformal on normalised scores, Lei et al. 2018;
Barber et al. 2021), so that its own central ``1 - alpha`` predictive intervals cover the
conformal share of held-out rows. Two calibrations (``calibration``):

- ``noise`` (default): the smallest extra noise variance ``d`` at which the re-scored held-out
  rows cover is added to the likelihood. The prior variance, and so the posterior variance far
  from every measurement, stays 1; the mean smooths as ``d`` grows.
- ``scale``: one factor ``c`` (the conformal quantile of the scores over ``z_{1-alpha/2}``)
  scales both the outputscale and the noise by ``c**2``: the mean is unchanged and every
  (co)variance is multiplied by ``c**2``, far from data too. At 8-16 measurements ``c`` was 2-9,
  which sent every policy to the simplex edges (docs/design-decisions.md).

The 9 quantiles the user sees are read from this same calibrated posterior.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.kernels import ScaleKernel
from gpytorch.means import Mean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior
from torch import Tensor

from activemil.errors import InputError
from activemil.surrogates.prediction import QUANTILE_LEVELS

#: normal scores of the 9 quantile levels ``[9]``
NORMAL_SCORES = np.array(
    [math.sqrt(2.0) * float(torch.erfinv(torch.tensor(2 * p - 1, dtype=torch.float64)))
     for p in QUANTILE_LEVELS]
)
#: smallest number of cross-validated scores for a finite-sample conformal quantile at alpha=0.2
_MIN_CAL = 4
_C_RANGE = (0.5, 10.0)


class PriorColumnMean(Mean):
    """``m(x) = weight * x[..., column] + constant``: a prior mean read from an input column.

    Args:
        column: index of the input column holding the prior mean (standardised units).
        learn_weight: learn ``weight`` (init 1); else it stays 0 (constant mean only).
    """

    def __init__(self, column: int = -1, learn_weight: bool = True,
                 batch_shape: torch.Size | None = None) -> None:
        super().__init__()
        batch_shape = torch.Size() if batch_shape is None else batch_shape
        self.column = int(column)
        self.register_parameter("constant", torch.nn.Parameter(torch.zeros(batch_shape)))
        self.register_parameter(
            "weight", torch.nn.Parameter(torch.ones(batch_shape), requires_grad=learn_weight)
        )
        if not learn_weight:
            self.weight.data.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``batch x n x d`` -> ``batch x n`` (parameters ``batch_shape``, one per
        independent batch model)."""
        return self.weight.unsqueeze(-1) * x[..., self.column] + self.constant.unsqueeze(-1)


def embedding_columns(embedding: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` principal components of ``embedding [N, d]``, each scaled to [0, 1]: ``[N, k]``.

    Columns with no spread (or ``k = 0``) are dropped, so the result may have fewer than k.
    """
    e = np.asarray(embedding, dtype=np.float64)
    if k <= 0 or e.ndim != 2 or e.shape[1] == 0:
        return np.zeros((e.shape[0], 0))
    e = e - e.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(e, full_matrices=False)
    keep = s > 1e-9 * max(float(s.max(initial=0.0)), 1e-300)
    pc = e @ vt[keep][:k].T
    lo, hi = pc.min(axis=0), pc.max(axis=0)
    span = hi - lo
    ok = span > 1e-12
    return (pc[:, ok] - lo[ok]) / span[ok]


@dataclass
class PoolPosterior:
    """The calibrated posterior over a pool, in oriented standardised units.

    Attributes:
        model: the calibrated ``SingleTaskGP`` (inputs ``[..., n, d]``; output standardised and
            oriented: larger is better).
        X: float64 ``[N, d]`` pool inputs (row ``i`` = candidate ``ids[i]``).
        ids: candidate ids ``[N]``.
        train_X: ``[n, d]``, train_Y: ``[n, 1]`` (oriented, standardised).
        train_rows: int64 ``[n]`` pool rows of the training points (-1 if not in the pool).
        y_mean, y_std: standardisation of the raw target; ``maximize``: orientation.
        scale: calibration factor ``c`` (posterior sd multiplier; 1 unless ``scale``).
        calibration: the calibration used (:data:`CALIBRATIONS`); extra_noise: the noise
            variance it added (standardised units; 0 unless ``noise`` or ``noise-z2``).
        cv_folds: the folds behind the cross-validated scores (0 when none could be fitted);
            cv_repeats: the independent fold splits they were repeated over.
        cv_mse: K-fold cross-validated mean squared error of the mean (standardised units).
        cv_crps: K-fold cross-validated mean CRPS of the uncalibrated Gaussian predictive
            (standardised units; lower is better).
        cv_spearman: Spearman rank correlation of the cross-validated means with the measured
            values (the rank agreement acquisition needs; NaN below 3 scored rows).
        cv_resid, cv_z: ``[R, n]`` the K-fold residuals and their normalised sizes behind the
            three scores, one row per fold split (:func:`cv_scores`; NaN where a fold could not
            be fitted), so that variants fitted on the same rows and seed can be compared row
            by row.
        choice: the model choice this posterior won (see ``build_posterior``).
        prior_source: what the prior-mean column holds (for notes), when ``prior``.
        prior_pending: the pool's prior-mean column is not set yet (NaN): the model is fitted
            and scored on the training points only; :meth:`with_prior_median` completes it.
        cv_coverage: cross-validated coverage of the calibrated ``1 - alpha`` interval.
        notes: one-line remarks for the user.
    """

    model: SingleTaskGP
    X: Tensor
    ids: tuple[str, ...]
    train_X: Tensor
    train_Y: Tensor
    train_rows: np.ndarray
    y_mean: float
    y_std: float
    maximize: bool
    scale: float
    alpha: float
    cv_coverage: float
    n_embedding: int
    prior: bool
    cv_mse: float = float("nan")
    cv_crps: float = float("nan")
    cv_spearman: float = float("nan")
    prior_source: str = "MIL median"
    notes: list[str] = field(default_factory=list)
    choice: dict = field(default_factory=dict)
    prior_pending: bool = False
    cv_resid: np.ndarray = field(default_factory=lambda: np.empty(0))
    cv_z: np.ndarray = field(default_factory=lambda: np.empty(0))
    calibration: str = "scale"
    extra_noise: float = 0.0
    cv_folds: int = 0
    cv_repeats: int = 1

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def noise(self) -> float:
        """Observation noise variance (oriented standardised units, calibrated)."""
        return float(self.model.likelihood.noise.detach().reshape(-1)[0])

    def mean_var(self, rows: np.ndarray | None = None, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Marginal posterior mean and latent variance ``([R], [R])`` at pool rows (all if None).

        The whole-pool values are computed once and cached (the model is fixed once fitted).
        """
        if self.prior_pending:
            raise RuntimeError("the pool's prior-mean column is not set; call with_prior_median")
        cache = self.__dict__.get("_mean_var")
        if cache is None:
            cache = self._mean_var(self.X, chunk)
            self.__dict__["_mean_var"] = cache
        if rows is None:
            return cache
        r = np.asarray(rows, dtype=np.int64)
        return cache[0][r], cache[1][r]

    def with_prior_median(self, prior_median: np.ndarray) -> PoolPosterior:
        """This posterior with the pool's prior-mean column set from ``prior_median [N]``
        (target units), as :func:`fit_pool_posterior` would have set it.

        The model, fitted and calibrated on the training points only, is shared unchanged: it
        never reads the pool column, so the result equals fitting with ``prior_median`` given.
        """
        X = self.X.clone()
        X[:, -1] = torch.as_tensor(
            _prior_column(prior_median, self.n, self.maximize, self.y_mean, self.y_std))
        return replace(self, X=X, prior_pending=False)

    def _mean_var(self, X: Tensor, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        mu, var = [], []
        self.model.eval()
        with torch.no_grad():
            for s in range(0, X.shape[0], chunk):
                # one-point batches ``[chunk, 1, d]``: the marginals without the chunk's joint
                # ``chunk x chunk`` covariance (13x faster on 10,626 rows, same values to 1e-13)
                p = self.model.posterior(X[s:s + chunk].unsqueeze(-2))
                mu.append(p.mean.reshape(-1))
                var.append(p.variance.reshape(-1).clamp_min(0.0))
        if not mu:
            return np.zeros(0), np.zeros(0)
        return torch.cat(mu).numpy(), torch.cat(var).numpy()

    def to_target(self, z: np.ndarray) -> np.ndarray:
        """Oriented standardised values -> target units."""
        sign = 1.0 if self.maximize else -1.0
        return self.y_mean + sign * self.y_std * np.asarray(z)

    def quantiles(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Calibrated predictive quantiles of a new measurement ``[R, 9]`` in target units.

        ``mu +- z_p * sqrt(var_f + noise)`` of the calibrated model, sorted ascending in target
        units (so for minimisation the orientation flip is undone).
        """
        mu, var = self.mean_var(rows)
        sd = np.sqrt(var + self.noise)
        q = mu[:, None] + NORMAL_SCORES[None, :] * sd[:, None]
        return np.sort(self.to_target(q), axis=1)

    def condition_believer(self, rows: np.ndarray) -> SingleTaskGP:
        """The model conditioned on its own posterior mean at pool ``rows`` (kriging believer).

        Variances shrink at and near ``rows``; the mean is unchanged. Used for pending points.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return self.model
        Xn = self.X[torch.as_tensor(rows)]
        with torch.no_grad():
            y = self.model.posterior(Xn).mean
        return self.model.condition_on_observations(Xn, y)


def _prior_column(prior_median: np.ndarray, n_pool: int, maximize: bool, y_mean: float,
                  y_std: float) -> np.ndarray:
    """The prior-mean input column ``[N]``: ``prior_median [N]`` standardised and oriented."""
    sign = 1.0 if maximize else -1.0
    pm = sign * (np.asarray(prior_median, dtype=np.float64).reshape(-1) - y_mean) / y_std
    if pm.shape != (n_pool,) or not np.isfinite(pm).all():
        raise InputError("The prior median must be one finite value per pool row.")
    return pm


KERNELS: tuple[str, ...] = ("rbf", "matern")
#: the default posterior kernel (measured against ``rbf`` in docs/design-decisions.md)
DEFAULT_KERNEL = "matern"
#: how :func:`fit_pool_posterior` calibrates its intervals
CALIBRATIONS: tuple[str, ...] = ("scale", "noise", "noise-z2", "none")
#: the default calibration (measured against ``scale`` in docs/design-decisions.md)
DEFAULT_CALIBRATION = "noise"
#: the residual GP's outputscale under a prior mean (``mil``, ``transfer``): ``fixed`` at 1, the
#: outcome variance, or ``learned`` by marginal likelihood (Gamma(2, 2) prior: mode 0.5, mean 1)
RESIDUAL_SCALES: tuple[str, ...] = ("fixed", "learned")
DEFAULT_RESIDUAL_SCALE = "fixed"
#: ``n_folds=0`` (the default): leave one composition out up to this many distinct
#: compositions, else :data:`_AUTO_FOLDS` folds (docs/design-decisions.md, "Calibration folds")
LOO_MAX_GROUPS = 24
_AUTO_FOLDS = 5
#: folds of :func:`fit_pool_posterior`'s calibration and model-choice scores
DEFAULT_CV_FOLDS = 5
#: independent fold splits those scores are repeated over (each row is scored once per split)
DEFAULT_CV_REPEATS = 1


def _whole_number(value: object, minimum: int, rule: str) -> int:
    """``value`` (an int, numpy int or digit string; not a bool) as an int ``>= minimum``, or
    one sentence: ``rule``, then the value given."""
    ok = isinstance(value, (int, np.integer, str)) and not isinstance(value, bool)
    try:
        n = int(value) if ok else minimum - 1  # type: ignore[arg-type]
    except ValueError:
        n = minimum - 1
    if n < minimum:
        raise InputError(f"{rule}, not {value!r}.")
    return n


def check_cv_repeats(value: object) -> int:
    """The ``cv_repeats`` setting as an int >= 1, or one sentence naming the fix."""
    return _whole_number(value, 1, "cv_repeats must be a whole number of fold splits, 1 or more")


def check_cv_folds(value: object) -> int:
    """The ``cv_folds`` setting as an int >= 0, or one sentence naming the fix."""
    return _whole_number(value, 0,
                         "cv_folds must be 0 (automatic) or a positive number of folds")


def fold_count(n_folds: int, n_groups: int) -> int:
    """Folds of the cross-validated scores over ``n_groups`` distinct compositions:
    ``n_folds`` (at most ``n_groups``), or for ``n_folds=0`` leave-one-out up to
    :data:`LOO_MAX_GROUPS` groups and :data:`_AUTO_FOLDS` folds above."""
    n_folds = check_cv_folds(n_folds)
    if n_folds == 0:
        return n_groups if n_groups <= LOO_MAX_GROUPS else _AUTO_FOLDS
    return min(n_folds, n_groups)


def _base_kernel(kind: str, d: int, batch_shape: torch.Size | None = None):
    """``rbf``: BoTorch's default RBF with the dimension-scaled LogNormal lengthscale prior
    (Hvarfner et al. 2024); ``matern``: Matern-5/2 with a Gamma(3, r) lengthscale prior whose
    mode matches that prior's (``exp(sqrt2 - 3) sqrt d``) but with lighter tails, as BayBE's
    default Gaussian-process preset builds it."""
    batch_shape = torch.Size() if batch_shape is None else batch_shape
    if kind == "rbf":
        return get_covar_module_with_dim_scaled_prior(ard_num_dims=d, active_dims=list(range(d)),
                                                      batch_shape=batch_shape)
    if kind == "matern":
        from gpytorch.constraints import GreaterThan
        from gpytorch.kernels import MaternKernel

        rate = 2.0 / math.exp(math.sqrt(2) - 3) / math.sqrt(d)
        prior = GammaPrior(3.0, rate)
        return MaternKernel(nu=2.5, ard_num_dims=d, active_dims=list(range(d)),
                            batch_shape=batch_shape, lengthscale_prior=prior,
                            lengthscale_constraint=GreaterThan(2.5e-2, transform=None,
                                                               initial_value=prior.mode))
    raise InputError(f"Unknown posterior kernel {kind!r}; use one of {', '.join(KERNELS)}.")


#: extra noise variance (standardised units) that masks a held-out row in a batched fold fit
_HELD_OUT_NOISE = 1e8
#: above this many training rows the folds are fitted one by one on their own rows: the batched
#: fit factorises all n rows per fold, and measured on 5 folds it was 3-4x faster up to 100
#: rows, 1.3x at 128, and slower from ~150 rows (docs/design-decisions.md)
_BATCHED_CV_MAX_ROWS = 128


def _fit(train_X: Tensor, train_Y: Tensor, d_kernel: int, prior: bool, seed: int,
         init: dict | None = None, kernel: str = DEFAULT_KERNEL,
         held_out: Tensor | None = None, learn_scale: bool = False) -> SingleTaskGP:
    """Fit a GP by maximum marginal likelihood; ``init``: a state dict to start from.

    ``held_out``: bool ``[b, n]`` with ``train_X [b, n, d]``, ``train_Y [b, n, 1]``: ``b``
    independent GPs (one per fold) fitted in one batched optimisation, each with its held-out
    rows masked by an extra noise variance of ``_HELD_OUT_NOISE`` (their weight in the
    likelihood and in the posterior is ~1e-8 of an observed row's). The learned homoscedastic
    noise has the default likelihood's prior and bound; ``init`` (an unbatched state dict) is
    broadcast to every batch member. ``learn_scale`` (with ``prior``): the outputscale of the
    residual GP is learned (Gamma(2, 2) prior, start 1) instead of fixed at 1.
    """
    batch = torch.Size() if held_out is None else torch.Size([held_out.shape[0]])
    learn = bool(learn_scale and prior)
    covar = ScaleKernel(_base_kernel(kernel, d_kernel, batch), batch_shape=batch,
                        outputscale_prior=GammaPrior(2.0, 2.0) if learn else None)
    covar.outputscale = 1.0
    covar.raw_outputscale.requires_grad_(learn)
    likelihood = None
    if held_out is not None:
        from botorch.models.utils.gpytorch_modules import (
            get_gaussian_likelihood_with_lognormal_prior,
        )
        from gpytorch import settings as gpytorch_settings
        from gpytorch.likelihoods import FixedNoiseGaussianLikelihood

        # the learned noise keeps SingleTaskGP's default prior and floor
        default = get_gaussian_likelihood_with_lognormal_prior(batch).noise_covar
        with gpytorch_settings.min_fixed_noise(float_value=0.0, double_value=0.0):
            # observed rows carry no fixed noise (gpytorch would round 0 up to 1e-6)
            likelihood = FixedNoiseGaussianLikelihood(
                noise=held_out.to(train_X.dtype) * _HELD_OUT_NOISE,
                learn_additional_noise=True, batch_shape=batch,
                noise_prior=default.noise_prior, noise_constraint=default.raw_noise_constraint)
    # outcomes are standardised by the caller: no outcome transform, one space for everything
    model = SingleTaskGP(train_X, train_Y, covar_module=covar, outcome_transform=None,
                         likelihood=likelihood,
                         mean_module=PriorColumnMean(-1, learn_weight=prior, batch_shape=batch))
    if init is not None:  # warm start (CV folds start from the full-data optimum)
        if held_out is None:
            model.load_state_dict(init, strict=False)
        else:
            with torch.no_grad():
                for name, par in model.named_parameters():
                    src = init.get(name.replace("second_noise_covar", "noise_covar"))
                    if src is not None and src.numel() * batch.numel() == par.numel():
                        par.copy_(src.reshape(par.shape[1:]).expand_as(par))
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    # one thread: these are small factorisations, where intra-op threads cost more than they
    # give (5-fold scoring of 2 variants took 3.6-4.1 s on 2 threads, 1.5 s on 1;
    # docs/benchmarks.md, "Proposal wall time", fourth run)
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit_gpytorch_mll(mll)
        except (ModelFittingError, RuntimeError):  # keep the start values: still a valid GP
            model.fit_failed = True
        finally:
            torch.set_num_threads(threads)
    model.eval()
    return model


def loo_scores(model: SingleTaskGP) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form leave-one-out residuals and predictive sds of an exact GP: ``([n], [n])``.

    With ``A = K + sigma^2 I`` and ``r = y - m``: ``e_i = (A^-1 r)_i / (A^-1)_ii`` and the LOO
    predictive variance of ``y_i`` is ``1 / (A^-1)_ii`` (Rasmussen & Williams 2006, eq. 5.12).
    """
    X = model.train_inputs[0]
    y = model.train_targets
    with torch.no_grad():
        K = model.covar_module(X).to_dense()
        A = K + model.likelihood.noise.reshape(-1)[0] * torch.eye(len(y), dtype=K.dtype)
        r = y - model.mean_module(X)
        Ainv = torch.linalg.inv(A)
        d = torch.diagonal(Ainv).clamp_min(1e-300)
        e = (Ainv @ r) / d
        sd = d.rsqrt()
    return e.numpy(), sd.numpy()


class _Folds:
    """The refitted fold GPs behind :func:`cv_scores` (``K`` folds in each of ``R`` splits),
    able to re-score the held-out rows with an extra noise variance ``d`` added to every fold's
    learned noise (hyper-parameters otherwise fixed): the fold posteriors are recomputed, not
    refitted. ``split[j]`` is the split of the ``j``-th fold mask (in the order of ``tests``,
    flattened over models)."""

    def __init__(self, train_X: Tensor, train_Y: Tensor, models: list, tests: list,
                 batched: bool, split: list[int] | None = None, repeats: int = 1) -> None:
        self.X, self.y = train_X, train_Y[:, 0].numpy()
        self.models, self.tests, self.batched = models, tests, batched
        self.noise0 = [self._noise(m).detach().clone() for m in models]
        n_masks = sum(len(t) for t in tests)  # one mask per fold in either layout
        self.split = [0] * n_masks if split is None else list(split)
        self.repeats = int(repeats)
        self.n_folds = self.split.count(0)  # folds of one split

    def _noise(self, m) -> Tensor:
        return m.likelihood.second_noise if self.batched else m.likelihood.noise

    def _set_noise(self, m, value: Tensor) -> None:
        if self.batched:
            m.likelihood.second_noise = value
        else:
            m.likelihood.noise = value
        m.train()
        m.eval()  # drop gpytorch's prediction cache

    def score(self, extra_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(resid [R, n], |z| [R, n])`` of the held-out rows with noise ``+ extra_noise``,
        one row per fold split (NaN where a row was in no scored fold of that split)."""
        n = len(self.y)
        resid, z = np.full((self.repeats, n), np.nan), np.full((self.repeats, n), np.nan)
        j = 0
        for m, tests, s0 in zip(self.models, self.tests, self.noise0):
            X = self.X.expand(len(tests), -1, -1) if self.batched else self.X
            self._set_noise(m, s0 + extra_noise)
            with torch.no_grad():
                p = m.posterior(X)  # latent f at every row ([b, n, 1] when batched)
                mu = p.mean[..., 0].reshape(len(tests), -1).numpy()
                var = (p.variance[..., 0].reshape(len(tests), -1)
                       + (s0 + extra_noise).reshape(len(tests), 1)).numpy()
            for i, te in enumerate(tests):
                r = self.split[j + i]
                resid[r, te] = self.y[te] - mu[i, te]
                z[r, te] = np.abs(resid[r, te]) / np.sqrt(np.maximum(var[i, te], 1e-12))
            j += len(tests)
            self._set_noise(m, s0)
        return resid, z


def _cv_folds(
    train_X: Tensor, train_Y: Tensor, d_kernel: int, prior: bool, *, n_folds: int = 5,
    seed: int = 0, d_group: int | None = None, init: dict | None = None, kernel: str = DEFAULT_KERNEL,
    learn_scale: bool = False, repeats: int = DEFAULT_CV_REPEATS,
) -> _Folds | None:
    """Fit the fold GPs of :func:`cv_scores`: ``K`` folds in each of ``repeats`` independent
    splits of the compositions (split 0 is the single split of ``repeats=1``; leave-one-out
    has one split whatever ``repeats`` says). ``None`` when no fold can be scored."""
    n = train_X.shape[0]
    keys = [tuple(np.round(r, 9)) for r in train_X[:, :d_group or d_kernel].numpy()]
    groups = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    g = np.array([groups[k] for k in keys])
    n_groups = len(groups)
    k_folds = fold_count(n_folds, n_groups)
    repeats = check_cv_repeats(repeats)
    if k_folds == n_groups:  # leave-one-out: every split is the same
        repeats = 1
    masks: list[np.ndarray] = []
    split: list[int] = []
    for r in range(repeats):
        rng = np.random.default_rng(seed if r == 0 else [seed, r])
        perm = rng.permutation(n_groups)
        fold_of_group = np.empty(n_groups, dtype=np.int64)
        fold_of_group[perm] = np.arange(n_groups) % k_folds
        fold = fold_of_group[g]
        for k in range(k_folds):
            if not (fold == k).all() and (fold != k).sum() >= 2:
                masks.append(fold == k)
                split.append(r)
    if not masks:
        return None
    if n > _BATCHED_CV_MAX_ROWS:  # one fit per fold on its own rows, scored at all rows
        models = [_fit(train_X[~te], train_Y[~te], d_kernel, prior, seed + j,
                       init=init, kernel=kernel, learn_scale=learn_scale)
                  for j, te in enumerate(masks)]
        return _Folds(train_X, train_Y, models, [[te] for te in masks], batched=False,
                      split=split, repeats=repeats)
    # all folds in one batched fit: fold j is batch member j with its own rows masked
    held = torch.as_tensor(np.stack(masks))
    b = len(masks)
    m = _fit(train_X.expand(b, -1, -1), train_Y.expand(b, -1, -1), d_kernel, prior, seed,
             init=init, kernel=kernel, held_out=held, learn_scale=learn_scale)
    return _Folds(train_X, train_Y, [m], [held.numpy()], batched=True, split=split,
                  repeats=repeats)


def cv_scores(
    train_X: Tensor, train_Y: Tensor, d_kernel: int, prior: bool, *, n_folds: int = 5,
    seed: int = 0, d_group: int | None = None, init: dict | None = None, kernel: str = DEFAULT_KERNEL,
    repeats: int = DEFAULT_CV_REPEATS,
) -> tuple[np.ndarray, np.ndarray]:
    """K-fold cross-validated residuals ``y_i - mu_{-k(i)}`` and their normalised size
    ``|y_i - mu_{-k(i)}| / sd_{-k(i)}``: ``([R, n], [R, n])``, one row per fold split
    (``repeats``; NaN where a fold could not be fitted).

    Each fold's GP is refitted (hyper-parameters included) without that fold, so the scores
    are honest about hyper-parameter overfitting (all folds in one batched optimisation, each
    fold's own rows masked, see :func:`_fit`), which closed-form LOO with the full-data
    hyper-parameters is not (on 16 OER-plate rows LOO |z| had median 0.9 where held-out rows had
    2.3, see docs/design-decisions.md). Replicates of one composition share a fold.
    """
    folds = _cv_folds(train_X, train_Y, d_kernel, prior, n_folds=n_folds, seed=seed,
                      d_group=d_group, init=init, kernel=kernel, repeats=repeats)
    if folds is None:
        n = train_X.shape[0]
        return np.full((1, n), np.nan), np.full((1, n), np.nan)
    return folds.score(0.0)


def crps_rows(resid: np.ndarray, z_abs: np.ndarray) -> np.ndarray:
    """Per-row CRPS ``[n]`` of the Gaussian predictives behind cross-validated residuals ``[n]``
    and their normalised sizes ``|r| / sd`` ``[n]``: ``sd (z (2 Phi(z) - 1) + 2 phi(z) -
    1/sqrt(pi))`` (Gneiting & Raftery 2007); NaN where a row was not scored (or ``z = 0``)."""
    from scipy.stats import norm

    resid = np.asarray(resid, dtype=np.float64)
    z_abs = np.asarray(z_abs, dtype=np.float64)
    out = np.full(resid.shape, np.nan)
    ok = np.isfinite(resid) & np.isfinite(z_abs) & (z_abs > 0)
    z = z_abs[ok]
    sd = np.abs(resid[ok]) / z
    out[ok] = sd * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))
    return out


def cv_crps(resid: np.ndarray, z_abs: np.ndarray) -> float:
    """Mean of :func:`crps_rows` over the scored rows; NaN when no row was scored."""
    c = crps_rows(resid, z_abs)
    return float(np.nanmean(c)) if np.isfinite(c).any() else float("nan")


def row_mean(a: np.ndarray) -> np.ndarray:
    """Per-row mean over fold splits: ``[R, n]`` (or ``[n]``) -> ``[n]``, NaN where a row was
    scored in no split."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    ok = np.isfinite(a)
    cnt = ok.sum(axis=0)
    out = np.where(ok, a, 0.0).sum(axis=0) / np.maximum(cnt, 1)
    return np.where(cnt > 0, out, np.nan)


def cv_spearman(y: np.ndarray, resid: np.ndarray) -> float:
    """Spearman correlation of the cross-validated means ``y - resid`` with ``y`` ``[n]``
    (``resid`` ``[n]``, or ``[R, n]`` over fold splits: the per-row mean residual)."""
    resid = row_mean(resid)
    from scipy.stats import spearmanr

    ok = np.isfinite(resid)
    if ok.sum() < 3:
        return float("nan")
    rho = spearmanr(y[ok], (y - resid)[ok])[0]
    return float(rho) if np.isfinite(rho) else float("nan")


def _conformal_rank(n: int, alpha: float) -> tuple[int, float, str]:
    """``(k, alpha_used, note)``: the finite-sample conformal rank ``ceil((n+1)(1-a))`` of ``n``
    scores at ``alpha``, or at the smallest feasible level of (0.2) when there are too few;
    ``k = 0`` below ``_MIN_CAL`` scores (no calibration)."""
    for a in (alpha, 0.2):
        k = math.ceil((n + 1) * (1 - a) - 1e-12)
        if n >= _MIN_CAL and k <= n:
            note = "" if a == alpha else (
                f"calibration: {n} cross-validated scores are too few for alpha={alpha}, "
                f"so it was set at alpha={a}")
            return k, a, note
    return 0, alpha, _too_few(n)


def _too_few(n: int) -> str:
    """The note of a posterior left uncalibrated with ``n`` (< :data:`_MIN_CAL`) scores."""
    return f"calibration: only {n} cross-validated scores, posterior left uncalibrated"


def _z_quantile(alpha: float) -> float:
    """``z_{1-alpha/2}``, the half-width of the central ``1 - alpha`` Gaussian interval."""
    return math.sqrt(2.0) * float(torch.erfinv(torch.tensor(1 - alpha, dtype=torch.float64)))


def _splits(z: np.ndarray) -> list[np.ndarray]:
    """The finite scores of each fold split: ``|z| [R, n]`` (or ``[n]``, one split)."""
    return [row[np.isfinite(row)] for row in np.atleast_2d(np.asarray(z, dtype=np.float64))]


def _split_quantile(z_abs: np.ndarray, alpha: float) -> float:
    """Each fold split's finite-sample conformal quantile of ``|z|`` at ``alpha``
    (:func:`_conformal_rank`; the largest score where too few), averaged over the splits."""
    return float(np.mean([np.sort(z)[max(_conformal_rank(len(z), alpha)[0], 1) - 1]
                          for z in _splits(z_abs)]))


def calibration_factor(z_abs: np.ndarray, alpha: float) -> tuple[float, float, str]:
    """``c`` such that the ``1 - alpha`` interval ``mu +- c z sd`` covers the conformal share.

    Returns ``(c, alpha_used, note)``: the finite-sample conformal quantile
    (``ceil((n+1)(1-a))``-th smallest ``|z|``, :func:`_conformal_rank`; ``z_abs`` ``[n]`` or
    ``[R, n]``, one row per fold split, the quantiles then averaged over the splits) divided by
    ``z_{1-a/2}``; ``c = 1`` below ``_MIN_CAL`` scores. Clipped to ``[0.5, 10]``.
    """
    k, a, note = _conformal_rank(min(len(z) for z in _splits(z_abs)), alpha)
    if k == 0:
        return 1.0, alpha, note
    return float(np.clip(_split_quantile(z_abs, a) / _z_quantile(a), *_C_RANGE)), a, note


#: largest extra noise variance the noise calibration adds (standardised units: 100 x the
#: outcome variance, beyond which the posterior mean is the prior mean)
_D_MAX = 100.0


def _smallest_noise(ok, tol: float) -> tuple[float, bool]:
    """Smallest ``d >= 0`` with ``ok(d)`` (``ok`` monotone: false below, true above), by
    bisection on ``log d`` to relative tolerance ``tol``; ``(d, capped)`` with ``d =``
    :data:`_D_MAX` and ``capped`` when even that fails."""
    if ok(0.0):
        return 0.0, False
    lo, hi = 0.0, 1e-4
    while not ok(hi):
        lo, hi = hi, hi * 4.0
        if hi > _D_MAX:
            return _D_MAX, True
    lo = max(lo, hi / 4.0)
    while hi / lo > 1.0 + tol:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi, False


_CAPPED = "calibration: no noise level made the held-out rows cover; capped"


def noise_calibration(score, alpha: float, tol: float = 0.02) -> tuple[float, float, str]:
    """Smallest extra noise variance ``d >= 0`` whose held-out scores cover conformally.

    ``score(d) -> (resid [R, n], |z| [R, n])`` re-scores the held-out rows of ``R`` fold
    splits with ``d`` added to every fold's noise (:class:`_Folds`); ``d`` is the smallest value
    (bisection on ``log d``, relative tolerance ``tol``) at which the conformal rank of ``|z|``
    (:func:`_conformal_rank`, taken in each split and averaged over the splits) is at most
    ``z_{1-a/2}``, so the ``1 - alpha`` predictive interval of a model with noise ``+ d`` covers
    the conformal share of held-out rows. With one split this is that split's conformal
    quantile; more splits average out where the split put each row. ``d = 0`` when the fitted
    model already covers. Returns ``(d, alpha_used, note)``.
    """
    z0 = _splits(score(0.0)[1])
    n = min(len(z) for z in z0)
    k, a, note = _conformal_rank(n, alpha)
    if k == 0:
        return 0.0, alpha, note
    zq = _z_quantile(a)

    def covers(d: float) -> bool:
        return _split_quantile(score(d)[1], a) <= zq

    d, capped = _smallest_noise(covers, tol)
    return d, a, "; ".join(t for t in (note, _CAPPED if capped else "") if t)


def noise_z2_calibration(score, alpha: float, tol: float = 0.02) -> tuple[float, float, str]:
    """Smallest extra noise variance ``d >= 0`` at which the held-out ``z`` have mean square 1.

    The predictive variance then matches the held-out squared error on average (for a pure
    variance scale this is the maximum-likelihood scale of the held-out residuals), instead of
    bounding one order statistic of ``|z|`` as :func:`noise_calibration` does. At 8-18 scores
    that order statistic is the largest ``|z|``, and the conformal ``d`` over-covers (real
    plates: 0.93-0.96 at 90 %; docs/benchmarks.md). ``score`` as in :func:`noise_calibration`;
    ``alpha`` is returned unchanged. Below :data:`_MIN_CAL` scores: ``d = 0``, with a note.
    """
    z0 = _splits(score(0.0)[1])
    n = min(len(z) for z in z0)
    if n < _MIN_CAL:
        return 0.0, alpha, _too_few(n)

    def unit(d: float) -> bool:
        z = np.concatenate(_splits(score(d)[1]))
        return float(np.mean(z ** 2)) <= 1.0

    d, capped = _smallest_noise(unit, tol)
    return d, alpha, _CAPPED if capped else ""


#: the calibrations that add noise, and the rule that picks it
NOISE_CALIBRATIONS = {"noise": noise_calibration, "noise-z2": noise_z2_calibration}


def fit_pool_posterior(
    composition: np.ndarray,
    ids: tuple[str, ...] | list[str],
    train_rows: np.ndarray,
    y: np.ndarray,
    *,
    maximize: bool = True,
    prior_median: np.ndarray | None = None,
    prior_train: np.ndarray | None = None,
    embedding: np.ndarray | None = None,
    embedding_dims: int = 0,
    prior_in_kernel: bool = False,
    kernel: str = DEFAULT_KERNEL,
    calibration: str = DEFAULT_CALIBRATION,
    residual_scale: str = DEFAULT_RESIDUAL_SCALE,
    alpha: float = 0.1,
    n_folds: int = DEFAULT_CV_FOLDS,
    cv_repeats: int = DEFAULT_CV_REPEATS,
    seed: int = 0,
) -> PoolPosterior:
    """Fit and calibrate the pool posterior.

    Args:
        composition: float ``[N, E]`` element fractions of the pool.
        ids: ``[N]`` candidate ids.
        train_rows: int ``[n]`` pool rows that were measured (replicates allowed).
        y: float ``[n]`` measured values (target units).
        maximize: target direction.
        prior_median: ``[N]`` MIL ensemble median over the pool (target units), or ``None``.
        prior_train: ``[n]`` the MIL's out-of-fold median at the training points (else the pool
            median at their rows). Given without ``prior_median`` (then all finite), the
            posterior is fitted and scored without the pool's prior column and comes back with
            ``prior_pending``; :meth:`PoolPosterior.with_prior_median` completes it.
        embedding: ``[N, d]`` MIL bag embeddings, or ``None``.
        embedding_dims: principal components of the embedding the kernel sees (0 = none).
        kernel: ``matern`` (default) or ``rbf`` (see :func:`_base_kernel`).
        prior_in_kernel: the prior-mean column is also a kernel input (a 1-d learned feature:
            candidates the MIL predicts alike are correlated); out of fold at training points.
        calibration: how the posterior is made to cover at ``1 - alpha`` on K-fold
            held-out rows: ``scale`` multiplies every (co)variance by ``c**2``
            (:func:`calibration_factor`); ``noise`` adds the smallest noise variance that
            covers (:func:`noise_calibration`; the prior variance far from data stays 1);
            ``noise-z2`` adds the smallest noise at which the held-out ``z`` have mean square
            1 (:func:`noise_z2_calibration`);
            ``none`` keeps the marginal-likelihood fit (a plain GP, intervals uncalibrated).
        residual_scale: with a prior mean, ``fixed`` keeps the residual GP's outputscale at 1
            (the outcome variance); ``learned`` fits it by marginal likelihood, so a prior
            mean that explains the rows also shrinks the posterior variance away from them.
        alpha: miscoverage level the calibration targets.
        n_folds: folds of the cross-validated calibration scores (refits per fold); 0:
            leave one composition out up to :data:`LOO_MAX_GROUPS` compositions, else 5
            (:func:`fold_count`).
        cv_repeats: independent fold splits the scores are repeated over (every row is
            scored once per split; the calibration averages its quantile over the splits and the
            model-choice scores average each row's losses), damping how much the one split
            moves ``d`` and the choice. Leave-one-out has one split.
        seed: seeds the hyper-parameter fit and the folds.
    """
    comp = np.asarray(composition, dtype=np.float64)
    n_pool = comp.shape[0]
    train_rows = np.asarray(train_rows, dtype=np.int64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(ids) != n_pool:
        raise InputError(f"Got {len(ids)} ids for a pool of {n_pool} compositions; pass one id per row.")
    if train_rows.shape != y.shape:
        raise InputError(f"Got {len(train_rows)} training rows for {len(y)} values; pass one row per value.")
    if len(y) < 2:
        raise InputError(
            f"The posterior needs at least 2 measurements, the campaign has {len(y)}; propose a "
            "space-filling batch first."
        )
    if not np.isfinite(y).all():
        raise InputError("A training value is NaN or inf; drop failed measurements before fitting.")
    if train_rows.min() < 0 or train_rows.max() >= n_pool:
        raise InputError("A training row lies outside the pool; add measured compositions to the pool.")
    notes: list[str] = []
    sign = 1.0 if maximize else -1.0
    y_mean = float(y.mean())
    y_std = float(y.std()) or 1.0
    yo = sign * (y - y_mean) / y_std

    cols = [comp]
    n_emb = 0
    if embedding is not None and embedding_dims > 0:
        emb = embedding_columns(embedding, embedding_dims)
        n_emb = emb.shape[1]
        cols.append(emb)
    d_kernel = sum(c.shape[1] for c in cols)
    prior = prior_median is not None or prior_train is not None
    pending = prior_median is None and prior_train is not None
    if pending:  # the fit reads only the training points; the pool column comes later
        pt = np.asarray(prior_train, dtype=np.float64).reshape(-1)
        if pt.shape != y.shape or not np.isfinite(pt).all():
            raise InputError("Without the pool's prior median, the prior at the training points "
                             "must be one finite value per measurement.")
        pm = np.full(n_pool, np.nan)
    elif prior:
        pm = _prior_column(prior_median, n_pool, maximize, y_mean, y_std)
    else:
        pm = np.zeros(n_pool)
    X = torch.as_tensor(np.hstack(cols + [pm[:, None]]), dtype=torch.float64)
    train_X = X[torch.as_tensor(train_rows)].clone()
    if prior and prior_train is not None:
        pt = np.asarray(prior_train, dtype=np.float64).reshape(-1)
        ok = np.isfinite(pt)
        if pt.shape == y.shape and ok.any():
            col = train_X[:, -1].numpy().copy()
            col[ok] = sign * (pt[ok] - y_mean) / y_std
            train_X[:, -1] = torch.as_tensor(col)
    train_Y = torch.as_tensor(yo, dtype=torch.float64).unsqueeze(-1)

    d_comp = comp.shape[1]
    if prior and prior_in_kernel:
        d_kernel += 1  # the prior column is the last one, right after the kernel columns
    if kernel not in KERNELS:
        raise InputError(f"Unknown posterior kernel {kernel!r}; use one of {', '.join(KERNELS)}.")
    if calibration not in CALIBRATIONS:
        raise InputError(f"Unknown posterior calibration {calibration!r}; use one of "
                         f"{', '.join(CALIBRATIONS)}.")
    if residual_scale not in RESIDUAL_SCALES:
        raise InputError(f"Unknown residual_scale {residual_scale!r}; use one of "
                         f"{', '.join(RESIDUAL_SCALES)}.")
    learn = residual_scale == "learned"
    base = _fit(train_X, train_Y, d_kernel, prior, seed, kernel=kernel, learn_scale=learn)
    folds = _cv_folds(train_X, train_Y, d_kernel, prior, n_folds=n_folds, seed=seed,
                      d_group=d_comp, init=base.state_dict(), kernel=kernel, learn_scale=learn,
                      repeats=cv_repeats)
    nan = np.full((1, len(y)), np.nan)
    resid, z = (nan, nan) if folds is None else folds.score(0.0)
    c, extra, z_cal, note = 1.0, 0.0, z, ""
    if calibration == "scale":
        # outputscale and noise scaled by c^2 (mean unchanged, covariances x c^2)
        c, _, note = calibration_factor(z, alpha)
        base.covar_module.outputscale = c ** 2
        base.likelihood.noise = base.likelihood.noise * c ** 2
        z_cal = z / c
    elif calibration in NOISE_CALIBRATIONS and folds is not None:
        # noise + d (prior variance unchanged; the mean smooths as the noise grows)
        extra, _, note = NOISE_CALIBRATIONS[calibration](folds.score, alpha)
        base.likelihood.noise = base.likelihood.noise + extra
        z_cal = folds.score(extra)[1]
    if note:
        notes.append(note)
    base.train()
    base.eval()  # drop any prediction cache of the uncalibrated model
    zq = _z_quantile(alpha)
    ok = np.isfinite(z_cal)
    cv_cov = float(np.mean(z_cal[ok] <= zq)) if ok.any() else float("nan")
    return PoolPosterior(
        model=base, X=X, ids=tuple(ids), train_X=train_X, train_Y=train_Y,
        train_rows=train_rows, y_mean=y_mean, y_std=y_std, maximize=maximize, scale=c,
        calibration=calibration, extra_noise=extra,
        cv_folds=0 if folds is None else folds.n_folds,
        cv_repeats=1 if folds is None else folds.repeats,
        alpha=alpha, cv_coverage=cv_cov, n_embedding=n_emb, prior=prior,
        cv_mse=float(np.nanmean(resid ** 2)) if np.isfinite(resid).any() else float("nan"),
        cv_crps=cv_crps(resid, z), cv_spearman=cv_spearman(train_Y[:, 0].numpy(), resid),
        notes=notes, prior_pending=pending, cv_resid=resid, cv_z=z,
    )
