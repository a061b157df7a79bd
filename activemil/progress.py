"""One rich progress bar with rate and ETA, or nothing (disabled, or no work)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType


class ProgressBar:
    """``with ProgressBar(enabled, total, label) as bar: bar.advance(n)``.

    Shows ``label``, a bar, done/total, items per second and time remaining; transient unless
    ``CI`` is set. Does nothing when ``enabled`` is false or ``total`` is 0.
    """

    def __init__(self, enabled: bool, total: int, label: str, unit: str = "it") -> None:
        self._p = None
        if enabled and total > 0:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("[progress.description]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                transient=not os.environ.get("CI"),
            )
            self._unit = unit
            self._p.start()
            self._task = self._p.add_task(label, total=total, rate="")

    def advance(self, n: int = 1) -> None:
        if self._p is not None:
            self._p.advance(self._task, n)
            speed = self._p.tasks[0].speed
            if speed:
                self._p.update(self._task, rate=f"{speed:,.0f} {self._unit}/s")

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


_SHOW = [False]


@contextmanager
def show_progress(enabled: bool) -> Iterator[None]:
    """Within this context, long steps that take no ``progress`` argument (surrogate training
    and prediction, pool enumeration) show progress bars when ``enabled``."""
    old = _SHOW[0]
    _SHOW[0] = bool(enabled)
    try:
        yield
    finally:
        _SHOW[0] = old


def progress_enabled() -> bool:
    """Whether the innermost :func:`show_progress` asked for bars (default: no)."""
    return _SHOW[0]
