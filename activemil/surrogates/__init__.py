"""Surrogates: gated attention-MIL quantile networks, baselines, ensembles, conformal calibration.

Import-light: the names below load their module (and torch) only when first used (PEP 562), so
``from activemil.surrogates import ALPHAS, QUANTILE_LEVELS, SURROGATE_KINDS`` needs numpy only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from activemil.surrogates.names import CALIBRATIONS, SURROGATE_KINDS
from activemil.surrogates.prediction import (
    ALPHAS,
    MEDIAN_INDEX,
    QUANTILE_LEVELS,
    Prediction,
    interval_indices,
)

_LAZY: dict[str, str] = {
    "Surrogate": "base",
    "ConformalMIL": "conformal",
    "apply_offsets": "conformal",
    "conformal_tau": "conformal",
    "cqr_scores": "conformal",
    "make_surrogate": "conformal",
    "KINDS": "ensemble",
    "Ensemble": "ensemble",
    "combine_predictions": "ensemble",
    "CompositionBaseline": "gp",
    "GPSurrogate": "gp",
    "HybridSurrogate": "gp",
    "calibration_report": "metrics",
    "reliability_plot": "metrics",
    "MILRegressor": "mil",
    "SabatierRegressor": "sabatier",
    "TrainSettings": "mil",
    "POOLINGS": "net",
    "MILQuantileNet": "net",
    "NetConfig": "net",
    "pinball_loss": "net",
    "make_synthetic_bags": "synthetic",
}

if TYPE_CHECKING:
    from activemil.surrogates.base import Surrogate
    from activemil.surrogates.conformal import (
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
    from activemil.surrogates.sabatier import SabatierRegressor
    from activemil.surrogates.net import POOLINGS, MILQuantileNet, NetConfig, pinball_loss
    from activemil.surrogates.synthetic import make_synthetic_bags


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'activemil.surrogates' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"activemil.surrogates.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load_surrogate(path: str) -> Surrogate:
    """Load any surrogate saved with ``Surrogate.save(path)``."""
    from activemil.surrogates.base import Surrogate

    return Surrogate.load(path)


__all__ = [
    "ALPHAS",
    "CALIBRATIONS",
    "KINDS",
    "MEDIAN_INDEX",
    "POOLINGS",
    "QUANTILE_LEVELS",
    "SURROGATE_KINDS",
    "CompositionBaseline",
    "ConformalMIL",
    "Ensemble",
    "GPSurrogate",
    "HybridSurrogate",
    "MILQuantileNet",
    "MILRegressor",
    "NetConfig",
    "Prediction",
    "SabatierRegressor",
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
