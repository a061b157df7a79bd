"""Names of the acquisition policies (import-light: no torch, safe for config validation)."""

from __future__ import annotations

#: every acquisition policy ``propose_batch`` accepts; all of them read one calibrated posterior
POLICIES: tuple[str, ...] = ("ucb", "thompson", "kg", "logei", "lognei", "greedy", "random")
#: posterior variants of the per-round model choice (``build_posterior``; ``auto`` chooses)
POSTERIOR_MODELS: tuple[str, ...] = ("gp", "mil", "transfer")
#: rules of the per-round model choice (:func:`activemil.acquisition.choice.choose`); ``mse``
#: is the former criterion (lowest CV MSE, GP on ties)
CHOICE_RULES: tuple[str, ...] = ("mse", "mse_1se", "crps", "crps_1se", "spearman",
                                 "crps+spearman", "crps_1se+spearman")
#: the rule ``build_posterior`` uses unless told otherwise: ``spearman`` won the offline
#: comparison within noise but lost the campaign backtests (docs/benchmarks.md), so ``mse``
DEFAULT_RULE = "mse"
