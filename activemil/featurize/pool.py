"""Featurize a whole candidate pool into a :class:`BagSet`, cached and process-parallel."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np

from activemil.errors import InputError
from activemil.featurize.bags import BagSet
from activemil.featurize.base import Encoder
from activemil.featurize.cache import FeatureCache, cache_key
from activemil.featurize.zones import ZonesEncoder, expected_environments
from activemil.space.design import CandidatePool
from activemil.structures.base import Recipe

BagMode = Literal["sampled", "expected"]
DEFAULT_EXPECTED_SITES = 64


def surface_seed(seed: int, candidate: str) -> int:
    """Stable per-candidate occupancy seed derived from the run ``seed`` and the id."""
    return int(hashlib.sha256(f"{seed}:{candidate}".encode()).hexdigest()[:8], 16)


def _bag_for(
    composition: dict[str, float],
    cid: str,
    elements: Sequence[str],
    recipe: Recipe,
    encoder: Encoder,
    seed: int,
    n_sites: int | None,
    mode: BagMode,
) -> dict[str, np.ndarray]:
    """Arrays of one bag: features [k, D], weights [k], site_index [k], site_kind [k]."""
    s = surface_seed(seed, cid)
    if mode == "expected":
        assert isinstance(encoder, ZonesEncoder)
        kinds, counts, prob = expected_environments(
            recipe, composition, elements, k=n_sites or DEFAULT_EXPECTED_SITES, seed=s
        )
        feats = encoder.encode_counts(recipe, kinds, counts, len(elements))
        return {
            "features": feats,
            "weights": prob.astype(np.float32),
            "site_index": np.arange(len(kinds), dtype=np.int32),
            "site_kind": np.array([recipe.site_kinds.index(k) for k in kinds], np.int8),
        }
    surface = recipe.build(composition, seed=s)
    feats = encoder.encode(surface, elements)
    idx = np.arange(len(surface.sites))
    if n_sites is not None and n_sites < len(idx):
        idx = np.sort(np.random.default_rng(s).choice(idx, size=n_sites, replace=False))
    kinds = [surface.sites[i].kind for i in idx]
    return {
        "features": np.asarray(feats[idx], np.float32),
        "weights": np.full(len(idx), 1.0 / len(idx), np.float32),
        "site_index": idx.astype(np.int32),
        "site_kind": np.array([recipe.site_kinds.index(k) for k in kinds], np.int8),
    }


def _describe(
    fractions: np.ndarray, elements: Sequence[str], recipe: Recipe, encoder: Encoder,
    seed: int, n_sites: int | None, mode: BagMode,
) -> dict:
    comp = {el: round(float(x), 8) for el, x in zip(elements, fractions) if x > 0}
    return {
        "composition": comp,
        "elements": list(elements),
        "recipe": recipe.name,
        "recipe_settings": recipe.settings(),
        "seed": seed,
        "encoder": encoder.cache_token(),
        "mode": mode,
        "n_sites": n_sites,
    }


def _work(args: tuple) -> list[dict[str, np.ndarray]]:
    """Worker: featurize a chunk of candidates (runs in a child process)."""
    chunk, elements, recipe, encoder, seed, n_sites, mode, threads = args
    import torch

    torch.set_num_threads(threads)
    return [
        _bag_for(comp, cid, elements, recipe, encoder, seed, n_sites, mode) for cid, comp in chunk
    ]


def featurize_pool(
    pool: CandidatePool,
    recipe: Recipe,
    encoder: Encoder,
    *,
    seed: int = 0,
    n_sites: int | None = None,
    mode: BagMode = "sampled",
    cache_dir: str | Path | None = None,
    jobs: int = 1,
    progress: bool = False,
    chunk_size: int = 32,
    engine: str | None = None,
    ray_address: str | None = None,
) -> BagSet:
    """Bags of per-site features for every candidate of ``pool``.

    Args:
        pool: candidates ``[N]`` over ``pool.elements``.
        recipe, encoder: how to build surfaces and featurize their sites.
        seed: run seed; each candidate's surface uses ``surface_seed(seed, id)``.
        n_sites: sites per bag (``None`` = all sites of the surface; for ``expected`` bags the
            number of distinct environments, default 64).
        mode: ``sampled`` (sites of one random surface, uniform weights) or ``expected``
            (most probable distinct environments weighted by probability; zones encoder only).
        cache_dir: content-addressed cache folder (``None`` = no cache).
        jobs: worker processes (1 = in this process).
        progress: show a rich progress bar.
        engine: ``local`` (processes on this machine, ``jobs``) or ``ray`` (Ray tasks of
            ``chunk_size`` candidates; local Ray with ``jobs`` workers, or the cluster at
            ``ray_address`` / ``RAY_ADDRESS``); ``None`` = :func:`activemil.distributed.
            current_engine`. Bags are identical whatever the engine.

    Returns:
        BagSet with ``side`` = composition fractions ``[N, E]`` and ``strata`` = elements present.
    """
    if mode not in ("sampled", "expected"):
        raise InputError(f"Unknown bag mode {mode!r}; use 'sampled' or 'expected'.")
    if mode == "expected" and not isinstance(encoder, ZonesEncoder):
        raise InputError(
            f"Expected bags need the zones encoder, not {encoder.name!r}; use --bag-mode sampled."
        )
    elements = list(pool.elements)
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    results: list[dict[str, np.ndarray] | None] = [None] * len(pool)
    keys: list[str] = []
    todo: list[int] = []
    for i in range(len(pool)):
        key = cache_key(_describe(pool.fractions[i], elements, recipe, encoder, seed, n_sites, mode))
        keys.append(key)
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            results[i] = hit
        else:
            todo.append(i)

    def store(i: int, bag: dict[str, np.ndarray]) -> None:
        results[i] = bag
        if cache is not None:
            cache.put(keys[i], bag)

    bar = _progress(progress, len(todo), f"featurizing ({encoder.name})")
    from activemil.distributed import current_engine, ray_map

    if engine is None:
        engine, ctx_address, ctx_workers = current_engine()
        ray_address = ray_address or ctx_address
        jobs = ctx_workers or jobs
    if engine not in ("local", "ray"):
        raise InputError(f"Unknown engine {engine!r}; choose local or ray.")
    try:
        if engine == "ray" and todo:
            chunks = [todo[j : j + chunk_size] for j in range(0, len(todo), chunk_size)]
            args = [
                ([(pool.ids[i], pool.composition(i)) for i in ch], elements, recipe, encoder,
                 seed, n_sites, mode, 1)
                for ch in chunks
            ]

            def done(k: int, bags: list[dict[str, np.ndarray]]) -> None:
                for i, bag in zip(chunks[k], bags):
                    store(i, bag)
                bar.advance(len(chunks[k]))

            ray_map(_work, args, address=ray_address, workers=jobs if jobs > 1 else None,
                    on_result=done)
        elif jobs <= 1 or len(todo) <= chunk_size:
            for i in todo:
                store(i, _bag_for(pool.composition(i), pool.ids[i], elements, recipe, encoder,
                                  seed, n_sites, mode))
                bar.advance()
        else:
            chunks = [todo[j : j + chunk_size] for j in range(0, len(todo), chunk_size)]
            args = [
                ([(pool.ids[i], pool.composition(i)) for i in ch], elements, recipe, encoder,
                 seed, n_sites, mode, 1)
                for ch in chunks
            ]
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as ex:
                for ch, bags in zip(chunks, ex.map(_work, args)):
                    for i, bag in zip(ch, bags):
                        store(i, bag)
                    bar.advance(len(ch))
    finally:
        bar.close()

    strata = pool.n_present
    return BagSet.from_instances(
        ids=pool.ids,
        features=[r["features"] for r in results],
        weights=[r["weights"] for r in results],
        site_index=[r["site_index"] for r in results],
        site_kind=[r["site_kind"] for r in results],
        side=pool.fractions.astype(np.float32),
        strata=strata,
        meta={
            "elements": elements,
            "recipe": recipe.name,
            "recipe_settings": recipe.settings(),
            "site_kinds": list(recipe.site_kinds),
            "encoder": encoder.cache_token(),
            "seed": seed,
            "mode": mode,
            "n_sites": n_sites,
        },
    )


def _progress(enabled: bool, total: int, label: str):
    """A rich progress bar with rate and ETA (:class:`activemil.progress.ProgressBar`)."""
    from activemil.progress import ProgressBar

    return ProgressBar(enabled, total, label, unit="bags")
