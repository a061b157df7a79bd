"""Small deterministic pools for the acquisition tests."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch


def simplex_grid(n_el: int = 3, step: float = 0.05) -> np.ndarray:
    """All compositions of ``n_el`` elements on a grid of ``step``: ``[N, n_el]``."""
    k = round(1 / step)
    rows = [c for c in itertools.product(range(k + 1), repeat=n_el - 1) if sum(c) <= k]
    return np.array([[*c, k - sum(c)] for c in rows], dtype=np.float64) / k


def smooth_target(comp: np.ndarray) -> np.ndarray:
    """A smooth, peaked property over the simplex ``[N]`` (maximum near (0.6, 0.3, 0.1))."""
    c = np.array([0.6, 0.3, 0.1])
    return np.exp(-8.0 * ((comp[:, :3] - c) ** 2).sum(1)) + 0.3 * comp[:, 1]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture
def pool() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    comp = simplex_grid()
    return comp, smooth_target(comp), tuple(f"c{i}" for i in range(len(comp)))
