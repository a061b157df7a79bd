"""Frozen UMA (fairchem-core) invariant node embeddings pooled per neighbour zone of each site.

Optional: needs the ``uma`` extra (``pip install "activemil[uma]"``, fairchem-core 2.24) and a
UMA inference checkpoint file the user supplies (the Hugging Face weights are licence-gated, so
activemil never downloads them). The checkpoint is loaded once per process with
``fairchem.core.units.mlip_unit.load_predict_unit(path, inference_settings="batch",
device="cpu")`` ("batch" keeps the mixture of linear experts unmerged and avoids
torch.compile, the right choice on CPU).

Embedding: the backbone returns ``node_embedding`` ``[n_atoms, (lmax+1)^2, C]``; we keep the
rotation-invariant L=0 channel ``[:, 0, :]`` (``C`` = ``sphere_channels``, 128 for UMA-S). The
first call for a predict unit goes through ``predict_unit.predict`` (its lazy initialisation);
after that the backbone is called directly, with gradient-based force/stress regression
switched off for the call, under ``torch.inference_mode()`` - the same numbers as a forward
hook on the backbone during ``predict`` (tested), without the force/stress backward pass.

UMA embeddings depend on the task (``oc20``, ``omat``, ``omol``, ...): by default the task is
fixed per recipe (``Recipe.uma_task``: ``oc20`` for fcc111, ``omat`` for the oxides).

Per-site layout: identical to the CHGNet encoder (:mod:`activemil.featurize.chgnet`) with
``F = C``: ``[one_hot(kind) | mean_emb(zone 0) | ... | mean_emb(zone Z-1)]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import random
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from activemil.errors import InputError, MissingDependencyError
from activemil.featurize.base import Encoder, register_encoder
from activemil.featurize.chgnet import pool_zones, set_torch_threads, zone_pooled_dim
from activemil.structures.base import Recipe, Surface, get_recipe

UMA_EXTRA_HINT = 'pip install "activemil[uma]"'
INFERENCE_SETTINGS = "batch"
GRAPH_RADIUS = 6.0  # Å, what fairchem's ASE calculator passes to AtomicData.from_ase


def fairchem_available() -> bool:
    """True if ``fairchem.core`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("fairchem.core") is not None
    except (ImportError, ValueError):
        return False


def require_fairchem() -> None:
    """Raise :class:`MissingDependencyError` if the ``uma`` extra is not installed."""
    if not fairchem_available():
        raise MissingDependencyError(
            "The uma encoder needs fairchem-core, which is not installed; install the extra "
            f"with {UMA_EXTRA_HINT} or choose another encoder (chgnet, zones)."
        )


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """The checkpoint path, or :class:`MissingDependencyError` if it is missing."""
    if checkpoint is None or str(checkpoint).strip() == "":
        raise MissingDependencyError(
            "The uma encoder needs a UMA checkpoint file; pass --uma-checkpoint PATH to a "
            "licensed UMA checkpoint (for example uma-s-1p2.pt from Hugging Face facebook/UMA)."
        )
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise MissingDependencyError(
            f"UMA checkpoint {str(path)!r} does not exist; pass --uma-checkpoint PATH to a "
            "licensed UMA checkpoint (for example uma-s-1p2.pt from Hugging Face facebook/UMA)."
        )
    return path.resolve()


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _preserve_rng() -> Iterator[None]:
    """Restore Python, NumPy and torch global RNG states (fairchem reseeds them on load)."""
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


_UNITS: dict[str, Any] = {}
_LOCK = threading.Lock()


def load_uma(path: Path) -> Any:
    """The fairchem ``MLIPPredictUnit`` for checkpoint ``path`` on CPU, loaded once per process."""
    key = str(path)
    with _LOCK:
        if key not in _UNITS:
            require_fairchem()
            import torch
            from fairchem.core.units.mlip_unit import load_predict_unit

            threads = torch.get_num_threads()
            try:
                with _preserve_rng():
                    unit = load_predict_unit(
                        key, inference_settings=INFERENCE_SETTINGS, device="cpu"
                    )
            except (MissingDependencyError, InputError):
                raise
            except Exception as err:  # corrupt / foreign file: one clear sentence
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise InputError(
                    f"UMA checkpoint {key!r} could not be loaded ({type(err).__name__}: "
                    f"{first[:160]}); pass a fairchem UMA inference checkpoint (.pt)."
                ) from err
            finally:
                torch.set_num_threads(threads)  # fairchem may change the thread count
            _UNITS[key] = unit
        return _UNITS[key]


def _read_sphere_channels(path: Path) -> int:
    """Backbone ``sphere_channels`` from the checkpoint config (memory-mapped, no weights read)."""
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False, mmap=True)
        cfg = ckpt.model_config if hasattr(ckpt, "model_config") else ckpt["model_config"]
        return int(cfg["backbone"].get("sphere_channels", 128))
    except Exception as err:
        raise InputError(
            f"UMA checkpoint {str(path)!r} has no readable model config ({type(err).__name__}); "
            "pass a fairchem UMA inference checkpoint (.pt)."
        ) from err


class UMAEncoder(Encoder):
    """Frozen UMA invariant (L=0) node embeddings, mean-pooled per neighbour zone of each site.

    Args:
        checkpoint: path to a UMA inference checkpoint (``.pt``) the user supplies.
        task: UMA task/dataset name (``oc20``, ``omat``, ``omol``, ...); None = the recipe's
            ``uma_task``.
        threads: torch threads to use while encoding (process-wide); None leaves it alone.

    Raises :class:`MissingDependencyError` at construction if fairchem-core is not installed
    or the checkpoint file does not exist. Output of :meth:`encode`: float32
    ``[n_sites, n_kinds + Z * C]`` (layout in :mod:`activemil.featurize.chgnet`).
    """

    name = "uma"

    def __init__(self, checkpoint: str | Path | None = None, task: str | None = None,
                 threads: int | None = 1) -> None:
        require_fairchem()
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.task = task
        self.threads = threads
        self._sha256: str | None = None
        self._width: int | None = None
        self._recipe_tasks: dict[str, str] = {}

    @property
    def sha256(self) -> str:
        """Content hash of the checkpoint (memoised; part of the cache key)."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.checkpoint)
        return self._sha256

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"uma-{self.checkpoint.stem}-{self.sha256[:12]}-{self.task or 'recipe'}-1"

    def settings(self) -> dict:
        return {"checkpoint": self.checkpoint.name, "sha256": self.sha256, "task": self.task}

    @property
    def predict_unit(self) -> Any:
        """The fairchem predict unit (loaded on first use)."""
        return load_uma(self.checkpoint)

    def width(self) -> int:
        """Node embedding width ``C`` (``sphere_channels``), read from the checkpoint config."""
        if self._width is None:
            require_fairchem()  # the checkpoint unpickles fairchem classes
            self._width = _read_sphere_channels(self.checkpoint)
        return self._width

    def dim(self, recipe: Recipe, elements: Sequence[str]) -> int:
        return zone_pooled_dim(recipe, self.width(), "zones")

    def task_for(self, surface: Surface) -> str:
        """The UMA task used for ``surface``: ``task`` if given, else its recipe's ``uma_task``."""
        if self.task is not None:
            return self.task
        if surface.recipe not in self._recipe_tasks:
            try:
                self._recipe_tasks[surface.recipe] = str(get_recipe(surface.recipe).uma_task)
            except InputError:
                raise InputError(
                    f"Recipe {surface.recipe!r} is not registered, so its UMA task is unknown; "
                    "pass task=... (for example oc20 or omat) to the uma encoder."
                ) from None
        return self._recipe_tasks[surface.recipe]

    def atom_embeddings(self, surface: Surface) -> np.ndarray:
        """Invariant UMA embeddings of every atom: float32 ``[n_atoms, C]``."""
        import torch
        from fairchem.core.datasets.atomic_data import AtomicData

        set_torch_threads(self.threads)
        unit = self.predict_unit
        task = self.task_for(surface)
        valid = list(unit.dataset_to_tasks)
        if task not in valid:
            raise InputError(
                f"UMA task {task!r} is not in checkpoint {self.checkpoint.name}; use one of "
                f"{', '.join(valid)}."
            )
        settings = unit.inference_settings
        external = bool(settings.external_graph_gen)
        data = AtomicData.from_ase(
            surface.atoms, task_name=task, r_edges=external, radius=GRAPH_RADIUS,
            max_neigh=300 if external else None, r_data_keys=["spin", "charge"],
            target_dtype=settings.base_precision_dtype,
        )
        if not unit.lazy_model_intialized:
            with _preserve_rng():
                unit.predict(data.clone())  # fairchem's lazy initialisation (may swap backbone)
        backbone = unit.model.module.backbone
        batch = data.clone()
        for key, val in batch:
            if torch.is_tensor(val) and val.is_floating_point():
                batch[key] = val.to(settings.base_precision_dtype)
        regress = backbone.regress_config
        backbone.regress_config = dataclasses.replace(
            regress, forces=False, stress=False, hessian=False
        )
        try:
            with torch.inference_mode():
                emb = backbone(batch)["node_embedding"][:, 0, :]
        finally:
            backbone.regress_config = regress
        out = emb.float().cpu().numpy()
        if out.shape != (len(surface.atoms), self.width()):
            raise RuntimeError(f"UMA returned node embeddings of shape {out.shape}")
        return out

    def encode(self, surface: Surface, elements: Sequence[str]) -> np.ndarray:
        return pool_zones(self.atom_embeddings(surface), surface, "zones")


def write_random_uma_checkpoint(
    path: str | Path,
    *,
    sphere_channels: int = 16,
    hidden_channels: int = 16,
    num_layers: int = 2,
    num_experts: int = 2,
    lmax: int = 2,
    cutoff: float = 6.0,
    tasks: Sequence[str] = ("oc20", "omat", "omol"),
    seed: int = 0,
) -> Path:
    """Save a randomly initialised UMA-architecture model as a fairchem inference checkpoint.

    Same layout as the released UMA checkpoints (``eSCNMDMoeBackbone`` with a mixture of
    linear experts, dataset embeddings, one ``MLP_EFS_Head`` per task via
    ``DatasetSpecificSingleHeadWrapper``, energy/forces/stress tasks, EMA weights,
    ``regress_stress=True`` so every inference mode works), loadable by ``load_predict_unit``.
    For tests and benchmarks without the licensed weights: its features are meaningless.
    Defaults give a tiny model; ``sphere_channels=hidden_channels=128, num_layers=4,
    num_experts=32`` is UMA-S sized. Returns the path.
    """
    require_fairchem()
    import torch
    from fairchem.core.models.base import HydraModel
    from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint

    datasets = list(tasks)
    backbone = {
        "model": "fairchem.core.models.uma.escn_moe.eSCNMDMoeBackbone",
        "max_num_elements": 100, "sphere_channels": sphere_channels, "lmax": lmax,
        "mmax": min(lmax, 2), "otf_graph": True, "max_neighbors": 300, "cutoff": cutoff,
        "edge_channels": sphere_channels, "num_distance_basis": sphere_channels,
        "direct_forces": False, "regress_forces": True, "regress_stress": True,
        "num_layers": num_layers, "hidden_channels": hidden_channels,
        "norm_type": "rms_norm_sh", "act_type": "gate", "ff_type": "spectral",
        "chg_spin_emb_type": "rand_emb", "dataset_mapping": {d: d for d in datasets},
        "use_dataset_embedding": True, "num_experts": num_experts,
        "use_composition_embedding": True,
    }
    model_config = {
        "_target_": "fairchem.core.models.base.HydraModel",
        "backbone": backbone,
        "heads": {"efs": {
            "module": "fairchem.core.models.uma.escn_moe.DatasetSpecificSingleHeadWrapper",
            "dataset_names": datasets,
            "head_cls": "fairchem.core.models.uma.escn_md.MLP_EFS_Head",
            "head_kwargs": {"wrap_property": False},
        }},
        "pass_through_head_outputs": True,
        "otf_graph": True,
        "model_id": "activemil-random-uma",
    }
    spec = "fairchem.core.units.mlip_unit.mlip_unit"
    tasks_config = [
        {"_target_": f"{spec}.Task", "name": f"{d}_{prop}", "level": level, "property": prop,
         "datasets": [d],
         "out_spec": {"_target_": f"{spec}.OutputSpec", "dim": dim, "dtype": "float32"},
         "normalizer": {"_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
                        "mean": 0.0, "rmsd": 1.0}}
        for d in datasets
        for prop, level, dim in (("energy", "system", [1]), ("forces", "atom", [3]),
                                 ("stress", "system", [1, 9]))
    ]
    with _preserve_rng():
        torch.manual_seed(seed)
        model = HydraModel(**{k: v for k, v in model_config.items() if k != "_target_"})
    ckpt = MLIPInferenceCheckpoint(
        model_config=model_config,
        model_state_dict=model.state_dict(),
        ema_state_dict=torch.optim.swa_utils.AveragedModel(model).state_dict(),
        tasks_config=tasks_config,
    )
    path = Path(path)
    torch.save(ckpt, path)
    return path


register_encoder("uma", UMAEncoder)
