"""Names of the acquisition policies (import-light: no torch, safe for config validation)."""

from __future__ import annotations

#: every acquisition policy ``propose_batch`` accepts; all of them read one calibrated posterior
POLICIES: tuple[str, ...] = ("ucb", "thompson", "kg", "logei", "lognei", "greedy", "random")
#: posterior variants of the per-round model choice (``build_posterior``; ``auto`` chooses)
POSTERIOR_MODELS: tuple[str, ...] = ("gp", "mil", "transfer")
