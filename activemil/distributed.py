"""Optional Ray engine (``pip install activemil[ray]``) for work that outgrows one process.

``engine="local"`` (the default) runs in this process or a local process pool. ``engine="ray"``
maps chunks onto Ray tasks: an embedded local Ray with one worker per core unless an address is
given (``--ray-address`` or ``RAY_ADDRESS``; ``auto`` joins the cluster this machine belongs
to). Every task is a pure function of its chunk (per-candidate seeds), so results equal a
serial run. A task whose worker dies is retried (``max_retries``); a task that still fails, or
a cluster that cannot be reached, raises :class:`~activemil.errors.EngineError` with one
sentence, and nothing has been written to the campaign (features are only cached).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from activemil.errors import EngineError, InputError, MissingDependencyError

ENGINES: tuple[str, ...] = ("local", "ray")
_DEFAULT: list[tuple[str, str | None, int | None]] = [("local", None, None)]


def ray_available() -> bool:
    """Whether the optional ``ray`` package can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def use_engine(engine: str, address: str | None = None, workers: int | None = None) -> Iterator[None]:
    """Within this context, work that takes ``engine=None`` (pool featurization) runs on
    ``engine`` (``local`` or ``ray``) at ``address`` with ``workers`` local workers."""
    if engine not in ENGINES:
        raise InputError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    old = _DEFAULT[0]
    _DEFAULT[0] = (engine, address, workers)
    try:
        yield
    finally:
        _DEFAULT[0] = old


def current_engine() -> tuple[str, str | None, int | None]:
    """``(engine, address, workers)`` of the innermost :func:`use_engine` (default local)."""
    return _DEFAULT[0]


_CONNECT_S = 3.0


def _reachable(address: str) -> bool:
    """Whether ``[ray://]host:port`` accepts a TCP connection within :data:`_CONNECT_S` s
    (``ray.init`` itself retries an unreachable address for minutes)."""
    import socket

    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=_CONNECT_S):
            return True
    except (OSError, ValueError):
        return False


def _init_ray(address: str | None, workers: int | None) -> bool:
    """Connect to / start Ray; return True when this call started it (and should stop it)."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "The ray engine needs the optional ray package; install it with "
            "`pip install activemil[ray]` or drop --engine ray / --ray-address."
        ) from None
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto" and not _reachable(address):
        raise EngineError(
            f"Could not reach the Ray cluster at {address!r} within {_CONNECT_S:g} s; check the "
            "address (--ray-address / RAY_ADDRESS) or run without --engine ray."
        )
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise EngineError(
            f"Could not start or reach {where} ({str(exc).splitlines()[0][:120]}); check the "
            "address (--ray-address / RAY_ADDRESS) or run without --engine ray."
        ) from None
    return True


def ray_map(
    fn: Callable[[Any], Any], items: Sequence[Any], *, address: str | None = None,
    workers: int | None = None, max_retries: int = 2, threads: int = 1,
    on_result: Callable[[int, Any], None] | None = None, shared: Any = None,
) -> list[Any]:
    """``[fn(x) for x in items]`` (``fn(shared, x)`` when ``shared`` is given; it is put in
    the object store once) as Ray tasks (one CPU each, ``threads`` torch threads), results in
    input order; ``on_result(i, result)`` is called in this process as each finishes."""
    started = _init_ray(address, workers)
    import ray

    try:
        task = ray.remote(num_cpus=1, max_retries=max_retries)(_call)
        if shared is None:
            refs = [task.remote(fn, x, threads) for x in items]
        else:
            ref = ray.put(shared)
            refs = [task.remote(fn, x, threads, ref) for x in items]
        pos = {r: i for i, r in enumerate(refs)}
        out: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = pos[done[0]]
            try:
                out[i] = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                raise EngineError(
                    f"A Ray task failed after {max_retries} retries "
                    f"({type(exc).__name__}); nothing was recorded, run the command again."
                ) from None
            if on_result is not None:
                on_result(i, out[i])
        return out
    finally:
        if started:
            ray.shutdown()


_NO_SHARED = object()


def _call(fn: Callable[..., Any], x: Any, threads: int, shared: Any = _NO_SHARED) -> Any:
    import torch

    torch.set_num_threads(threads)
    return fn(x) if shared is _NO_SHARED else fn(shared, x)
