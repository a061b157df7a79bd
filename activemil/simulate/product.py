"""Product strategies: each (strategy, seed) drives a temporary campaign exactly as a user would.

Per round the session writes the labels it has not yet recorded as a lab CSV, ingests it with
``activemil.campaigns.ingest`` (what ``activemil ingest`` calls) and asks
``activemil.campaigns.propose`` (what ``activemil propose`` calls) for the next batch. The
campaign's own space-filling start (``min_train``), model reuse and batch recording therefore
apply unchanged, and a backtest number describes what a user gets.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from activemil.errors import InputError
from activemil.simulate.scenario import Scenario
from activemil.simulate.strategies import Proposal, StrategyContext
from activemil.space import CandidatePool, DesignSpace

#: grid steps tried (coarsest first) for the design space of a table's campaign; finer steps
#: make ``DesignSpace.count`` slow, so off-grid tables fall back to the last one
_TABLE_STEPS = (0.5, 0.25, 0.2, 0.125, 0.1, 0.05, 0.025, 0.02, 0.01)


def table_space(pool: CandidatePool) -> DesignSpace:
    """The design space of a campaign whose pool is ``pool``: its elements, the coarsest grid
    step holding every row (else 0.01) and its element-count limits. The pool itself comes from
    the campaign's ``candidates.csv``; the space only names elements and the grid."""
    fr = pool.fractions
    step = _TABLE_STEPS[-1]
    for s in _TABLE_STEPS:
        units = fr / s
        if np.allclose(units, np.round(units), atol=1e-6):
            step = s
            break
    k = pool.n_present
    return DesignSpace(pool.elements, step=step, min_elements=int(k.min()),
                       max_elements=int(k.max()))


@dataclass(frozen=True)
class CampaignSetup:
    """How the runner's temporary campaigns are built.

    Attributes:
        recipe: structure recipe (``fcc111``, ``oxide``, ...); ``encoder``: site encoder name.
        featurize: the campaign's ``featurize`` section (``seed``, ``n_sites``, ``mode``).
        features_dir: shared, prebuilt content-addressed feature cache that every campaign's
            ``derived/features`` links to (``None``: each campaign featurizes for itself).
        root: keep the campaigns under ``root/<strategy>/seed-<k>`` (``None``: temporary
            directories, deleted after each campaign).
        min_train: measurements before the surrogate replaces space-filling (``None``: the
            campaign default).
    """

    recipe: str = "fcc111"
    encoder: str = "zones"
    featurize: Mapping[str, Any] = field(default_factory=dict)
    features_dir: Path | None = None
    root: Path | None = None
    min_train: int | None = None


class CampaignStrategy:
    """A product strategy: campaign surrogate ``kind`` + acquisition ``policy``.

    Args:
        name: strategy label; ``kind``/``policy``: the campaign's surrogate kind and policy.
        settings: the campaign's surrogate settings (``make_surrogate`` keywords).
        policy_kw: the campaign's acquisition settings (``propose_batch`` keywords).
        coverage: pass the campaign's pool prediction to the runner for coverage scoring.
        setup: see :class:`CampaignSetup` (the runner fills it in with :meth:`configure`).
        use_prior: create the campaign with the scenario's prior tables (``init --prior``).
    """

    needs_features = False  # the campaign featurizes (from the shared cache) by itself

    def __init__(
        self,
        name: str,
        kind: str,
        policy: str,
        settings: Mapping[str, Any] | None = None,
        policy_kw: Mapping[str, Any] | None = None,
        coverage: bool = True,
        setup: CampaignSetup | None = None,
        use_prior: bool = False,
    ) -> None:
        self.name, self.kind, self.policy = name, kind, policy
        self.use_prior = use_prior
        self.settings = dict(settings or {})
        self.policy_kw = dict(policy_kw or {})
        self.coverage = coverage
        self.setup = setup or CampaignSetup()

    def configure(self, setup: CampaignSetup) -> CampaignStrategy:
        """A copy of this strategy that builds its campaigns with ``setup``."""
        return CampaignStrategy(self.name, self.kind, self.policy, self.settings,
                                self.policy_kw, self.coverage, setup, self.use_prior)

    def start(self, scenario: Scenario, seed: int) -> CampaignSession:
        """Create the campaign of one backtest (strategy, ``seed``) on ``scenario``'s pool."""
        setup = self.setup
        if self.use_prior:
            scenario.require_priors(self.name)
        if setup.root is not None:
            directory = Path(setup.root) / self.name / f"seed-{seed}"
            if directory.exists():
                shutil.rmtree(directory)
            directory.parent.mkdir(parents=True, exist_ok=True)
            cleanup = False
        else:
            directory = Path(tempfile.mkdtemp(prefix=f"activemil-{self.name}-s{seed}-"))
            cleanup = True
        try:
            return CampaignSession(self, scenario, directory, cleanup)
        except BaseException:
            if cleanup:
                shutil.rmtree(directory, ignore_errors=True)
            raise

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal:
        raise RuntimeError(f"Strategy {self.name} runs a campaign: call start() first.")


class CampaignSession:
    """One temporary campaign; ``propose`` ingests new labels, then proposes like a user."""

    needs_features = False

    def __init__(self, strategy: CampaignStrategy, scenario: Scenario, directory: Path,
                 cleanup: bool) -> None:
        from activemil.campaigns import Campaign

        self.name = strategy.name
        self.strategy = strategy
        self.pool = scenario.pool
        self.directory, self._cleanup = Path(directory), cleanup
        setup = strategy.setup
        surrogate: dict[str, Any] = {"kind": strategy.kind, "settings": strategy.settings}
        if setup.min_train is not None:
            surrogate["min_train"] = int(setup.min_train)
        self.campaign = Campaign.create(
            self.directory, table_space(self.pool), target=scenario.target,
            maximize=scenario.maximize, recipe=setup.recipe, encoder=setup.encoder,
            featurize=dict(setup.featurize), surrogate=surrogate,
            acquisition={"policy": strategy.policy, "settings": strategy.policy_kw},
            candidates=self.pool, priors=scenario.priors if strategy.use_prior else (),
        )
        if setup.features_dir is not None:
            self.campaign.derived_dir.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(setup.features_dir).resolve(), self.campaign.derived_dir / "features",
                       target_is_directory=True)
        self.recorded: set[int] = set()  # pool rows whose labels are in the log
        self.proposed: set[int] = set()  # pool rows proposed by this campaign

    def lab_sheet(self, rows: np.ndarray, values: np.ndarray) -> pd.DataFrame:
        """The lab CSV of ``rows`` with their ``values``: ``id`` for proposed candidates (blank
        for initial rows, which are named by composition), fractions, value, status, source."""
        elements = list(self.pool.elements)
        df = pd.DataFrame(self.pool.fractions[rows], columns=elements)
        df.insert(0, "id", [self.pool.ids[i] if i in self.proposed else "" for i in rows])
        df["value"] = np.asarray(values, np.float64)
        df["status"] = "measured"
        df["source"] = "oracle"
        return df

    def _ingest(self, ctx: StrategyContext) -> None:
        from activemil.campaigns import ingest

        new = np.array([i not in self.recorded for i in ctx.observed_rows], bool)
        if not new.any():
            return
        rows = np.asarray(ctx.observed_rows)[new]
        sheet = self.lab_sheet(rows, np.asarray(ctx.observed_y)[new])
        path = self.directory / "lab" / f"round-{ctx.round - 1:03d}.csv"
        path.parent.mkdir(exist_ok=True)
        sheet.to_csv(path, index=False)
        plan = ingest(self.campaign, path)
        got = {e.candidate for e in plan.events}
        want = {self.pool.ids[i] for i in rows}
        if got != want:  # a composition that does not round-trip to its pool id
            raise RuntimeError(
                f"{self.name}: ingest recorded {sorted(got - want)[:3]} instead of "
                f"{sorted(want - got)[:3]}; the candidate ids do not round-trip."
            )
        self.recorded.update(int(i) for i in rows)

    def propose(self, ctx: StrategyContext, q: int, seed: int) -> Proposal:
        from activemil.campaigns import propose

        t0 = time.perf_counter()
        self._ingest(ctx)
        t1 = time.perf_counter()
        res = propose(self.campaign, q, policy=self.strategy.policy, seed=int(seed % (2**31 - 1)))
        t2 = time.perf_counter()
        rows = np.array([self.pool.index(cid) for cid in res.table["id"]], np.int64)
        self.proposed.update(int(i) for i in rows)
        prediction = getattr(res, "pool_prediction", None) if self.strategy.coverage else None
        if prediction is not None and tuple(prediction.ids) != tuple(self.pool.ids):
            # measured off-grid points may follow the pool rows: keep the pool's rows, in order
            index = {cid: k for k, cid in enumerate(prediction.ids)}
            prediction = prediction.subset(np.array([index[c] for c in self.pool.ids]))
        return Proposal(rows=rows, prediction=prediction, notes=list(res.notes), mode=res.mode,
                        model=chosen_model(res.events),
                        seconds={"ingest": t1 - t0, "propose": t2 - t1})

    def close(self) -> None:
        """Delete the campaign directory if it is temporary."""
        if self._cleanup:
            shutil.rmtree(self.directory, ignore_errors=True)


def campaign_recipe(scenario: Scenario, recipe: str | None = None) -> str:
    """Structure recipe of the scenario's campaigns: ``recipe`` if given, else the scenario's;
    composition-only scenarios (no structure recipe) fall back to ``oxide``, a generic cation
    sublattice that accepts any elements."""
    name = recipe or scenario.recipe
    if name == "composition":
        return "oxide"
    from activemil.structures import available_recipes

    import_recipes()
    if name not in available_recipes():
        raise InputError(
            f"Unknown recipe {name!r}; choose one of {', '.join(available_recipes())}."
        )
    return name


def import_recipes() -> None:
    """Import every ``activemil.structures`` module so its recipes register."""
    import importlib
    import pkgutil

    from activemil import structures

    for mod in pkgutil.iter_modules(structures.__path__):
        importlib.import_module(f"activemil.structures.{mod.name}")


def chosen_model(events: list) -> str:
    """The posterior variant (``gp``, ``mil``, ``transfer``) the ``proposed`` events of one
    model batch record, or ``""`` for a space-filling or random batch."""
    for e in events:
        post = (e.data or {}).get("posterior") or {}
        if post.get("model"):
            return str(post["model"])
    return ""


__all__ = [
    "CampaignSession",
    "CampaignSetup",
    "CampaignStrategy",
    "campaign_recipe",
    "import_recipes",
    "table_space",
]

