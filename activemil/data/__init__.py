"""Bundled public reference data (see README.md and LICENSES.md in this folder)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DATASETS: dict[str, tuple[str, str, str]] = {
    # name: (file, target column, direction)
    "agirpdptru-orr": ("agirpdptru_orr_grid.csv", "activity", "maximize"),
    "oer-plate-3496": ("oer_plate_3496.csv", "overpotential_V", "minimize"),
    "oer-plate-3851": ("oer_plate_3851.csv", "overpotential_V", "minimize"),
}
SITE_FILES: dict[str, str] = {
    "OH_ontop": "agirpdptru_sites_OH_ontop.csv",
    "O_fcc": "agirpdptru_sites_O_fcc.csv",
}


def data_path(filename: str) -> Path:
    """Path of a bundled data file, e.g. ``data_path("agirpdptru_orr_grid.csv")``."""
    return Path(str(resources.files("activemil.data").joinpath(filename)))
