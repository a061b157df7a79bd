"""``propose_batch``: fit the calibrated pool posterior and choose the next q candidates."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from activemil.acquisition import policies as P
from activemil.acquisition.choice import (
    DEFAULT_RULE,
    RULE_TEXT,
    CVRecord,
    check_rule,
    choose,
    rounded,
)
from activemil.acquisition.names import POLICIES, POSTERIOR_MODELS
from activemil.acquisition.posterior import (
    DEFAULT_CALIBRATION,
    DEFAULT_CV_FOLDS,
    DEFAULT_CV_REPEATS,
    DEFAULT_KERNEL,
    DEFAULT_RESIDUAL_SCALE,
    NOISE_CALIBRATIONS,
    PoolPosterior,
    check_cv_folds,
    check_cv_repeats,
    fit_pool_posterior,
)
from activemil.errors import InputError
from activemil.surrogates.prediction import ALPHAS, MEDIAN_INDEX, Prediction, interval_indices

COLUMNS = ("rank", "id", "acquisition", "policy", "median", "lo_05", "hi_05", "lo_10", "hi_10",
           "lo_20", "hi_20", "stratum", "top_sites")
#: most attended sites listed per pick in ``top_sites``
TOP_K_SITES = 3


def policy_settings(kw: dict[str, Any]) -> P.PolicySettings:
    """:class:`PolicySettings` from keyword options, refusing unknown or invalid ones."""
    names = {f.name for f in dataclasses.fields(P.PolicySettings)}
    unknown = sorted(set(kw) - names)
    if unknown:
        raise InputError(
            f"Unknown acquisition option(s) {', '.join(unknown)}; accepted options are "
            f"{', '.join(sorted(names))}."
        )
    try:
        s = P.PolicySettings(**{k: int(v) for k, v in kw.items()})
    except (TypeError, ValueError):
        raise InputError(
            f"Acquisition options {kw} must be integers; pass for example mc_samples=256."
        ) from None
    if s.mc_samples < 2 or s.kg_inner < 1 or min(s.kg_candidates, s.mc_shortlist,
                                                 s.embedding_dims) < 0:
        raise InputError(
            "mc_samples must be at least 2, kg_inner at least 1 and the other acquisition "
            "options non-negative; pass for example mc_samples=256."
        )
    return s


def top_sites_text(attention: np.ndarray | None, site_index: np.ndarray | None,
                   site_kind: np.ndarray | None, kind_names: Sequence[str], row: int,
                   k: int = 3) -> str:
    """``"site 12 (ontop) a=0.08; ..."`` for the k most attended sites of a bag ('' if none)."""
    if attention is None or site_index is None:
        return ""
    att = np.asarray(attention[row], dtype=np.float64)
    idx = np.asarray(site_index[row])
    width = min(att.shape[0], idx.shape[0])
    att, idx = att[:width], idx[:width]
    real = np.flatnonzero(idx >= 0)
    top = real[np.argsort(-att[real], kind="stable")[:k]]
    parts = []
    for j in top:
        label = ""
        if site_kind is not None and site_kind[row][j] >= 0:
            kd = int(site_kind[row][j])
            label = f" ({kind_names[kd] if kd < len(kind_names) else f'kind {kd}'})"
        parts.append(f"site {int(idx[j])}{label} a={att[j]:.2f}")
    return "; ".join(parts)


def _rows(ids: Iterable[str], index: dict[str, int], what: str) -> tuple[np.ndarray, int]:
    if isinstance(ids, str):
        raise InputError(f"{what} must be a list of candidate ids, not the string {ids!r}.")
    rows, missing = [], 0
    for c in ids:
        r = index.get(str(c))
        if r is None:
            missing += 1
        else:
            rows.append(r)
    return np.unique(np.asarray(rows, dtype=np.int64)), missing


def calibration_text(post: PoolPosterior) -> str:
    """How ``post`` was calibrated, in a few words (for the proposal notes)."""
    if post.calibration in NOISE_CALIBRATIONS:
        return f"calibration {post.calibration} +{post.extra_noise:.3g} (standardised)"
    if post.calibration == "scale":
        return f"calibration scale x{post.scale:.2f}"
    return "uncalibrated"


def build_posterior(
    bags: Any,
    train_ids: Sequence[str],
    train_y: np.ndarray,
    *,
    surrogate: Any = None,
    transfer: np.ndarray | None = None,
    maximize: bool = True,
    alpha: float = 0.1,
    embedding_dims: int = 0,
    prior_in_kernel: bool = False,
    kernel: str = DEFAULT_KERNEL,
    calibration: str = DEFAULT_CALIBRATION,
    cv_folds: int = DEFAULT_CV_FOLDS,
    cv_repeats: int = DEFAULT_CV_REPEATS,
    residual_scale: str = DEFAULT_RESIDUAL_SCALE,
    model: str = "auto",
    seed: int = 0,
    lazy: bool = True,
    rule: str = DEFAULT_RULE,
) -> tuple[PoolPosterior, Prediction | None]:
    """The calibrated posterior over the pool ``bags`` and the surrogate's own pool prediction.

    Candidate posteriors, compared out of fold:

    - ``gp``: composition GP, constant mean;
    - ``mil`` (when a surrogate is given): the same GP with the MIL ensemble's median as prior
      mean (its out-of-fold median at the training points), plus ``embedding_dims`` principal
      components of its bag embedding in the kernel;
    - ``transfer`` (when prior tables are given): the same GP with the prior tables' GP mean as
      prior mean (stacked residual GP, :mod:`activemil.acquisition.transfer`).

    ``model="auto"`` keeps the variant the choice ``rule`` (:func:`~activemil.acquisition.
    choice.choose`) prefers, judged by K-fold cross-validation on the campaign's own
    measurements (the same folds for every variant). The default, ``mse``, keeps the variant
    with the lowest CV squared error of the mean. ``spearman`` (the highest CV Spearman) won the
    offline comparison of rules within noise but lost the campaign backtests on both OER plates
    (docs/benchmarks.md, "Small-N model choice" and "Transfer"), so it is an option. Every rule keeps the GP
    on ties, on unscored variants and when no variant passes its test, so it never picks a
    model that scores worse than the GP under the rule's own score. A name of
    :data:`POSTERIOR_MODELS` pins one. The choice, the rule, every score and the rule's
    standard errors are in ``posterior.choice``.

    Args:
        bags: the whole pool (a ``BagSet``; composition fractions are its first side columns).
        train_ids, train_y: measured ids (all in ``bags``) and values ``[n]`` (target units).
        surrogate: a fitted MIL-type surrogate, or ``None``.
        transfer: ``[N]`` the prior GP's mean over the pool rows of ``bags`` in the priors'
            standardised, oriented units (:func:`~activemil.acquisition.transfer.prior_mean`),
            or ``None``.
        embedding_dims, prior_in_kernel, kernel, calibration: options of
            :func:`fit_pool_posterior`; cv_repeats: its fold splits; cv_folds: its
            ``n_folds`` (0: leave one out at
            small n, see :func:`~activemil.acquisition.posterior.fold_count`).
        rule: one of :data:`~activemil.acquisition.choice.CHOICE_RULES` (``mse`` is the
            former lowest-CV-MSE choice).
        lazy: score ``mil`` on the training points only and predict the pool with the MIL
            only if ``mil`` is chosen (pinned or won). The scores read only the MIL's
            out-of-fold median at the training rows, so choice, scores and posterior equal the
            eager path's (``lazy=False``: predict the pool first). Eager anyway when the
            scores need the pool prediction: ``embedding_dims > 0`` (PCA over the pool) or no
            finite out-of-fold median at every training row.

    Returns:
        ``(posterior, prediction)``: ``prediction`` is the surrogate's ``Prediction`` over the
        whole pool when it was computed (``mil`` chosen, or the eager path), else ``None``.
    """
    from activemil.surrogates.base import composition_columns

    if model != "auto" and model not in POSTERIOR_MODELS:
        raise InputError(f"Unknown posterior model {model!r}; use auto, "
                         f"{', '.join(POSTERIOR_MODELS)}.")
    check_rule(rule)  # before any fit (with one variant, choose() never runs)
    if model == "transfer" and transfer is None:
        raise InputError("The transfer posterior needs prior tables; create the campaign with "
                         "--prior FILE --prior-target COLUMN, or pin another model.")
    index = {c: i for i, c in enumerate(bags.ids)}
    missing = [c for c in train_ids if c not in index]
    if missing:
        raise InputError(f"Measured id {missing[0]!r} is not in the pool; add it to the pool first.")
    train_rows = np.array([index[c] for c in train_ids], dtype=np.int64)
    e = composition_columns(bags)
    comp = np.asarray(bags.side[:, :e], dtype=np.float64)
    y = np.asarray(train_y, float)
    common = {"maximize": maximize, "alpha": alpha, "seed": seed, "kernel": kernel,
              "calibration": calibration, "residual_scale": residual_scale,
              "n_folds": check_cv_folds(cv_folds),  # a bad setting fails before any fit
              "cv_repeats": check_cv_repeats(cv_repeats)}
    fits: dict[str, PoolPosterior] = {}
    pred = None
    wanted = POSTERIOR_MODELS if model == "auto" else (model,)
    if "gp" in wanted or (surrogate is None and transfer is None):
        fits["gp"] = fit_pool_posterior(comp, tuple(bags.ids), train_rows, y, **common)
    if surrogate is not None and "mil" in wanted:
        oof = getattr(surrogate, "oof_median", None)
        oof = None if oof is None or len(oof) != len(train_ids) else np.asarray(oof, float)
        if lazy and embedding_dims <= 0 and oof is not None and np.isfinite(oof).all():
            fits["mil"] = fit_pool_posterior(  # pool column pending until chosen
                comp, tuple(bags.ids), train_rows, y, prior_train=oof,
                prior_in_kernel=prior_in_kernel, **common)
        else:
            pred = surrogate.predict(bags)
            fits["mil"] = fit_pool_posterior(
                comp, tuple(bags.ids), train_rows, y, prior_median=pred.median, prior_train=oof,
                embedding=pred.embedding, embedding_dims=embedding_dims,
                prior_in_kernel=prior_in_kernel, **common)
        fits["mil"].prior_source = "MIL median"
    if transfer is not None and "transfer" in wanted:
        tz = np.asarray(transfer, dtype=np.float64).reshape(-1)
        if tz.shape != (len(bags.ids),) or not np.isfinite(tz).all():
            raise InputError("The prior tables' mean must be one finite value per pool row.")
        sign = 1.0 if maximize else -1.0
        fits["transfer"] = fit_pool_posterior(  # in target units: y = m + sign * s * z
            comp, tuple(bags.ids), train_rows, y,
            prior_median=float(y.mean()) + sign * (float(y.std()) or 1.0) * tz, **common)
        fits["transfer"].prior_source = "prior tables' GP mean"
    chosen, info = next(iter(fits)), {"rule": rule}
    if len(fits) > 1:
        chosen, info = choose({k: CVRecord.of(p) for k, p in fits.items()}, rule)
    post = fits[chosen]
    if post.prior_pending:  # mil chosen: now the pool's prior mean is needed
        pred = surrogate.predict(bags)
        post = post.with_prior_median(pred.median)

    post.choice = {"model": chosen, "pinned": model != "auto", "rule": rule,
                   "cv_mse": {k: rounded(p.cv_mse) for k, p in fits.items()},
                   "cv_crps": {k: rounded(p.cv_crps) for k, p in fits.items()},
                   "cv_spearman": {k: rounded(p.cv_spearman) for k, p in fits.items()},
                   **{k: v for k, v in info.items() if k in ("eligible", "se_of", "diff", "se")}}
    if len(fits) > 1:
        post.notes.append(f"model choice: {chosen} by rule {rule} ({RULE_TEXT[rule]}); "
                          + "; ".join(_score_text(k, post.choice) for k in fits))
    return post, pred


def _score_text(k: str, choice: dict) -> str:
    """``"mil CRPS 0.61 MSE 0.88 Spearman 0.52 (dCRPS -0.04 +- 0.02)"`` for the note."""
    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3g}"

    t = (f"{k} CRPS {f(choice['cv_crps'][k])} MSE {f(choice['cv_mse'][k])} "
         f"Spearman {f(choice['cv_spearman'][k])}")
    if k in choice.get("se", {}):
        t += f" (d{choice['se_of'].upper()} vs gp {f(choice['diff'][k])} +- {f(choice['se'][k])})"
    return t


def posterior_prediction(post: PoolPosterior, pred: Prediction | None, strata: np.ndarray) -> Prediction:
    """The posterior's calibrated 9 quantiles over the whole pool as a :class:`Prediction`.

    Attention, contributions and embedding are ``pred``'s (the surrogate's pool prediction);
    without it (``None``: not needed by the chosen posterior) attention and contributions are
    ``None`` and the embedding is the posterior's kernel inputs ``[N, d - 1]``.
    """
    q = post.quantiles()
    return Prediction(
        ids=post.ids, quantiles=q, member_quantiles=q[None],
        attention=None if pred is None else pred.attention,
        embedding=post.X[:, :-1].numpy() if pred is None else pred.embedding,
        strata=np.asarray(strata), contributions=None if pred is None else pred.contributions,
    )


def propose_from_posterior(
    post: PoolPosterior,
    q: int,
    policy: str,
    *,
    exclude: Iterable[str] = (),
    pending: Iterable[str] = (),
    seed: int = 0,
    alpha: float = 0.1,
    strata: np.ndarray | None = None,
    attention: np.ndarray | None = None,
    site_index: np.ndarray | None = None,
    site_kind: np.ndarray | None = None,
    site_kind_names: Sequence[str] = (),
    top_k_sites: int = TOP_K_SITES,
    **policy_kw: Any,
) -> pd.DataFrame:
    """Choose ``q`` candidates on a fitted posterior.

    Args:
        post: the calibrated pool posterior.
        q: batch size; policy: one of :data:`POLICIES`.
        exclude: measured ids (never proposed); pending: in-flight ids (never proposed,
            conditioned on).
        seed: tie-break order, QMC samples and posterior draws.
        alpha: miscoverage of the UCB interval (0.05, 0.10 or 0.20).
        strata, attention, site_index, site_kind, site_kind_names: pool annotations for the
            output table (``[N]``, ``[N, K]``).
        policy_kw: :class:`~activemil.acquisition.policies.PolicySettings` fields.

    Returns:
        DataFrame with columns :data:`COLUMNS` (quantiles in target units from the calibrated
        posterior); ``.attrs["notes"]`` (list of str) and ``.attrs["seconds"]``.
    """
    t0 = time.perf_counter()
    if policy not in POLICIES:
        raise InputError(f"Unknown acquisition policy {policy!r}; use one of {', '.join(POLICIES)}.")
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 1:
        raise InputError(f"Batch size q={q!r} is not a positive integer; pass for example 8.")
    if not any(abs(alpha - a) < 1e-12 for a in ALPHAS):
        raise InputError(
            f"alpha={alpha} has no calibrated interval; use one of {', '.join(map(str, ALPHAS))}."
        )
    settings = policy_settings(policy_kw)
    index = {c: i for i, c in enumerate(post.ids)}
    ex_rows, ex_missing = _rows(exclude, index, "exclude")
    pe_rows, pe_missing = _rows(pending, index, "pending")
    notes: list[str] = list(post.notes)
    if ex_missing:
        notes.append(f"{ex_missing} measured id(s) are not in the pool")
    if pe_missing:
        notes.append(f"{pe_missing} pending id(s) are not in the pool (not conditioned on)")
    allowed = np.ones(post.n, dtype=bool)
    allowed[ex_rows] = False
    allowed[pe_rows] = False
    n_allowed = int(allowed.sum())
    if q > n_allowed:
        raise InputError(
            f"Asked for q={q} candidates but only {n_allowed} of the {post.n} pool candidates "
            "are neither measured nor pending; lower the budget or enlarge the design space."
        )
    sel = P.run_policy(policy, post, int(q), allowed, pe_rows, alpha=alpha, seed=seed,
                       settings=settings)
    notes.extend(sel.notes)
    rows = np.asarray(sel.rows, dtype=np.int64)
    if len(set(rows.tolist())) != q or not allowed[rows].all():  # internal invariant
        raise RuntimeError(f"policy {policy} returned invalid rows {rows.tolist()}")
    qt = post.quantiles(rows)
    data: dict[str, Any] = {
        "rank": np.arange(1, q + 1), "id": [post.ids[r] for r in rows],
        "acquisition": np.asarray(sel.values, dtype=np.float64), "policy": [policy] * q,
        "median": qt[:, MEDIAN_INDEX],
    }
    for a, tag in zip(ALPHAS, ("05", "10", "20")):
        i, j = interval_indices(a)
        data[f"lo_{tag}"] = qt[:, i]
        data[f"hi_{tag}"] = qt[:, j]
    data["stratum"] = (np.full(q, -1) if strata is None else np.asarray(strata)[rows])
    data["top_sites"] = [top_sites_text(attention, site_index, site_kind, site_kind_names,
                                        int(r), top_k_sites) for r in rows]
    df = pd.DataFrame(data, columns=list(COLUMNS))
    notes.append(
        f"posterior: GP on composition{f' + {post.n_embedding}-d MIL embedding' if post.n_embedding else ''}"
        f"{f' with the {post.prior_source} as prior mean' if post.prior else ''}, "
        f"{len(post.train_Y)} "
        f"measurements, {calibration_text(post)} ({post.cv_folds}-fold{f' x {post.cv_repeats} splits' if post.cv_repeats > 1 else ''} cross-validated "
        f"coverage {post.cv_coverage:.0%} at {1 - post.alpha:.0%})"
    )
    df.attrs["notes"] = notes
    df.attrs["seconds"] = time.perf_counter() - t0
    return df


def propose_batch(
    bags: Any,
    train_ids: Sequence[str],
    train_y: np.ndarray,
    q: int,
    policy: str,
    *,
    surrogate: Any = None,
    transfer: np.ndarray | None = None,
    maximize: bool = True,
    exclude: Iterable[str] = (),
    pending: Iterable[str] = (),
    seed: int = 0,
    alpha: float = 0.1,
    **policy_kw: Any,
) -> tuple[pd.DataFrame, PoolPosterior, Prediction | None]:
    """Fit the pool posterior on the measurements and propose ``q`` jointly chosen candidates.

    ``surrogate`` (a fitted MIL ensemble, or ``None`` for a composition GP) supplies the prior
    mean, the embedding and the attention shown in ``top_sites``; ``transfer`` (the prior
    tables' GP mean over the pool) adds the transfer posterior to the model choice. Measured ids are always
    excluded. Returns ``(table, posterior, surrogate's pool prediction or None)``; the table is
    as :func:`propose_from_posterior`'s. The pool prediction is ``None`` unless the chosen
    posterior needed it (see :func:`build_posterior`); ``top_sites`` then comes from
    predicting the q picked bags only.
    """
    t0 = time.perf_counter()
    dims = int(policy_kw.get("embedding_dims", P.PolicySettings.embedding_dims))
    model = str(policy_kw.pop("model", "auto"))
    kernel = str(policy_kw.pop("kernel", DEFAULT_KERNEL))
    calibration = str(policy_kw.pop("calibration", DEFAULT_CALIBRATION))
    cv_folds = policy_kw.pop("cv_folds", DEFAULT_CV_FOLDS)
    cv_repeats = policy_kw.pop("cv_repeats", DEFAULT_CV_REPEATS)
    residual_scale = str(policy_kw.pop("residual_scale", DEFAULT_RESIDUAL_SCALE))
    rule = str(policy_kw.pop("choice_rule", DEFAULT_RULE))
    post, pred = build_posterior(bags, train_ids, train_y, surrogate=surrogate,
                                 transfer=transfer, maximize=maximize,
                                 alpha=alpha, embedding_dims=dims, model=model, kernel=kernel,
                                 calibration=calibration, cv_folds=cv_folds, seed=seed,
                                 cv_repeats=cv_repeats,
                                 residual_scale=residual_scale,
                                 rule=rule)
    t1 = time.perf_counter()
    kinds = tuple(str(k) for k in (getattr(bags, "meta", {}) or {}).get("site_kinds", ()))
    df = propose_from_posterior(
        post, q, policy, exclude=set(exclude) | set(map(str, train_ids)), pending=pending,
        seed=seed, alpha=alpha, strata=np.asarray(bags.strata),
        attention=None if pred is None else pred.attention,
        site_index=np.asarray(bags.site_index), site_kind=np.asarray(bags.site_kind),
        site_kind_names=kinds, **policy_kw,
    )
    if pred is None and surrogate is not None:  # attention of the picks only
        index = {c: i for i, c in enumerate(bags.ids)}
        picked = bags.subset(np.array([index[c] for c in df["id"]], dtype=np.int64))
        att = surrogate.predict(picked).attention
        df["top_sites"] = [top_sites_text(att, np.asarray(picked.site_index),
                                          np.asarray(picked.site_kind), kinds, i,
                                          int(policy_kw.get("top_k_sites", TOP_K_SITES)))
                           for i in range(len(df))]
    df.attrs["fit_seconds"] = t1 - t0
    df.attrs["seconds"] = time.perf_counter() - t0
    return df, post, pred
