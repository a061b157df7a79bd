"""Design spaces, candidate pools and composition parsing (lowest layer)."""

from activemil.space.design import (
    DEFAULT_POOL_LIMIT,
    CandidatePool,
    DesignSpace,
    candidate_id,
    parse_candidate_id,
    validate_elements,
)
from activemil.space.parse import (
    SUM_TOLERANCE,
    element_columns,
    measured_table,
    parse_composition_table,
    parse_compositions,
    parse_formula,
    read_csv_file,
    sheet_row,
)

__all__ = [
    "DEFAULT_POOL_LIMIT",
    "SUM_TOLERANCE",
    "CandidatePool",
    "DesignSpace",
    "candidate_id",
    "element_columns",
    "measured_table",
    "parse_candidate_id",
    "parse_composition_table",
    "parse_compositions",
    "parse_formula",
    "read_csv_file",
    "sheet_row",
    "validate_elements",
]
