"""Content-addressed on-disk feature cache.

An entry is keyed by the SHA-256 of a canonical JSON description of everything that changes the
features (candidate composition, recipe and its settings, occupancy seed, encoder name, version
and settings, bag mode and size). Entries are ``.npz`` files written atomically (temp file +
rename), so a killed process never leaves a half-written entry under the final name; entries
that fail to load are recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def cache_key(description: dict) -> str:
    """SHA-256 hex digest of a canonical JSON encoding of ``description``."""
    blob = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class FeatureCache:
    """Arrays stored under ``root/ab/abcdef....npz`` by content key.

    ``hits`` and ``misses`` count lookups made through this object.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        p = self.path(key)
        if not p.exists():
            self.misses += 1
            return None
        try:
            with np.load(p, allow_pickle=False) as data:
                out = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):  # corrupt entry: recompute and overwrite
            self.misses += 1
            return None
        self.hits += 1
        return out

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        try:
            # no fsync: the cache is derived data; after a crash a torn entry fails to load
            # and is recomputed (fsync per entry made a 10k-candidate pool minutes slower)
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
