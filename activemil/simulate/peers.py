"""Honest peers that run beside the campaigns, from the same initial rows: plain BoTorch GP-EI
(what materials labs use, Pedersen et al. 2021) and BayBE's default campaign.

Both see only the composition fractions of the pool and the labels of their own picks. With
prior tables (``gp-ei+prior``, ``baybe+prior``) they get the fair equivalent of the campaign's
transfer: BoTorch's ``MultiTaskGP`` (ICM kernel, Bonilla et al. 2008) over the union of the
elements with missing elements at 0, and BayBE's transfer learning (a ``TaskParameter`` whose
only active value is the campaign's own task). Every transfer model sees the same prior rows
(:meth:`activemil.acquisition.transfer.PriorData.subsample`).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd

from activemil.simulate.scenario import Scenario
from activemil.simulate.strategies import Proposal, StrategyContext

#: MC samples of qLogEI (fixed-seed Sobol samples, so a round is reproducible)
GP_EI_MC_SAMPLES = 512


def gp_ei_acquisition(
    X: np.ndarray, y: np.ndarray, maximize: bool, seed: int
) -> Any:
    """qLogEI on a ``SingleTaskGP`` fitted to all observations.

    Args:
        X: float64 ``[n, E]`` composition fractions; ``y``: float64 ``[n]`` labels.
        maximize: direction (labels are negated for minimisation).
        seed: seed of the Sobol MC sampler.

    Returns:
        ``qLogExpectedImprovement``. The outcome is ``Standardize(m=1)``-transformed; the
        posterior is reported in outcome units, so ``best_f`` is the best observed value in those
        units (the same improvement as the best standardised value on the standardised scale,
        EI being scale-equivariant).
    """
    import torch
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.sampling.normal import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood

    sign = 1.0 if maximize else -1.0
    train_x = torch.as_tensor(np.asarray(X, np.float64))
    train_y = torch.as_tensor(sign * np.asarray(y, np.float64)).unsqueeze(-1)
    torch.manual_seed(seed)
    model = SingleTaskGP(train_x, train_y, outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    sampler = SobolQMCNormalSampler(torch.Size([GP_EI_MC_SAMPLES]), seed=seed)
    return qLogExpectedImprovement(model, best_f=train_y.max(), sampler=sampler)


def mtgp_ei_acquisition(
    X: np.ndarray, y: np.ndarray, elements: tuple[str, ...], prior: Any, maximize: bool,
    seed: int,
) -> Any:
    """qLogEI on BoTorch's ``MultiTaskGP`` over the campaign's rows (task 0) and the prior rows
    (task 1 + table index), inputs in the union of the elements.

    Args:
        X: float64 ``[n, E]`` campaign compositions over ``elements``; ``y``: ``[n]`` labels.
        prior: :class:`~activemil.acquisition.transfer.PriorData`.
        maximize: direction; seed: Sobol seed.

    Returns:
        ``qLogExpectedImprovement`` on the campaign task; candidates are ``[b, q, U]`` union-space
        compositions without the task column (``output_tasks=[0]`` supplies it). Each task is
        standardised and oriented on its own (the ICM kernel has one shared constant mean), then
        the model's default ``Standardize`` applies.
    """
    import torch
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import MultiTaskGP
    from botorch.sampling.normal import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from activemil.acquisition.transfer import pool_in_union

    sign = 1.0 if maximize else -1.0
    y = np.asarray(y, np.float64)
    zt = sign * (y - y.mean()) / (y.std() or 1.0)
    rows, _ = prior.subsample()
    Xp, zp = prior.in_space(elements)[rows], prior.oriented(maximize)[rows]
    Xt = pool_in_union(elements, X, prior)
    train_X = torch.as_tensor(np.vstack([
        np.hstack([Xt, np.zeros((len(Xt), 1))]),
        np.hstack([Xp, 1.0 + prior.task[rows][:, None]]),
    ]))
    train_Y = torch.as_tensor(np.concatenate([zt, zp])).unsqueeze(-1)
    torch.manual_seed(seed)
    model = MultiTaskGP(train_X, train_Y, task_feature=-1, output_tasks=[0])
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    sampler = SobolQMCNormalSampler(torch.Size([GP_EI_MC_SAMPLES]), seed=seed)
    return qLogExpectedImprovement(model, best_f=float(zt.max()), sampler=sampler)


def prior_data(scenario: Scenario, name: str) -> Any:
    """The scenario's prior tables as :class:`~activemil.acquisition.transfer.PriorData`, or an
    InputError naming the flags when it has none."""
    from activemil.acquisition.transfer import PriorData

    return PriorData.from_priors(scenario.require_priors(name))


class GPEIStrategy:
    """``SingleTaskGP`` on all observed rows + qLogEI via ``optimize_acqf_discrete`` over the
    unobserved compositions (``unique=True``); no folds, no conformal step, no particles. With
    fewer than 2 observations it picks at random (seeded) and says so in the notes.

    ``use_prior=True`` (``gp-ei+prior``): BoTorch's ``MultiTaskGP`` on the campaign's rows and
    the scenario's prior tables instead (:func:`mtgp_ei_acquisition`)."""

    needs_features = False

    def __init__(self, use_prior: bool = False) -> None:
        self.use_prior = use_prior
        self.name = "gp-ei+prior" if use_prior else "gp-ei"
        self._prior = None

    def start(self, scenario: Scenario, seed: int) -> GPEIStrategy:
        out = GPEIStrategy(self.use_prior)
        if self.use_prior:
            out._prior = prior_data(scenario, self.name)
        return out

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal:
        free = ctx.unobserved_rows
        q = min(q, len(free))
        if len(ctx.observed_rows) < 2:
            rng = np.random.default_rng(seed)
            return Proposal(
                rows=rng.choice(free, size=q, replace=False), mode="random",
                notes=[(f"gp-ei: {len(ctx.observed_rows)} observation(s), fewer than the 2 a "
                        "GP needs; this batch is random.")],
            )
        import torch
        from botorch.optim import optimize_acqf_discrete

        fr = ctx.pool.fractions
        seed32 = int(seed % (2**31 - 1))
        if self._prior is not None:
            from activemil.acquisition.transfer import pool_in_union

            acqf = mtgp_ei_acquisition(fr[ctx.observed_rows], ctx.observed_y,
                                       tuple(ctx.pool.elements), self._prior, ctx.maximize,
                                       seed32)
            space = pool_in_union(ctx.pool.elements, fr, self._prior)
        else:
            acqf = gp_ei_acquisition(fr[ctx.observed_rows], ctx.observed_y, ctx.maximize,
                                     seed32)
            space = fr
        choices = torch.as_tensor(space[free])
        with torch.no_grad():
            cand, _ = optimize_acqf_discrete(acqf, q=q, choices=choices, unique=True)
        return Proposal(rows=match_rows(cand.numpy(), space[free], free), mode="model")


def match_rows(picked: np.ndarray, choices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Pool rows of ``picked`` ``[q, E]`` compositions among ``choices`` ``[n, E]`` (pool rows
    ``rows`` ``[n]``), matched to 1e-6; raises RuntimeError when one has no match."""
    out = []
    for x in np.asarray(picked, np.float64):
        d = np.abs(choices - x[None, :]).max(axis=1)
        j = int(np.argmin(d))
        if d[j] > 1e-6:
            raise RuntimeError(f"picked composition {x} is not one of the candidates")
        out.append(int(rows[j]))
    return np.asarray(out, np.int64)


# ---------------------------------------------------------------------------- BayBE
def baybe_available() -> bool:
    """Whether BayBE (``activemil[peers]``) can be imported."""
    try:
        import baybe  # noqa: F401
    except ImportError:
        return False
    return True


BAYBE_MISSING = ("baybe is not installed (pip install 'activemil[peers]'); skipping the baybe "
                 "strategy.")


def say_baybe_missing() -> None:
    """The one line printed when the baybe peer is skipped."""
    print(BAYBE_MISSING, file=sys.stderr, flush=True)


class BayBEStrategy:
    """BayBE's default campaign (``TwoPhaseMetaRecommender``) on the scenario's pool: one
    ``NumericalDiscreteParameter`` per element over ``SearchSpace.from_dataframe(pool rows)``
    and one ``NumericalTarget`` in the scenario's direction. Recommending already measured or
    already recommended rows is switched off, as in a real campaign where a row is measured
    once (BayBE's AUTO default allows it).

    ``use_prior=True`` (``baybe+prior``): BayBE's transfer learning. The search space is the
    union of the elements plus a ``TaskParameter`` (the campaign's task ``campaign``, the only
    active value, and one task per prior table, named by the table); the prior rows are added,
    with their values as measured, as measurements of their tasks before the first
    recommendation."""

    needs_features = False

    def __init__(self, use_prior: bool = False) -> None:
        self.use_prior = use_prior
        self.name = "baybe+prior" if use_prior else "baybe"

    def start(self, scenario: Scenario, seed: int) -> BayBESession:
        prior = prior_data(scenario, self.name) if self.use_prior else None
        return BayBESession(scenario, seed, prior=prior, name=self.name)

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal:
        raise RuntimeError("The baybe strategy keeps a BayBE campaign: call start() first.")


class BayBESession:
    """One BayBE campaign; ``propose`` adds the new measurements, then recommends."""

    needs_features = False
    #: the campaign's own task value (``baybe+prior``)
    TASK = "campaign"

    def __init__(self, scenario: Scenario, seed: int, prior: Any = None,
                 name: str = "baybe") -> None:
        from baybe import Campaign
        from baybe.parameters import NumericalDiscreteParameter, TaskParameter
        from baybe.searchspace import SearchSpace
        from baybe.targets import NumericalTarget
        from baybe.utils.random import set_random_seed

        set_random_seed(int(seed % (2**31 - 1)))
        pool = scenario.pool
        self.name = name
        self.pool, self.elements, self.target = pool, list(pool.elements), scenario.target
        self.task = prior is not None
        df = pd.DataFrame(pool.fractions, columns=self.elements)
        measured_prior = None
        if prior is not None:
            from activemil.acquisition.transfer import pool_in_union

            union = list(prior.union(self.elements))
            df = pd.DataFrame(pool_in_union(self.elements, pool.fractions, prior), columns=union)
            df["task"] = self.TASK
            rows, _ = prior.subsample()
            measured_prior = pd.DataFrame(prior.in_space(self.elements)[rows], columns=union)
            measured_prior["task"] = [prior.names[t] for t in prior.task[rows]]
            # the prior values as measured: what a BayBE user adds (same property and units)
            measured_prior[scenario.target] = prior.values[rows]
        # parameter values cover the prior rows too; the search space holds the pool rows only
        values = df if measured_prior is None else pd.concat([df, measured_prior])
        params: list[Any] = [
            NumericalDiscreteParameter(name=e, values=tuple(np.unique(values[e].to_numpy())))
            for e in df.columns if e != "task"]
        if prior is not None:
            params.append(TaskParameter(name="task", values=(self.TASK, *prior.names),
                                        active_values=(self.TASK,)))
        self.campaign = Campaign(
            searchspace=SearchSpace.from_dataframe(df, params),
            objective=NumericalTarget(name=scenario.target, minimize=not scenario.maximize),
            allow_recommending_already_measured=False,
            allow_recommending_already_recommended=False,
        )
        self.union = [e for e in df.columns if e != "task"]
        if measured_prior is not None:
            self.campaign.add_measurements(measured_prior)
        self.added: set[int] = set()

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal:
        import time

        t0 = time.perf_counter()
        new = [k for k, i in enumerate(ctx.observed_rows) if int(i) not in self.added]
        if new:
            rows = np.asarray(ctx.observed_rows)[new]
            meas = pd.DataFrame(0.0, index=range(len(rows)), columns=self.union)
            meas[self.elements] = self.pool.fractions[rows]
            if self.task:
                meas["task"] = self.TASK
            meas[self.target] = np.asarray(ctx.observed_y)[new]
            self.campaign.add_measurements(meas)
            self.added.update(int(i) for i in rows)
        t1 = time.perf_counter()
        rec = self.campaign.recommend(batch_size=min(q, len(ctx.unobserved_rows)))
        t2 = time.perf_counter()
        free = ctx.unobserved_rows
        rows = match_rows(rec[self.elements].to_numpy(np.float64), self.pool.fractions[free],
                          free)
        return Proposal(rows=rows, mode=self.name,
                        seconds={"add_measurements": t1 - t0, "recommend": t2 - t1})

    def close(self) -> None:
        pass
