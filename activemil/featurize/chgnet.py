"""Frozen CHGNet atom embeddings pooled per neighbour zone of each site.

Also home of the zone-pooling helpers (:func:`zone_pooled_dim`, :func:`pool_zones`) shared with
the UMA encoder, so both pretrained encoders produce the same per-site layout.

Per-site layout for ``pool="zones"`` (``F`` = embedding width, 64 for CHGNet 0.3.0; kinds in the
order of ``recipe.zone_layout``, which is ``recipe.site_kinds``; ``Z`` = the largest number of
zones of any kind)::

    [ one_hot(kind) | mean_emb(zone 0) | mean_emb(zone 1) | ... | mean_emb(zone Z-1) ]
      n_kinds floats   F floats           F floats                F floats

Zone ``z`` is the ``z``-th zone of the site's own kind (``surface.zone_layout[site.kind]``), so
e.g. for fcc111 slot 0 is the on-top atom for ``ontop`` sites and the 3-atom ensemble for
``fcc`` sites; slots past a kind's last zone are zero; the one-hot (first, as in the ``zones``
encoder) tells the kinds apart. ``D = n_kinds + Z * F`` (fcc111: ``2 + 6 * 64 = 386``;
oxyhydroxide: ``1 + 4 * 64 = 257``; oxide: ``1 + 5 * 64 = 321``). ``pool="center"`` keeps only
slot 0: ``D = n_kinds + F``.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from activemil.errors import InputError
from activemil.featurize.base import Encoder, register_encoder
from activemil.structures.base import Recipe, Surface

PoolMode = Literal["zones", "center"]
_POOLS = ("zones", "center")

#: atom embedding width of the CHGNet releases (known without loading the model)
CHGNET_FEA_DIM = {"0.3.0": 64, "0.2.0": 64}


def _kinds(zone_layout: Mapping[str, Sequence[tuple[str, int]]]) -> list[str]:
    return list(zone_layout)


def zone_pooled_dim(recipe: Recipe, width: int, pool: str = "zones") -> int:
    """Per-site feature dimension ``D`` for embeddings of width ``F = width`` (see module doc)."""
    layout = recipe.zone_layout
    n_slots = max(len(z) for z in layout.values()) if pool == "zones" else 1
    return n_slots * width + len(_kinds(layout))


def pool_zones(embeddings: np.ndarray, surface: Surface, pool: str = "zones") -> np.ndarray:
    """Pool per-atom embeddings ``[n_atoms, F]`` into per-site vectors ``[n_sites, D]`` float32.

    Each slot is the mean embedding of one zone's atoms (module doc gives the layout).
    """
    layout = surface.zone_layout
    kinds = _kinds(layout)
    width = int(embeddings.shape[1])
    n_slots = max(len(z) for z in layout.values()) if pool == "zones" else 1
    emb = np.asarray(embeddings, dtype=np.float64)
    k = len(kinds)
    out = np.zeros((len(surface.sites), k + n_slots * width), dtype=np.float64)
    for s, site in enumerate(surface.sites):
        out[s, kinds.index(site.kind)] = 1.0
        for z, (zone, _size) in enumerate(layout[site.kind][:n_slots]):
            out[s, k + z * width:k + (z + 1) * width] = emb[list(site.zones[zone])].mean(axis=0)
    return out.astype(np.float32)


def set_torch_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count (process-wide) if ``threads`` is given."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != int(threads):
        torch.set_num_threads(int(threads))


_MODELS: dict[str, Any] = {}
_LAST_LAYER: dict[str, Any] = {}  # model name -> output of the last atom layer, latest forward
_LOCK = threading.Lock()


def load_chgnet(model_name: str = "0.3.0") -> Any:
    """The frozen CHGNet ``model_name`` on CPU in eval mode, loaded once per process.

    A forward hook on ``readout_norm`` (or the last atom conv layer if the release has no
    readout norm) stores the final atom features ``[n_atoms, F]`` in ``_LAST_LAYER[model_name]``.
    """
    with _LOCK:
        if model_name not in _MODELS:
            from chgnet.model import CHGNet

            with contextlib.redirect_stdout(io.StringIO()):
                model = CHGNet.load(model_name=model_name, use_device="cpu", verbose=False)
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            target = model.readout_norm if model.readout_norm is not None else (
                model.atom_conv_layers[-1])

            def capture(_module: Any, _inputs: Any, output: Any) -> None:
                _LAST_LAYER[model_name] = output.detach()

            target.register_forward_hook(capture)
            _MODELS[model_name] = model
        return _MODELS[model_name]


class CHGNetEncoder(Encoder):
    """Frozen CHGNet per-atom embeddings, mean-pooled per neighbour zone of each site.

    Args:
        model_name: CHGNet release; ``"0.3.0"`` ships in the chgnet 0.4.2 wheel.
        layer: ``"last"``: atom features after the 4th (last) conv layer and ``readout_norm``
            (what the energy head reads); ``"conv3"``: after the 3rd conv layer (CHGNet's own
            ``return_atom_feas``).
        pool: ``"zones"`` (one mean per zone, module doc) or ``"center"`` (first zone only).
        threads: torch threads to use while encoding (process-wide); None leaves it alone.

    Output of :meth:`encode`: float32 ``[n_sites, n_kinds + Z * 64]`` (see module doc),
    rotation- and translation-invariant, independent of the vacuum thickness.
    """

    name = "chgnet"

    def __init__(self, model_name: str = "0.3.0", layer: str = "last", pool: str = "zones",
                 threads: int | None = 1) -> None:
        if layer not in ("last", "conv3"):
            raise InputError(f"CHGNet layer {layer!r} is not known; use 'last' or 'conv3'.")
        if pool not in _POOLS:
            raise InputError(f"CHGNet pool {pool!r} is not known; use one of {', '.join(_POOLS)}.")
        self.model_name = str(model_name)
        self.layer = layer
        self.pool = pool
        self.threads = threads

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"chgnet-{self.model_name}-{self.layer}-{self.pool}-1"

    def settings(self) -> dict:
        return {"model_name": self.model_name, "layer": self.layer, "pool": self.pool}

    @property
    def model(self) -> Any:
        """The frozen CHGNet, loaded on first use (per process: encoders pickle without it)."""
        return load_chgnet(self.model_name)

    def width(self) -> int:
        """Atom embedding width ``F``."""
        if self.model_name in CHGNET_FEA_DIM:
            return CHGNET_FEA_DIM[self.model_name]
        return int(self.model.atom_fea_dim)

    def dim(self, recipe: Recipe, elements: Sequence[str]) -> int:
        return zone_pooled_dim(recipe, self.width(), self.pool)

    def atom_embeddings(self, surface: Surface) -> np.ndarray:
        """CHGNet embeddings of every atom of ``surface``: float32 ``[n_atoms, F]``."""
        import torch
        from pymatgen.io.ase import AseAtomsAdaptor

        set_torch_threads(self.threads)
        model = self.model
        structure = AseAtomsAdaptor.get_structure(surface.atoms)
        with torch.inference_mode():
            graph = model.graph_converter(structure)
            _LAST_LAYER.pop(self.model_name, None)
            pred = model.forward([graph], task="e", return_atom_feas=self.layer == "conv3")
            if self.layer == "conv3":
                feas = pred["atom_fea"][0]
            else:
                feas = _LAST_LAYER.pop(self.model_name)
        out = feas.cpu().numpy().astype(np.float32)
        if out.shape != (len(surface.atoms), self.width()):
            raise RuntimeError(f"CHGNet returned atom features of shape {out.shape}")
        return out

    def encode(self, surface: Surface, elements: Sequence[str]) -> np.ndarray:
        return pool_zones(self.atom_embeddings(surface), surface, self.pool)


register_encoder("chgnet", CHGNetEncoder)
