"""Scenarios: a candidate pool, an oracle that labels picks, and the hidden truth for scoring.

The truth (``reference``) is used only by the runner's metrics; strategies never receive it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from activemil.campaigns.priors import PriorTable
from activemil.data import DATASETS, data_path
from activemil.errors import InputError
from activemil.simulate.oracle import Oracle, TableOracle
from activemil.space import (
    CandidatePool,
    measured_table,
    read_csv_file,
)

#: default featurization recipe of the bundled datasets ("composition" = composition-only bags)
DATASET_RECIPES: dict[str, str] = {
    "agirpdptru-orr": "fcc111",
    "oer-plate-3496": "oxide",
    "oer-plate-3851": "oxide",
}

#: d-block metals (groups 3-12, periods 4-6, no lanthanides): tables over only these elements
#: are treated as alloys by ``recipe="auto"``.
_D_METALS = frozenset({
    "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd",
    "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
})


@dataclass(frozen=True)
class Scenario:
    """A backtest problem.

    Attributes:
        name: label used in outputs.
        pool: the candidates ``[N]``.
        oracle: labels picked rows (the only label source strategies are fed from).
        reference: float64 ``[N]`` true target per row, for scoring only.
        target: property name; ``direction``: ``"maximize"`` or ``"minimize"``.
        recipe: featurization recipe (``"fcc111"``, ``"oxide"``, ... or ``"composition"`` for
            composition-only bags).
        notes: provenance lines written to the outputs.
        priors: related measured tables (:class:`~activemil.campaigns.priors.PriorTable`) for
            the ``+prior`` strategies; never labels of the pool.
    """

    name: str
    pool: CandidatePool
    oracle: Oracle
    reference: np.ndarray
    target: str
    direction: str
    recipe: str = "composition"
    notes: tuple[str, ...] = field(default=())
    priors: tuple[PriorTable, ...] = field(default=())

    def __post_init__(self) -> None:
        ref = np.asarray(self.reference, dtype=np.float64)
        if ref.shape != (len(self.pool),):
            raise InputError(
                f"Scenario {self.name!r} has {len(ref)} reference values for a pool of "
                f"{len(self.pool)}; give one target value per candidate."
            )
        if not np.all(np.isfinite(ref)):
            raise InputError(
                f"Scenario {self.name!r} has {int((~np.isfinite(ref)).sum())} missing/non-finite "
                "target values; drop those rows before simulating."
            )
        if self.direction not in ("maximize", "minimize"):
            raise InputError(
                f"Direction {self.direction!r} must be 'maximize' or 'minimize'."
            )
        ref = ref.copy()
        ref.setflags(write=False)
        object.__setattr__(self, "reference", ref)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def require_priors(self, strategy: str) -> tuple[PriorTable, ...]:
        """The prior tables, or one sentence naming the flags when ``strategy`` needs them and
        the scenario has none."""
        if not self.priors:
            raise InputError(f"Strategy {strategy} needs prior tables; pass --prior FILE "
                             "--prior-target COLUMN.")
        return self.priors

    def with_priors(self, priors: Sequence[PriorTable]) -> Scenario:
        """This scenario with prior tables for the ``+prior`` strategies.

        A prior that holds the pool's own table (same elements and every pool composition with
        the same values) would leak the answer; it is refused.
        """
        import dataclasses

        for t in priors:
            if tuple(t.elements) == tuple(self.pool.elements) and t.rows == len(self.pool):
                keys = {tuple(np.round(f, 6)): v for f, v in zip(t.fractions, t.values)}
                same = [keys.get(tuple(np.round(f, 6))) for f in self.pool.fractions]
                if all(v is not None and abs(v - r) <= 1e-12 * max(1.0, abs(r))
                       for v, r in zip(same, self.reference)):
                    raise InputError(
                        f"The prior {t.source} is the simulated table itself, so it would leak "
                        "every answer; pass a related table instead.")
        notes = tuple(f"prior {t.source}: {t.rows} rows of {','.join(t.elements)}, target "
                      f"{t.target}, sha256 {t.sha256[:12]}" for t in priors)
        return dataclasses.replace(self, priors=tuple(priors), notes=self.notes + notes)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_table(
        cls,
        df: pd.DataFrame,
        target: str,
        direction: str,
        *,
        elements: Sequence[str] | None = None,
        name: str = "table",
        source: str = "table",
        recipe: str = "auto",
    ) -> Scenario:
        """Scenario from a table with one column per element (fractions) and a target column.

        ``elements=None`` takes every column that is an element symbol. Duplicate compositions
        are refused (average replicates first). ``recipe="auto"`` picks ``fcc111`` when all
        elements are d-block metals, otherwise composition-only bags.
        """
        if direction not in ("maximize", "minimize"):
            raise InputError(f"Direction {direction!r} must be 'maximize' or 'minimize'.")
        elements, fractions, y = measured_table(df, target, elements=elements, source=source)
        pool = CandidatePool(elements, fractions)
        if recipe == "auto":
            recipe = "fcc111" if set(elements) <= _D_METALS else "composition"
        return cls(
            name=name,
            pool=pool,
            oracle=TableOracle(y, name=name, target=target, direction=direction),
            reference=y,
            target=target,
            direction=direction,
            recipe=recipe,
            notes=(f"table {source}: {len(pool)} rows, target {target} ({direction})",),
        )

    @classmethod
    def from_csv(
        cls, path: str | Path, target: str, direction: str, *, recipe: str = "auto",
        elements: Sequence[str] | None = None,
    ) -> Scenario:
        """Scenario from a CSV file (see :meth:`from_table`)."""
        path = Path(path)
        df = read_csv_file(path, "--data")
        return cls.from_table(df, target, direction, elements=elements, name=path.stem,
                              source=str(path), recipe=recipe)

    @classmethod
    def from_dataset(cls, name: str, *, recipe: str | None = None) -> Scenario:
        """Scenario from a bundled dataset (``activemil.data.DATASETS``)."""
        if name not in DATASETS:
            raise InputError(
                f"Unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}."
            )
        file, target, direction = DATASETS[name]
        df = pd.read_csv(data_path(file))
        return cls.from_table(
            df, target, direction, name=name, source=file,
            recipe=recipe or DATASET_RECIPES.get(name, "auto"),
        )

    @classmethod
    def from_oracle(
        cls,
        oracle: Oracle,
        pool: CandidatePool,
        *,
        name: str | None = None,
        recipe: str = "auto",
        reference: np.ndarray | None = None,
        progress: bool = False,
    ) -> Scenario:
        """Scenario on ``pool`` labelled by ``oracle``.

        ``reference=None`` evaluates the oracle once on the whole pool to score campaigns (this
        call is separate from the campaigns; strategies only ever get labels of their picks).
        """
        if reference is None:
            reference = _evaluate_all(oracle, pool, progress)
        if recipe == "auto":
            recipe = "fcc111" if set(pool.elements) <= _D_METALS else "composition"
        return cls(
            name=name or getattr(oracle, "name", "oracle"),
            pool=pool,
            oracle=oracle,
            reference=np.asarray(reference, np.float64),
            target=getattr(oracle, "target", "y"),
            direction=oracle.direction,
            recipe=recipe,
            notes=(
                (f"oracle {getattr(oracle, 'name', type(oracle).__name__)} on a pool of "
                 f"{len(pool)} compositions"),
            ),
        )


def _evaluate_all(oracle: Oracle, pool: CandidatePool, progress: bool) -> np.ndarray:
    chunk = 256
    out = []
    for start in range(0, len(pool), chunk):
        rows = np.arange(start, min(len(pool), start + chunk))
        out.append(np.asarray(oracle.evaluate(pool, rows), np.float64))
        if progress:
            print(f"reference: {rows[-1] + 1}/{len(pool)} compositions", flush=True)
    return np.concatenate(out) if out else np.zeros(0)
