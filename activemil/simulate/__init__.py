"""Backtests of campaign strategies on lookup tables and physics oracles.

``simulate(scenario, strategies, seeds=..., rounds=..., budget=...)`` runs strategies x seeds x
rounds; a strategy only ever receives the labels of rows it picked. Product strategies
(``mil-ucb``, ...) drive a temporary campaign each through ``ingest``/``propose``, the user's
path; ``gp-ei``, ``baybe`` and ``random`` are honest peers in the same run. Physics oracles
live in ``activemil.simulators`` and implement :class:`Oracle`.
"""

from activemil.simulate.oracle import Oracle, TableOracle, stable_seed
from activemil.simulate.product import CampaignSetup, CampaignStrategy, table_space
from activemil.simulate.runner import (
    ALPHAS,
    SimulationResult,
    Targets,
    build_bags,
    campaign_setup,
    composition_bags,
    evaluations_to,
    initial_rows,
    random_expected_evaluations,
    run_campaign,
    simulate,
    summarize,
    summary_markdown,
)
from activemil.simulate.scenario import DATASET_RECIPES, Scenario
from activemil.simulate.strategies import (
    FAST_SURROGATE_SETTINGS,
    PEERS,
    STRATEGIES,
    Proposal,
    RandomStrategy,
    Strategy,
    StrategyContext,
    make_strategy,
)

__all__ = [
    "ALPHAS",
    "DATASET_RECIPES",
    "FAST_SURROGATE_SETTINGS",
    "PEERS",
    "STRATEGIES",
    "CampaignSetup",
    "CampaignStrategy",
    "Oracle",
    "Proposal",
    "RandomStrategy",
    "Scenario",
    "SimulationResult",
    "Strategy",
    "StrategyContext",
    "TableOracle",
    "Targets",
    "build_bags",
    "campaign_setup",
    "composition_bags",
    "evaluations_to",
    "initial_rows",
    "make_strategy",
    "random_expected_evaluations",
    "run_campaign",
    "simulate",
    "stable_seed",
    "summarize",
    "summary_markdown",
    "table_space",
]
