"""Encoder contract: one feature vector per site of a generated surface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np

from activemil.errors import InputError
from activemil.structures.base import Recipe, Surface


class Encoder(ABC):
    """Turns the sites of a :class:`~activemil.structures.Surface` into vectors.

    Subclasses set ``name`` and ``version`` (both enter cache keys: bump ``version`` whenever
    the features change) and implement :meth:`encode`.
    """

    name: str = ""
    version: str = "1"

    @abstractmethod
    def dim(self, recipe: Recipe, elements: Sequence[str]) -> int:
        """Feature dimension ``D`` for surfaces of ``recipe`` over ``elements``."""

    @abstractmethod
    def encode(self, surface: Surface, elements: Sequence[str]) -> np.ndarray:
        """Per-site features, float32 ``[len(surface.sites), D]``, in ``surface.sites`` order."""

    def settings(self) -> dict:
        """JSON-serialisable settings that change the features (part of cache keys)."""
        return {}

    def cache_token(self) -> dict:
        return {"encoder": self.name, "version": self.version, **self.settings()}


_REGISTRY: dict[str, Callable[..., Encoder]] = {}


def register_encoder(name: str, factory: Callable[..., Encoder]) -> None:
    """Register an encoder factory under ``name``."""
    _REGISTRY[name] = factory


def available_encoders() -> list[str]:
    return sorted(_REGISTRY)


def get_encoder(name: str, **settings) -> Encoder:
    """Instantiate the registered encoder ``name`` (``zones``, ``chgnet``, ``uma``)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"Unknown encoder {name!r}; choose one of {', '.join(available_encoders())}."
        ) from None
    return factory(**settings)
