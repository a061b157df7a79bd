"""Hypotheses for a campaign: fit (or reuse) its surrogate, pick candidates, export records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from activemil.campaigns import Campaign
from activemil.campaigns.proposal import fit_campaign_surrogate
from activemil.errors import InputError, StateError
from activemil.hypotheses.core import Hypothesis, build_hypotheses
from activemil.hypotheses.export import export
from activemil.hypotheses.rules import RuleHypothesis, rule_hypotheses

SOURCES = ("auto", "proposed", "best")


def campaign_hypotheses(
    campaign: Campaign,
    *,
    top: int = 8,
    source: str = "auto",
    output: Path | None = None,
    fmt: str = "md",
    top_sites: int = 5,
    seed: int = 0,
    progress: bool = False,
    say: Callable[[str], None] = lambda _m: None,
    n_rules: int = 3,
) -> tuple[list[Hypothesis], Path | None, list[RuleHypothesis]]:
    """Hypotheses for ``top`` candidates of ``campaign``.

    ``source``: ``proposed`` = the most recent batch's candidates, ``best`` = the best predicted
    unmeasured candidates, ``auto`` = the latest batch if there is one, else the best predicted.
    Writes ``output`` in ``fmt`` (md with PNGs, json, csv) when given. Also returns up to
    ``n_rules`` environment-level rules aggregated over the same candidates
    (:func:`activemil.hypotheses.rules.rule_hypotheses`).
    """
    if source not in SOURCES:
        raise InputError(f"Unknown --from {source!r}; choose one of {', '.join(SOURCES)}.")
    if fmt not in ("md", "json", "csv"):
        raise InputError(f"Unknown --format {fmt!r}; choose md, json or csv.")
    if top < 1:
        raise InputError(f"--top must be at least 1, got {top}.")
    state = campaign.state()
    obs = campaign.observations(state)
    if len(obs) < 2:
        raise StateError(
            f"The campaign has {len(obs)} measurement(s); hypotheses need a fitted surrogate, so "
            "ingest at least a first batch of results (activemil ingest DIR FILE) first."
        )
    kind = campaign.setting("surrogate", "kind", "mil")
    if kind == "gp":
        raise InputError(
            "The campaign's surrogate is a GP, which has no per-site attention; hypotheses need "
            "a MIL surrogate (activemil propose --surrogate mil)."
        )
    pool = campaign.space.enumerate()
    ctx = fit_campaign_surrogate(campaign, pool, obs, kind, progress, say)
    say("Predicting the pool ...")
    pred = ctx.model.predict(ctx.bags)
    if pred.attention is None:
        raise InputError(f"The {kind} surrogate returns no attention; use a MIL surrogate.")
    proposed = [e for e in state.events if e.kind == "proposed"]
    if source == "proposed" or (source == "auto" and proposed):
        if not proposed:
            raise StateError("No batch has been proposed yet; use --from best.")
        last = proposed[-1].batch
        ids = [e.candidate for e in proposed if e.batch == last][:top]
        origin = f"batch {last}"
    else:
        measured = set(obs["id"])
        sign = 1.0 if campaign.maximize else -1.0
        order = np.argsort(-sign * pred.median, kind="stable")
        ids = [ctx.bags.ids[i] for i in order if ctx.bags.ids[i] not in measured][:top]
        origin = "best predicted unmeasured"
    data_hash = ctx.model_key
    hyps = build_hypotheses(
        ctx.model, ctx.bags, ctx.pool, ids, ctx.recipe, maximize=campaign.maximize,
        step=campaign.space.step, top_sites=top_sites, seed=seed, prediction=pred,
        provenance={"campaign_round": state.current_round, "data_hash": data_hash,
                    "model_kind": kind, "selection": origin, "n_measured": len(obs)},
    )
    rules = rule_hypotheses(
        ctx.model, ctx.bags, ctx.pool, ids, ctx.recipe, maximize=campaign.maximize,
        step=campaign.space.step, n_rules=n_rules, target=campaign.target, prediction=pred,
        seed=seed,
    ) if n_rules > 0 else []
    path = None
    if output is not None:
        path = export(hyps, Path(output), fmt, recipe=ctx.recipe, bags=ctx.bags, pool=ctx.pool,
                      attention=pred.attention, target=campaign.target, unit=campaign.unit,
                      rules=rules)
    return hyps, path, rules
