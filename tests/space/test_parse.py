import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activemil.errors import InputError
from activemil.space import parse_composition_table, parse_compositions, parse_formula

ELEMENTS = ("Ag", "Ir", "Pd", "Pt", "Ru")


def test_element_columns_and_formulas_agree():
    cols = pd.DataFrame({"Ag": [0.2, 0.5], "Pd": [0.8, 0.5]})
    formulas = pd.DataFrame({"formula": ["Ag0.2Pd0.8", "AgPd"]})
    a = parse_compositions(cols, ELEMENTS)
    b = parse_compositions(formulas, ELEMENTS)
    np.testing.assert_allclose(a, b)
    assert parse_formula("Ag20Pd80") == pytest.approx({"Ag": 0.2, "Pd": 0.8})


def test_percent_columns_are_scaled():
    fr = parse_compositions(pd.DataFrame({"Ag": [20], "Pd": [80]}), ELEMENTS)
    np.testing.assert_allclose(fr[0], [0.2, 0, 0.8, 0, 0])


def test_sum_error_names_row_and_sum():
    df = pd.DataFrame({"Ag": [0.2, 0.3], "Pd": [0.8, 0.6]})
    with pytest.raises(InputError, match=r"table row 3: element fractions sum to 0.9"):
        parse_compositions(df, ELEMENTS)


def test_all_problems_are_collected_with_rows_and_columns():
    df = pd.DataFrame({"Ag": ["x", 0.5, -1.0], "Pd": [0.5, 0.2, 2.0]})
    fr, problems = parse_composition_table(df, ELEMENTS, source="m.csv")
    assert len(problems) == 3
    assert problems[0].startswith("m.csv row 2, column Ag: 'x' is not a number")
    assert "m.csv row 3" in problems[1] and "m.csv row 4, column Ag" in problems[2]
    assert np.isnan(fr).all()


def test_unknown_element_in_formula():
    _, problems = parse_composition_table(pd.DataFrame({"formula": ["Cu0.5Pd0.5"]}), ELEMENTS)
    assert "Cu are not in this design space" in problems[0]


def test_no_composition_columns():
    with pytest.raises(InputError, match="no composition columns"):
        parse_compositions(pd.DataFrame({"value": [1.0]}), ELEMENTS)


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                          st.none()), min_size=2, max_size=2))
@settings(max_examples=100, deadline=None)
def test_parser_never_crashes_and_rows_are_valid_or_reported(values):
    df = pd.DataFrame({"Ag": [values[0]], "Pd": [values[1]]})
    fr, problems = parse_composition_table(df, ELEMENTS)
    if problems:
        assert np.isnan(fr[0]).all()
        assert all(p.count("\n") == 0 for p in problems)
    else:
        assert abs(fr[0].sum() - 1) < 1e-9 and (fr[0] >= 0).all()
