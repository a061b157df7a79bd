"""Recipes that turn compositions into surfaces with sites and neighbour zones."""

from activemil.structures.base import (
    Recipe,
    Site,
    Surface,
    available_recipes,
    exact_counts,
    get_recipe,
    random_occupancy,
    register_recipe,
)
from activemil.structures.fcc111 import FCC111Recipe, vegard_lattice_constant
from activemil.structures.oxide import CationSublatticeOxideRecipe
from activemil.structures.oxyhydroxide import OxyhydroxideRecipe

__all__ = [
    "CationSublatticeOxideRecipe",
    "FCC111Recipe",
    "OxyhydroxideRecipe",
    "Recipe",
    "Site",
    "Surface",
    "available_recipes",
    "exact_counts",
    "get_recipe",
    "random_occupancy",
    "register_recipe",
    "vegard_lattice_constant",
]
