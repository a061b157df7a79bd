"""Names of the surrogate kinds and calibrations (import-light: no torch, safe for config
validation). :data:`activemil.surrogates.ensemble.KINDS` maps each kind to its class."""

from __future__ import annotations

#: every kind ``make_surrogate`` accepts
SURROGATE_KINDS: tuple[str, ...] = ("mil", "conjunctive", "mean", "max", "gp", "hybrid",
                                    "sabatier")
#: conformal calibration schemes of ``ConformalMIL``
CALIBRATIONS: tuple[str, ...] = ("none", "split", "split-mondrian", "cv", "cv-mondrian")
