"""Backtests of campaign strategies on lookup tables and physics oracles.

``simulate(scenario, strategies, seeds=..., rounds=..., budget=...)`` runs strategies x seeds x
rounds; a strategy only ever receives the labels of rows it picked. Physics oracles live in
``activemil.simulators`` and implement :class:`Oracle`.
"""

from activemil.simulate.oracle import Oracle, TableOracle, stable_seed
from activemil.simulate.runner import (
    ALPHAS,
    SimulationResult,
    Targets,
    build_bags,
    composition_bags,
    evaluations_to,
    random_expected_evaluations,
    run_campaign,
    simulate,
    summarize,
    summary_markdown,
)
from activemil.simulate.scenario import DATASET_RECIPES, Scenario
from activemil.simulate.strategies import (
    FAST_SURROGATE_SETTINGS,
    STRATEGIES,
    Proposal,
    RandomStrategy,
    Strategy,
    StrategyContext,
    SurrogateStrategy,
    make_strategy,
)

__all__ = [
    "ALPHAS",
    "FAST_SURROGATE_SETTINGS",
    "DATASET_RECIPES",
    "STRATEGIES",
    "Oracle",
    "Proposal",
    "RandomStrategy",
    "Scenario",
    "SimulationResult",
    "Strategy",
    "StrategyContext",
    "SurrogateStrategy",
    "TableOracle",
    "Targets",
    "build_bags",
    "composition_bags",
    "evaluations_to",
    "make_strategy",
    "random_expected_evaluations",
    "run_campaign",
    "simulate",
    "stable_seed",
    "summarize",
    "summary_markdown",
]
