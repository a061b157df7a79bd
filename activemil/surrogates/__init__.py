"""Surrogates: gated attention-MIL quantile networks, baselines, ensembles, conformal calibration."""

from activemil.surrogates.base import Surrogate
from activemil.surrogates.conformal import (
    CALIBRATIONS,
    ConformalMIL,
    apply_offsets,
    conformal_tau,
    cqr_scores,
    make_surrogate,
)
from activemil.surrogates.ensemble import KINDS, Ensemble, combine_predictions
from activemil.surrogates.gp import CompositionBaseline, GPSurrogate, HybridSurrogate
from activemil.surrogates.metrics import calibration_report, reliability_plot
from activemil.surrogates.mil import MILRegressor, TrainSettings
from activemil.surrogates.net import POOLINGS, MILQuantileNet, NetConfig, pinball_loss
from activemil.surrogates.prediction import (
    ALPHAS,
    MEDIAN_INDEX,
    QUANTILE_LEVELS,
    Prediction,
    interval_indices,
)
from activemil.surrogates.synthetic import make_synthetic_bags


def load_surrogate(path: str) -> Surrogate:
    """Load any surrogate saved with ``Surrogate.save(path)``."""
    return Surrogate.load(path)


__all__ = [
    "ALPHAS",
    "CALIBRATIONS",
    "KINDS",
    "MEDIAN_INDEX",
    "POOLINGS",
    "QUANTILE_LEVELS",
    "CompositionBaseline",
    "ConformalMIL",
    "Ensemble",
    "GPSurrogate",
    "HybridSurrogate",
    "MILQuantileNet",
    "MILRegressor",
    "NetConfig",
    "Prediction",
    "Surrogate",
    "TrainSettings",
    "apply_offsets",
    "calibration_report",
    "combine_predictions",
    "conformal_tau",
    "cqr_scores",
    "interval_indices",
    "load_surrogate",
    "make_surrogate",
    "make_synthetic_bags",
    "pinball_loss",
    "reliability_plot",
]
