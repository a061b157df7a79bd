from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activemil.errors import InputError
from activemil.space import CandidatePool, DesignSpace, candidate_id, parse_candidate_id


def test_pool_count_matches_closed_form_five_elements():
    space = DesignSpace(("Ag", "Ir", "Pd", "Pt", "Ru"), step=0.05)
    assert space.count() == comb(20 + 4, 4) == 10_626
    pool = space.enumerate()
    assert len(pool) == 10_626
    np.testing.assert_allclose(pool.fractions.sum(axis=1), 1.0)
    assert "Ag20Pd80" in pool


@given(n_el=st.integers(1, 6), units=st.sampled_from([2, 4, 5, 10]), kmax=st.integers(1, 6))
@settings(max_examples=40, deadline=None)
def test_count_equals_enumeration_and_k_of_n_formula(n_el, units, kmax):
    elements = ("Ni", "Fe", "Co", "Mn", "Ce", "La")[:n_el]
    kmax = min(kmax, n_el)
    space = DesignSpace(elements, step=1 / units, max_elements=kmax)
    # compositions with exactly k elements present: C(n,k) * C(units-1, k-1)
    expected = sum(comb(n_el, k) * comb(units - 1, k - 1) for k in range(1, kmax + 1))
    assert space.count() == expected
    assert len(space.enumerate()) == expected


def test_oer_plate_space_matches_dataset_size():
    space = DesignSpace(("Ni", "Fe", "Co", "Mn", "Ce", "La"), step=0.1, max_elements=4)
    assert space.count() == 2121


def test_bounds_are_respected():
    space = DesignSpace(("Ni", "Fe", "Co"), step=0.1, min_fraction={"Ni": 0.2}, max_fraction={"Fe": 0.3})
    pool = space.enumerate()
    ni, fe = pool.fractions[:, 0], pool.fractions[:, 1]
    assert np.all((ni == 0) | (ni >= 0.2 - 1e-9))
    assert np.all(fe <= 0.3 + 1e-9)
    assert space.count() == len(pool)
    assert all(space.contains(row) for row in pool.fractions)


def test_pool_limit_refuses_with_clear_message():
    space = DesignSpace(("Ni", "Fe", "Co", "Mn", "Cr"), step=0.01)
    with pytest.raises(InputError, match="--force"):
        space.enumerate(limit=1000)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"elements": ("Ni", "Xx")}, "Unknown element symbol 'Xx'"),
        ({"elements": ("Ni", "Ni")}, "repeats"),
        ({"elements": ("Ni", "Fe"), "step": 0.3}, "does not divide 1"),
        ({"elements": ("Ni", "Fe"), "max_fraction": {"Co": 0.5}}, "not one of the elements"),
        ({"elements": ("Ni", "Fe"), "max_elements": 3}, "1 <= min <= max"),
    ],
)
def test_bad_spaces_give_one_sentence_errors(kwargs, match):
    with pytest.raises(InputError, match=match) as err:
        DesignSpace(**kwargs)
    assert "\n" not in str(err.value)


@given(st.lists(st.integers(0, 20), min_size=5, max_size=5).filter(lambda c: sum(c) > 0))
def test_candidate_id_round_trips(counts):
    elements = ("Ag", "Ir", "Pd", "Pt", "Ru")
    fr = np.array(counts) / sum(counts)
    cid = candidate_id(elements, fr)
    back = parse_candidate_id(cid, elements)
    np.testing.assert_allclose(back, fr, atol=1e-4)


def test_candidate_ids_are_stable_and_readable():
    assert candidate_id(("Ag", "Pd"), [0.2, 0.8]) == "Ag20Pd80"
    assert candidate_id(("Ni", "Fe", "Co"), [0.125, 0.0, 0.875]) == "Ni12.5Co87.5"
    with pytest.raises(InputError, match="not one of the space's elements"):
        parse_candidate_id("Ag20Cu80", ("Ag", "Pd"))


def test_pool_index_and_nearest():
    pool = CandidatePool(("Ag", "Pd"), np.array([[0.2, 0.8], [0.5, 0.5]]))
    assert pool.index("Ag50Pd50") == 1
    assert pool.nearest(np.array([0.22, 0.78]))[0] == 0
    with pytest.raises(InputError, match="not in the pool"):
        pool.index("Ag10Pd90")
