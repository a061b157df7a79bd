"""Honest peers that run beside the campaigns, from the same initial rows: plain BoTorch GP-EI
(what materials labs use, Pedersen et al. 2021) and BayBE's default campaign.

Both see only the composition fractions of the pool and the labels of their own picks.
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


class GPEIStrategy:
    """``SingleTaskGP`` on all observed rows + qLogEI via ``optimize_acqf_discrete`` over the
    unobserved compositions (``unique=True``); no folds, no conformal step, no particles. With
    fewer than 2 observations it picks at random (seeded) and says so in the notes."""

    name = "gp-ei"
    needs_features = False

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
        acqf = gp_ei_acquisition(fr[ctx.observed_rows], ctx.observed_y, ctx.maximize, seed32)
        choices = torch.as_tensor(fr[free])
        with torch.no_grad():
            cand, _ = optimize_acqf_discrete(acqf, q=q, choices=choices, unique=True)
        return Proposal(rows=match_rows(cand.numpy(), fr[free], free), mode="model")


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
    once (BayBE's AUTO default allows it)."""

    name = "baybe"
    needs_features = False

    def start(self, scenario: Scenario, seed: int) -> BayBESession:
        return BayBESession(scenario, seed)

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal:
        raise RuntimeError("The baybe strategy keeps a BayBE campaign: call start() first.")


class BayBESession:
    """One BayBE campaign; ``propose`` adds the new measurements, then recommends."""

    name = "baybe"
    needs_features = False

    def __init__(self, scenario: Scenario, seed: int) -> None:
        from baybe import Campaign
        from baybe.parameters import NumericalDiscreteParameter
        from baybe.searchspace import SearchSpace
        from baybe.targets import NumericalTarget
        from baybe.utils.random import set_random_seed

        set_random_seed(int(seed % (2**31 - 1)))
        pool = scenario.pool
        self.pool, self.elements, self.target = pool, list(pool.elements), scenario.target
        df = pd.DataFrame(pool.fractions, columns=self.elements)
        params = [NumericalDiscreteParameter(name=e, values=tuple(np.unique(df[e].to_numpy())))
                  for e in self.elements]
        self.campaign = Campaign(
            searchspace=SearchSpace.from_dataframe(df, params),
            objective=NumericalTarget(name=scenario.target, minimize=not scenario.maximize),
            allow_recommending_already_measured=False,
            allow_recommending_already_recommended=False,
        )
        self.added: set[int] = set()

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal:
        import time

        t0 = time.perf_counter()
        new = [k for k, i in enumerate(ctx.observed_rows) if int(i) not in self.added]
        if new:
            rows = np.asarray(ctx.observed_rows)[new]
            meas = pd.DataFrame(self.pool.fractions[rows], columns=self.elements)
            meas[self.target] = np.asarray(ctx.observed_y)[new]
            self.campaign.add_measurements(meas)
            self.added.update(int(i) for i in rows)
        t1 = time.perf_counter()
        rec = self.campaign.recommend(batch_size=min(q, len(ctx.unobserved_rows)))
        t2 = time.perf_counter()
        free = ctx.unobserved_rows
        rows = match_rows(rec[self.elements].to_numpy(np.float64), self.pool.fractions[free],
                          free)
        return Proposal(rows=rows, mode="baybe",
                        seconds={"add_measurements": t1 - t0, "recommend": t2 - t1})

    def close(self) -> None:
        pass
