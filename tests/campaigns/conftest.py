"""Fixtures: small campaigns (Ni-Fe-Co on coarse grids) with and without proposals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from activemil.campaigns import Campaign, propose
from activemil.space import DesignSpace


def _make(path: Path, step: float = 0.25, unit: str = "mV", **kw) -> Campaign:
    space = DesignSpace(("Ni", "Fe", "Co"), step=step)
    return Campaign.create(path, space, target="overpotential", maximize=False, unit=unit, **kw)


@pytest.fixture
def make_campaign() -> Callable[..., Campaign]:
    """Factory: ``make_campaign(path, step=0.25, unit="mV", **create_kwargs)``."""
    return _make


@pytest.fixture
def camp(tmp_path: Path) -> Campaign:
    """A fresh campaign over 15 compositions, nothing proposed."""
    return _make(tmp_path / "c")


@pytest.fixture
def proposed(tmp_path: Path) -> Campaign:
    """A campaign over 66 compositions with one space-filling batch of 6 in flight."""
    c = _make(tmp_path / "c", step=0.1)
    propose(c, 6, seed=1)
    return c
