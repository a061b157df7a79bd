"""The :class:`Surrogate` interface, input validation and directory save/load plumbing.

A saved surrogate is a directory with ``surrogate.json`` (``{"class", "format", "settings",
...}``), optional ``arrays.npz`` (loaded with ``allow_pickle=False``), torch state dicts
(``*.pt``, loaded with ``weights_only=True``) and sub-directories for members. Nothing is
pickled.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from activemil.errors import InputError, StateError
from activemil.featurize.bags import BagSet
from activemil.surrogates.prediction import Prediction

FORMAT_VERSION = 1
_CLASSES: dict[str, type[Surrogate]] = {}


class Surrogate(ABC):
    """A model from bags to calibrated 9-quantile predictions.

    Subclasses implement :meth:`fit`, :meth:`predict`, :meth:`_save` and :meth:`_load`; the
    public :meth:`save` / :meth:`load` handle the directory and class dispatch.
    """

    kind: ClassVar[str] = ""
    #: how an ensemble averages this model's per-site contributions (see
    #: :func:`activemil.surrogates.ensemble.combine_predictions`)
    contribution_mean: ClassVar[str] = "arithmetic"
    n_train: int = 0

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _CLASSES[cls.__name__] = cls

    @abstractmethod
    def fit(self, bags: BagSet, y: np.ndarray) -> Self:
        """Fit on ``bags`` (B bags) and targets ``y [B]`` (target units)."""

    @abstractmethod
    def predict(self, bags: BagSet) -> Prediction:
        """Predict quantiles for every bag in ``bags``."""

    @abstractmethod
    def settings(self) -> dict:
        """JSON-serialisable constructor settings."""

    @abstractmethod
    def _save(self, path: Path) -> dict:
        """Write model files into ``path``; return extra JSON fields for ``surrogate.json``."""

    @classmethod
    @abstractmethod
    def _load(cls, path: Path, meta: dict) -> Self:
        """Rebuild from ``path`` and the parsed ``surrogate.json``."""

    @property
    def is_fitted(self) -> bool:
        return self.n_train > 0

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise InputError(
                f"The {type(self).__name__} surrogate is not fitted yet; call fit(bags, y) first."
            )

    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted surrogate into directory ``path`` (created if missing)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        extra = self._save(path)
        meta = {
            "class": type(self).__name__,
            "format": FORMAT_VERSION,
            "settings": self.settings(),
            "n_train": int(self.n_train),
            **extra,
        }
        write_json(path / "surrogate.json", meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Surrogate:
        """Load a surrogate saved with :meth:`save` (any subclass when called on the base)."""
        path = Path(path)
        file = path / "surrogate.json"
        if not file.is_file():
            raise StateError(
                f"No saved surrogate at {path} (surrogate.json missing); save one with "
                "surrogate.save(path) first."
            )
        meta = read_json(file)
        name = meta.get("class")
        if meta.get("format", 0) > FORMAT_VERSION:
            raise StateError(
                f"The surrogate at {path} has format {meta.get('format')}, newer than this "
                f"activemil ({FORMAT_VERSION}); upgrade activemil to load it."
            )
        target = _CLASSES.get(str(name))
        if target is None or not issubclass(target, cls):
            raise StateError(
                f"The surrogate at {path} is a {name!r}, not a {cls.__name__}; load it with "
                "Surrogate.load(path)."
            )
        obj = target._load(path, meta)
        obj.n_train = int(meta["n_train"])
        return obj


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    np.savez(path / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / "arrays.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def check_training_data(bags: BagSet, y: np.ndarray, *, min_bags: int = 2) -> np.ndarray:
    """Validate ``bags`` and targets; return ``y`` as float64 ``[B]``."""
    if not isinstance(bags, BagSet):
        raise InputError(
            f"Surrogates train on a BagSet, got {type(bags).__name__}; build bags with "
            "activemil.featurize.featurize_pool."
        )
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape[0] != len(bags):
        raise InputError(
            f"Got {y.shape[0]} targets for {len(bags)} bags; pass one target per bag in bag order."
        )
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise InputError(
            f"Target of bag {bags.ids[bad[0]]!r} (row {bad[0]}) is not finite; drop failed "
            "measurements before fitting."
        )
    if len(bags) < min_bags:
        raise InputError(
            f"Only {len(bags)} labelled bags; this surrogate needs at least {min_bags}, so "
            "measure more compositions or choose calibration='none'."
        )
    check_bags(bags)
    return y


def check_bags(bags: BagSet, *, dim: int | None = None, side_dim: int | None = None) -> None:
    """Check that every bag has an instance and dimensions match the fitted model."""
    if not isinstance(bags, BagSet):
        raise InputError(
            f"Surrogates predict on a BagSet, got {type(bags).__name__}; build bags with "
            "activemil.featurize.featurize_pool."
        )
    empty, finite = bags.health()
    if empty >= 0:
        raise InputError(
            f"Bag {bags.ids[empty]!r} (row {empty}) has no sites; rebuild it with at least "
            "one site."
        )
    if not finite:
        raise InputError("Bag features contain NaN or inf; rebuild the bags or clear the cache.")
    if dim is not None and bags.dim != dim:
        raise InputError(
            f"Bags have {bags.dim} features per site but the surrogate was trained on {dim}; use "
            "the same encoder and recipe as for training."
        )
    if side_dim is not None and bags.side.shape[1] != side_dim:
        raise InputError(
            f"Bags have {bags.side.shape[1]} side-information columns but the surrogate was "
            f"trained on {side_dim}; use the same design space as for training."
        )


def composition_columns(bags: BagSet) -> int:
    """Number ``E`` of composition columns at the start of ``bags.side``."""
    els = bags.meta.get("elements") if isinstance(bags.meta, dict) else None
    e = len(els) if els else bags.side.shape[1]
    if e <= 0 or e > bags.side.shape[1]:
        raise InputError(
            f"Bags carry {bags.side.shape[1]} side columns but meta lists {e} elements; rebuild "
            "the bags so the composition fractions are the first side columns."
        )
    return e
