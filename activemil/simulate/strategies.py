"""Strategies: how a simulated campaign picks its next batch.

A strategy sees a :class:`StrategyContext` built fresh by the runner each round: the pool, its
feature bags, and the rows and labels *it has picked so far*, nothing else. The runner never
hands a strategy the oracle or the hidden truth.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from activemil.errors import InputError
from activemil.space import CandidatePool

#: built-in strategy name -> (surrogate kind for make_surrogate, acquisition policy)
STRATEGIES: dict[str, tuple[str | None, str]] = {
    "mil-ucb": ("mil", "ucb"),
    "mil-thompson": ("mil", "thompson"),
    "mil-kg": ("mil", "kg"),
    "mil-logei": ("mil", "logei"),
    "gp-ei": ("gp", "logei"),
    "gp-ucb": ("gp", "ucb"),
    "random": (None, "random"),
}
_KINDS = ("mil", "conjunctive", "mean", "max", "gp", "hybrid")
_POLICIES = ("ucb", "thompson", "kg", "logei", "lognei", "greedy", "random")



#: small, fast surrogate settings for quick backtests (``activemil simulate --fast``,
#: ``benchmarks/campaign.py --quick``): 1 network per fold, 3 folds, short training
FAST_SURROGATE_SETTINGS: dict[str, dict[str, int]] = {
    "mil": {"n_members": 1, "n_folds": 3, "max_epochs": 80, "min_epochs": 20, "patience": 15,
            "small_n_epochs": 60},
    "gp": {"n_folds": 3},
}

@dataclass(frozen=True)
class StrategyContext:
    """What a strategy may know in one round.

    Attributes:
        pool: candidates ``[N]``.
        bags: feature bags of the whole pool (a ``BagSet`` aligned with ``pool``) or ``None``
            when no strategy of the run needs features; ``instance_targets`` are stripped.
        observed_rows: int64 ``[n]`` pool rows labelled so far (init rows, then picks).
        observed_y: float64 ``[n]`` their labels (read-only copy).
        round: 1-based round number; ``maximize``: optimisation direction.
        alpha: miscoverage level for interval-based policies.
    """

    pool: CandidatePool
    bags: Any
    observed_rows: np.ndarray
    observed_y: np.ndarray
    round: int
    maximize: bool
    alpha: float = 0.1

    @property
    def unobserved_rows(self) -> np.ndarray:
        mask = np.ones(len(self.pool), bool)
        mask[self.observed_rows] = False
        return np.flatnonzero(mask)


@dataclass
class Proposal:
    """A strategy's picks and (optionally) the full-pool prediction it was based on.

    Attributes:
        rows: int64 ``[q]`` pool rows in pick order.
        prediction: a ``surrogates.Prediction`` over the whole pool (aligned with it), used by
            the runner for interval coverage on not-yet-picked rows; ``None`` if no surrogate.
        notes: free text (e.g. acquisition notes).
    """

    rows: np.ndarray
    prediction: Any = None
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Strategy(Protocol):
    """Picks ``q`` unobserved rows per round. ``needs_features``: whether it uses bags."""

    name: str
    needs_features: bool

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal: ...


class RandomStrategy:
    """Uniform random picks among unobserved rows (the baseline of Rohr et al. 2020)."""

    name = "random"
    needs_features = False

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal:
        free = ctx.unobserved_rows
        rng = np.random.default_rng(seed)
        return Proposal(rows=rng.choice(free, size=min(q, len(free)), replace=False))


class SurrogateStrategy:
    """Fit ``make_surrogate(kind, **settings)`` on the picked bags, then ``propose_batch``.

    Args:
        name: strategy label; ``kind``: surrogate kind; ``policy``: acquisition policy.
        settings: keyword settings for ``make_surrogate`` (e.g. epochs, ensemble size).
        policy_kw: extra keyword arguments for ``propose_batch``.
        coverage: also predict the whole pool so the runner can score interval coverage.
    """

    needs_features = True

    def __init__(
        self,
        name: str,
        kind: str,
        policy: str,
        settings: Mapping[str, Any] | None = None,
        policy_kw: Mapping[str, Any] | None = None,
        coverage: bool = True,
    ) -> None:
        self.name, self.kind, self.policy = name, kind, policy
        self.settings = dict(settings or {})
        self.policy_kw = dict(policy_kw or {})
        self.coverage = coverage

    def _surrogate(self, seed: int):
        from activemil.surrogates import make_surrogate

        settings = dict(self.settings)
        try:
            params = inspect.signature(make_surrogate).parameters
            takes_seed = "seed" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
            )
        except (TypeError, ValueError):
            takes_seed = False
        if takes_seed and "seed" not in settings:
            settings["seed"] = int(seed % (2**31 - 1))
        return make_surrogate(self.kind, **settings)

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal:
        import torch

        from activemil.acquisition import propose_batch

        if ctx.bags is None:
            raise InputError(f"Strategy {self.name} needs feature bags; none were built.")
        torch.manual_seed(seed % (2**63 - 1))
        train = ctx.bags.subset(ctx.observed_rows)
        surrogate = self._surrogate(seed).fit(train, np.asarray(ctx.observed_y, np.float64))
        observed_ids = [ctx.pool.ids[i] for i in ctx.observed_rows]
        table = propose_batch(
            surrogate, ctx.bags, q, self.policy, maximize=ctx.maximize, exclude=observed_ids,
            pending=(), seed=int(seed % (2**31 - 1)), alpha=ctx.alpha, **self.policy_kw,
        )
        rows = np.asarray([ctx.pool.index(cid) for cid in table["id"]], np.int64)
        prediction = surrogate.predict(ctx.bags) if self.coverage else None
        return Proposal(rows=rows, prediction=prediction,
                        notes=list(table.attrs.get("notes", []) or []))


def make_strategy(
    name: str,
    settings: Mapping[str, Any] | None = None,
    policy_kw: Mapping[str, Any] | None = None,
    coverage: bool = True,
) -> Strategy:
    """Strategy from a name: one of :data:`STRATEGIES` or ``"<surrogate kind>-<policy>"``
    (e.g. ``mean-ucb``, ``conjunctive-thompson``). ``settings`` go to ``make_surrogate``;
    a dict keyed by surrogate kind (``{"mil": {...}, "gp": {...}}``) gives per-kind settings."""
    name = name.strip()
    if name in STRATEGIES:
        kind, policy = STRATEGIES[name]
    else:
        kind, _, policy = name.partition("-")
        if kind not in _KINDS or policy not in _POLICIES:
            raise InputError(
                f"Unknown strategy {name!r}; use one of {', '.join(STRATEGIES)} or "
                f"'<kind>-<policy>' with kind in {'/'.join(_KINDS)} and policy in "
                f"{'/'.join(_POLICIES)}."
            )
    if kind is None:
        return RandomStrategy()
    settings = dict(settings or {})
    if any(k in _KINDS for k in settings):  # per-kind settings: {"mil": {...}, "gp": {...}}
        settings = dict(settings.get(kind, {}) or {})
    return SurrogateStrategy(name, kind, policy, settings, policy_kw, coverage)
