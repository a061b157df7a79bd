"""Acquisition: one calibrated GP posterior over the pool, read by every batch policy.

:func:`build_posterior` fits the posterior (:mod:`activemil.acquisition.posterior`),
:func:`propose_from_posterior` runs a policy on it, :func:`propose_batch` does both and is the
entry point used by campaigns. Policy names live in the import-light
:mod:`activemil.acquisition.names`.
"""

from activemil.acquisition.kg import expected_max_lines, kg_batch, kg_values
from activemil.acquisition.names import POLICIES
from activemil.acquisition.policies import PolicySettings, Selection, run_policy
from activemil.acquisition.posterior import (
    PoolPosterior,
    PriorColumnMean,
    calibration_factor,
    fit_pool_posterior,
    loo_scores,
)
from activemil.acquisition.propose import (
    build_posterior,
    posterior_prediction,
    propose_batch,
    propose_from_posterior,
)

__all__ = [
    "POLICIES",
    "PolicySettings",
    "PoolPosterior",
    "PriorColumnMean",
    "Selection",
    "build_posterior",
    "calibration_factor",
    "expected_max_lines",
    "fit_pool_posterior",
    "kg_batch",
    "kg_values",
    "loo_scores",
    "posterior_prediction",
    "propose_batch",
    "propose_from_posterior",
    "run_policy",
]
