"""Surrogates: gated attention-MIL quantile networks, baselines, ensembles, conformal calibration."""

from activemil.surrogates.prediction import ALPHAS, QUANTILE_LEVELS, Prediction, interval_indices

__all__ = ["ALPHAS", "QUANTILE_LEVELS", "Prediction", "interval_indices"]
