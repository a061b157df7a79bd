"""Chunked enumeration, fast ids and the memory check that replaced the 250k cap."""

from __future__ import annotations

import numpy as np
import pytest

from activemil.errors import InputError
from activemil.space import DesignSpace
from activemil.space.design import candidate_id, ids_from_counts, pool_memory

SPACES = [
    (("Ag", "Ir", "Pd"), 0.1, {}),
    (("Ag", "Ir", "Pd", "Pt", "Ru"), 0.05, {"max_elements": 3, "min_elements": 2}),
    (("Ni", "Fe", "Co", "Mn"), 0.125, {"min_fraction": {"Ni": 0.25}, "max_fraction": {"Fe": 0.5}}),
]


@pytest.mark.parametrize("elements,step,kw", SPACES)
@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_chunks_equal_recursive_enumeration(elements, step, kw, chunk) -> None:
    space = DesignSpace(elements, step=step, **kw)
    old = np.array(list(space.iter_counts()))
    chunks = list(space.iter_count_chunks(chunk=chunk))
    assert np.array_equal(np.concatenate(chunks), old)
    assert len(old) == space.count()
    if chunk == 7:
        assert max(len(c) for c in chunks) < 7 + 20  # bounded by the chunk (plus one block)


@pytest.mark.parametrize("elements,step,kw", SPACES)
def test_fast_ids_equal_candidate_id(elements, step, kw) -> None:
    space = DesignSpace(elements, step=step, **kw)
    counts = np.array(list(space.iter_counts()))
    fast = ids_from_counts(elements, counts, space.n_units)
    assert fast == [candidate_id(elements, row / space.n_units) for row in counts]
    pool = space.enumerate()
    assert list(pool.ids) == fast and np.allclose(pool.fractions.sum(axis=1), 1)


def test_large_space_is_counted_not_capped(monkeypatch) -> None:
    space = DesignSpace(("Ag", "Au", "Cu", "Ir", "Pd", "Pt", "Rh", "Ru"), step=0.05)
    assert space.check_size() == 888_030  # no 250k cap any more
    monkeypatch.setenv("ACTIVEMIL_MAX_POOL_GB", "0.01")
    with pytest.raises(InputError, match=r"need about .* GiB") as e:
        space.check_size()
    assert "\n" not in str(e.value)
    monkeypatch.setenv("ACTIVEMIL_MAX_POOL_GB", "lots")
    with pytest.raises(InputError, match="not a number"):
        space.check_size()
    assert pool_memory(1_000_000, 8) < 2**30
