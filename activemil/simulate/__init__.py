"""Backtests of campaign strategies on lookup tables and physics oracles."""

from activemil.simulate.oracle import Oracle, TableOracle

__all__ = ["Oracle", "TableOracle"]
