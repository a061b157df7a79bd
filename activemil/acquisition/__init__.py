"""Acquisition: the calibrated surrogate as a BoTorch model over candidate ids, and batch policies.

Core pieces are pure tensor code over :class:`PoolTables` (calibrated member quantiles
``[M, N, 9]``, bag embeddings ``[N, d]``, out-of-fold residuals); :func:`tables_from_surrogate`
adapts any fitted surrogate; :func:`propose_batch` is the entry point used by campaigns and CLI.
"""

from activemil.acquisition.belief import FeatureMap, LinearBelief
from activemil.acquisition.kg import DiscreteKnowledgeGradient, PoolBelief, kg_exact, kg_exact_q1
from activemil.acquisition.model import MILModel, ParticleSampler
from activemil.acquisition.particles import (
    NORMAL_SCORES,
    copula_basis,
    copula_fields,
    draw_particles,
    quantile_function,
)
from activemil.acquisition.policies import POLICIES, PolicySettings, Selection
from activemil.acquisition.propose import propose_batch, propose_from_tables
from activemil.acquisition.tables import PoolTables, tables_from_surrogate

__all__ = [
    "NORMAL_SCORES",
    "POLICIES",
    "DiscreteKnowledgeGradient",
    "FeatureMap",
    "LinearBelief",
    "MILModel",
    "ParticleSampler",
    "PolicySettings",
    "PoolBelief",
    "PoolTables",
    "Selection",
    "copula_basis",
    "copula_fields",
    "draw_particles",
    "kg_exact",
    "kg_exact_q1",
    "propose_batch",
    "propose_from_tables",
    "quantile_function",
    "tables_from_surrogate",
]
