"""Transfer from related measured tables: a GP fitted on the prior tables whose posterior mean
becomes the prior-mean column of the campaign's posterior.

This is the stacked residual GP of Google Vizier's transfer learning (Golovin et al., KDD 2017):
the campaign GP models what the prior tables do not explain, ``y = w * m_prior(x) + b + f(x)``,
with ``w`` and ``b`` fitted by marginal likelihood and ``f`` the usual calibrated composition GP.
The prior enters only as an input column (:class:`~activemil.acquisition.posterior.PriorColumnMean`),
so conditioning, fantasies, Matheron paths and the cross-validated calibration work unchanged, and
the calibration is scored on the campaign's own measurements alone: a prior row never becomes a
campaign measurement nor enters a coverage figure.

Element sets may differ: every table lives in the union of the elements, missing elements at 0.
Each prior table is standardised and oriented (larger is better) on its own, so tables measured
in other units or with an offset share one scale; the prior GP treats them as one function.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from activemil.errors import InputError

#: prior rows the exact prior GP is fitted on at most (a seeded subsample beyond; the same rows
#: go to the multi-task GP and BayBE peers so the comparison is fair). Measured on the OER plates
#: (1 thread), Spearman of the prior mean with the other plate's truth: 3496 -> 3851 with 400,
#: 600, 800, 1,200 and all 2,121 rows 0.60, 0.60, 0.63, 0.58, 0.61 (2 s at 600, 89 s for all);
#: 3851 -> 3496 0.69 (400), 0.70 (600). The peers' multi-task GPs cost far more per round with
#: many prior rows (BayBE's recommend took 118-506 s per round with 1,000 rows and 151-179 s
#: with 600 on the loaded 2-core machine, BoTorch's MultiTaskGP + qLogEI 56-71 s with 600), so
#: a 10-seed transfer benchmark needs 300.
MAX_PRIOR_ROWS = 300


@dataclass(frozen=True)
class PriorData:
    """Related measured tables in one array form.

    Attributes:
        elements: the union of the tables' elements ``[E_p]`` (column order of ``fractions``).
        fractions: float64 ``[R, E_p]`` compositions (atomic fractions, missing elements 0).
        values: float64 ``[R]`` measured values (each table in its own units).
        task: int64 ``[R]`` index of the table each row came from.
        names: ``[T]`` table names (for notes).
    """

    elements: tuple[str, ...]
    fractions: np.ndarray
    values: np.ndarray
    task: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def from_tables(
        cls, tables: Sequence[tuple[str, Sequence[str], np.ndarray, np.ndarray]]
    ) -> PriorData:
        """From ``(name, elements [E_t], fractions [R_t, E_t], values [R_t])`` per table."""
        if not tables:
            raise InputError("No prior table was given; pass --prior FILE --prior-target COLUMN.")
        elements: list[str] = []
        for _, els, _, _ in tables:
            elements.extend(e for e in els if e not in elements)
        col = {e: i for i, e in enumerate(elements)}
        fr, val, task = [], [], []
        for t, (_, els, f, v) in enumerate(tables):
            f = np.asarray(f, np.float64)
            full = np.zeros((f.shape[0], len(elements)))
            full[:, [col[e] for e in els]] = f
            fr.append(full)
            val.append(np.asarray(v, np.float64).reshape(-1))
            task.append(np.full(f.shape[0], t, np.int64))
        return cls(tuple(elements), np.vstack(fr), np.concatenate(val), np.concatenate(task),
                    tuple(str(t[0]) for t in tables))

    @classmethod
    def from_priors(cls, tables: Sequence[Any]) -> PriorData:
        """From prior-table objects with ``name``, ``elements``, ``fractions`` and ``values``
        (e.g. :class:`activemil.campaigns.priors.PriorTable`)."""
        return cls.from_tables([(t.name, t.elements, t.fractions, t.values) for t in tables])

    def union(self, elements: Sequence[str]) -> tuple[str, ...]:
        """``elements`` followed by the prior-only elements."""
        return tuple(elements) + tuple(e for e in self.elements if e not in elements)

    def in_space(self, elements: Sequence[str]) -> np.ndarray:
        """The prior compositions in the column order of ``self.union(elements)``: ``[R, U]``."""
        union = self.union(elements)
        out = np.zeros((len(self.values), len(union)))
        col = {e: i for i, e in enumerate(union)}
        out[:, [col[e] for e in self.elements]] = self.fractions
        return out

    def oriented(self, maximize: bool) -> np.ndarray:
        """Values standardised per table and oriented so larger is better: ``[R]``."""
        z = np.empty_like(self.values)
        sign = 1.0 if maximize else -1.0
        for t in np.unique(self.task):
            m = self.task == t
            v = self.values[m]
            z[m] = sign * (v - v.mean()) / (v.std() or 1.0)
        return z

    def subsample(self, max_rows: int = MAX_PRIOR_ROWS, seed: int = 0) -> tuple[np.ndarray, str]:
        """Row indices used for fitting (all, or a seeded subsample of ``max_rows``) and a note."""
        n = len(self.values)
        if n <= max_rows:
            return np.arange(n), ""
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))
        return rows, (f"prior: a seeded random {max_rows:,} of the {n:,} prior rows train the "
                      "prior GP (exact GP cost)")


def pool_in_union(elements: Sequence[str], fractions: np.ndarray, prior: PriorData) -> np.ndarray:
    """Pool compositions ``[N, E]`` over ``elements`` in the union space ``[N, U]`` (zeros)."""
    fr = np.asarray(fractions, np.float64)
    extra = len(prior.union(elements)) - len(elements)
    return np.hstack([fr, np.zeros((fr.shape[0], extra))])


def prior_mean(
    prior: PriorData,
    elements: Sequence[str],
    fractions: np.ndarray,
    *,
    maximize: bool,
    seed: int = 0,
    chunk: int = 4096,
) -> tuple[np.ndarray, list[str]]:
    """The prior GP's posterior mean at the pool compositions, oriented and standardised.

    Args:
        prior: the prior tables.
        elements, fractions: the pool's elements ``[E]`` and compositions ``[N, E]``.
        maximize: the campaign's direction (the prior measures the same property).
        seed: seeds the subsample and the hyper-parameter fit.

    Returns:
        ``(z [N], notes)``: ``z`` in the priors' standardised, oriented units (larger is better);
        the caller rescales it to the campaign's units (the transfer weight is then learned).
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    rows, note = prior.subsample(seed=seed)
    X = torch.as_tensor(prior.in_space(elements)[rows])
    Y = torch.as_tensor(prior.oriented(maximize)[rows]).unsqueeze(-1)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SingleTaskGP(X, Y, outcome_transform=None)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    model.eval()
    P = torch.as_tensor(pool_in_union(elements, fractions, prior))
    out = []
    with torch.no_grad():
        for s in range(0, P.shape[0], chunk):
            out.append(model.posterior(P[s:s + chunk]).mean.reshape(-1))
    z = torch.cat(out).numpy() if out else np.zeros(0)
    shared = [e for e in elements if e in prior.elements]
    notes = [note] if note else []
    notes.append(
        f"prior: {len(prior.names)} table(s) ({', '.join(prior.names)}), {len(prior.values):,} "
        f"rows; {len(shared)} of the campaign's {len(elements)} elements appear in them")
    return z, notes


__all__ = ["MAX_PRIOR_ROWS", "PriorData", "pool_in_union", "prior_mean"]
