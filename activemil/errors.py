"""Error types shared by every layer.

Every error a user can trigger with bad input is an :class:`ActiveMILError` whose message is
one sentence: what is wrong, where (file, row, column), and how to fix it. The CLI prints the
message and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class ActiveMILError(ValueError):
    """A user-facing error with a one-sentence, actionable message."""


class InputError(ActiveMILError):
    """Bad user input: a composition, a table, an argument."""


class StateError(ActiveMILError):
    """A campaign directory is missing, locked, corrupt or from a newer schema."""


class MissingDependencyError(ActiveMILError):
    """An optional extra (e.g. fairchem-core for UMA) or a user-supplied file is missing."""


class EngineError(ActiveMILError):
    """The distributed engine (Ray) is unreachable or lost a worker beyond its retries."""
