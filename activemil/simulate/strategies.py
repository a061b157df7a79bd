"""Strategies: how a simulated campaign picks its next batch.

A strategy sees a :class:`StrategyContext` built fresh by the runner each round: the pool, its
feature bags, and the rows and labels *it has picked so far*, nothing else. The runner never
hands a strategy the oracle or the hidden truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from activemil.errors import InputError
from activemil.space import CandidatePool
from activemil.surrogates.names import SURROGATE_KINDS

#: built-in strategy name -> (campaign surrogate kind, acquisition policy); kind ``None`` marks
#: a peer that runs in the runner, not through a campaign (``random``, ``gp-ei``, ``baybe``)
STRATEGIES: dict[str, tuple[str | None, str]] = {
    "mil-ucb": ("mil", "ucb"),
    "mil-thompson": ("mil", "thompson"),
    "mil-kg": ("mil", "kg"),
    "mil-lognei": ("mil", "lognei"),
    "mil-greedy": ("mil", "greedy"),
    "gp-ucb": ("gp", "ucb"),
    "gp-kg": ("gp", "kg"),
    "gp-ei": (None, "gp-ei"),
    "baybe": (None, "baybe"),
    "random": (None, "random"),
}
#: strategies that run beside the campaigns with the same initial rows (honest peers)
PEERS: tuple[str, ...] = ("gp-ei", "baybe", "random")
_POLICIES = ("ucb", "thompson", "kg", "logei", "lognei", "greedy", "random")

#: small, fast surrogate settings for quick backtests (``activemil simulate --fast``,
#: ``benchmarks/campaign.py --fast``): 1 network per fold, 3 folds, short training
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
        mode: how the batch was chosen (``model``, ``space-filling``, ``random``, ...).
        model: the posterior variant a model batch used (``gp``, ``mil``, ``transfer``, as the
            campaign's per-round model choice recorded it), else ``""``.
        seconds: named wall times of parts of the round (s), e.g. ``{"ingest": 0.1}``.
    """

    rows: np.ndarray
    prediction: Any = None
    notes: list[str] = field(default_factory=list)
    mode: str = ""
    model: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Strategy(Protocol):
    """Picks ``q`` unobserved rows per round. ``needs_features``: whether it uses bags.

    A strategy with per-campaign state may also define ``start(scenario, seed) -> Strategy``
    (a session used for that one campaign, then ``close()``d); the runner calls it first.
    """

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
        return Proposal(rows=rng.choice(free, size=min(q, len(free)), replace=False),
                        mode="random")


def make_strategy(
    name: str,
    settings: Mapping[str, Any] | None = None,
    policy_kw: Mapping[str, Any] | None = None,
    coverage: bool = True,
) -> Strategy:
    """Strategy from a name: one of :data:`STRATEGIES` or ``"<surrogate kind>-<policy>"``
    (e.g. ``mean-ucb``, ``gp-thompson``), which runs a temporary campaign with that surrogate
    kind and acquisition policy. ``settings`` go to the campaign's surrogate; a dict keyed by
    surrogate kind (``{"mil": {...}, "gp": {...}}``) gives per-kind settings. ``policy_kw``
    become the campaign's acquisition settings.

    A ``+prior`` suffix (``mil-kg+prior``, ``gp-ei+prior``, ``baybe+prior``) gives the strategy
    the scenario's prior tables: the campaign is created with them (transfer posterior), GP-EI
    becomes BoTorch's multi-task GP and BayBE uses a ``TaskParameter``."""
    name = name.strip()
    base, plus, suffix = name.partition("+")
    use_prior = bool(plus)
    if use_prior and suffix != "prior":
        raise InputError(f"Unknown strategy suffix in {name!r}; the only suffix is +prior.")
    if use_prior:
        name = base
    if name in STRATEGIES:
        kind, policy = STRATEGIES[name]
    else:
        kind, _, policy = name.partition("-")
        if kind not in SURROGATE_KINDS or policy not in _POLICIES:
            raise InputError(
                f"Unknown strategy {name!r}; use one of {', '.join(STRATEGIES)} or "
                f"'<kind>-<policy>' with kind in {'/'.join(SURROGATE_KINDS)} and policy in "
                f"{'/'.join(_POLICIES)}."
            )
    if kind is None:
        if policy == "random":
            if use_prior:
                raise InputError("random+prior is not a strategy: random picks ignore priors.")
            return RandomStrategy()
        from activemil.simulate.peers import BayBEStrategy, GPEIStrategy

        return GPEIStrategy(use_prior) if policy == "gp-ei" else BayBEStrategy(use_prior)
    from activemil.simulate.product import CampaignStrategy

    settings = dict(settings or {})
    if any(k in SURROGATE_KINDS for k in settings):  # per-kind settings: {"mil": {...}, "gp": {...}}
        settings = dict(settings.get(kind, {}) or {})
    return CampaignStrategy(name + ("+prior" if use_prior else ""), kind, policy, settings,
                            policy_kw, coverage, use_prior=use_prior)
