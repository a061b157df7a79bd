"""MILRegressor: one trained :class:`MILQuantileNet` behind the :class:`Surrogate` interface."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Self

import numpy as np
import torch

from activemil.errors import InputError
from activemil.featurize.bags import BagSet
from activemil.featurize.sites import SiteSet, read_site_files
from activemil.surrogates.base import Surrogate, check_bags, check_training_data
from activemil.surrogates.net import POOLINGS, MILQuantileNet, NetConfig, pinball_loss
from activemil.surrogates.prediction import QUANTILE_LEVELS, Prediction


@dataclass
class TrainSettings:
    """Optimisation settings of one network.

    Attributes:
        lr: Adam learning rate. weight_decay: L2 penalty (AdamW-style decoupled).
        max_epochs: epoch cap. patience: early-stopping patience in epochs (inner split).
        min_epochs: epochs before early stopping may trigger (attention often sits on a
            plateau for a few dozen epochs before it locks onto the informative sites).
        val_fraction: share of bags held out for early stopping; no early stopping (train
            ``small_n_epochs``) when this gives fewer than ``min_val`` bags.
        batch_size: minibatch size in bags (full batch when ``B <= batch_size``).
        instance_loss_weight: weight of the auxiliary per-site regression loss, used when the
            bags carry finite ``instance_targets`` (0 disables it).
        predict_chunk: bags per forward pass at prediction time.
        site_files: DFT site files (paths, or ``OH_ontop`` / ``O_fcc`` for the bundled ones)
            read at fit time in the bags' recipe and element order when ``fit`` gets no
            ``sites`` (see :mod:`activemil.featurize.sites`); empty = bag labels only.
        site_loss_weight: weight of the site-energy loss (mean squared error in per-task
            standardised units) next to the bag pinball loss during bag training; 0 = site
            data only pretrain the encoder (site data are ignored when this and
            ``site_pretrain_steps`` are both 0).
        site_pretrain_steps: steps on the site loss alone before bag training (the encoder
            sees per-site physics before any bag label).
        site_batch_size: DFT sites per optimisation step.
    """

    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_epochs: int = 300
    patience: int = 40
    min_epochs: int = 80
    val_fraction: float = 0.2
    min_val: int = 4
    small_n_epochs: int = 150
    batch_size: int = 256
    instance_loss_weight: float = 0.5
    predict_chunk: int = 1024
    site_files: Sequence[str] = ()
    site_loss_weight: float = 1.0
    site_pretrain_steps: int = 300
    site_batch_size: int = 512


_NET_FIELDS = {f.name for f in fields(NetConfig)} - {
    "in_dim", "side_dim", "pooling", "instance_head", "site_tasks", "site_task_kinds"
}
_TRAIN_FIELDS = {f.name for f in fields(TrainSettings)}
MIL_SETTINGS: frozenset[str] = frozenset(_NET_FIELDS | _TRAIN_FIELDS)


def split_settings(settings: dict, owner: str) -> tuple[dict, dict]:
    """Split keyword settings into (NetConfig fields, TrainSettings fields)."""
    unknown = sorted(set(settings) - MIL_SETTINGS)
    if unknown:
        raise InputError(
            f"Unknown {owner} setting(s) {', '.join(unknown)}; valid ones are "
            f"{', '.join(sorted(MIL_SETTINGS))}."
        )
    return (
        {k: v for k, v in settings.items() if k in _NET_FIELDS},
        {k: v for k, v in settings.items() if k in _TRAIN_FIELDS},
    )


def bag_tensors(bags: BagSet) -> dict[str, torch.Tensor]:
    """Torch views of a BagSet: x [B,K,D] f32, mask [B,K] bool, weights [B,K], side [B,S], strata [B]."""
    return {
        "x": torch.as_tensor(np.ascontiguousarray(bags.features), dtype=torch.float32),
        "mask": torch.as_tensor(np.ascontiguousarray(bags.mask), dtype=torch.bool),
        "weights": torch.as_tensor(np.ascontiguousarray(bags.weights), dtype=torch.float32),
        "side": torch.as_tensor(np.ascontiguousarray(bags.side), dtype=torch.float32),
        "strata": torch.as_tensor(np.ascontiguousarray(bags.strata), dtype=torch.int64),
    }


#: run the instance network once per distinct site (see :meth:`MILRegressor.forward_numpy`);
#: switch off with :func:`instance_dedupe` (benchmarks compare both paths)
_DEDUPE = [True]


@contextmanager
def instance_dedupe(enabled: bool) -> Iterator[None]:
    """Context in which MIL prediction does (default) or does not deduplicate instances."""
    old = _DEDUPE[0]
    _DEDUPE[0] = bool(enabled)
    try:
        yield
    finally:
        _DEDUPE[0] = old


def _rows(t: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[idx] for k, v in t.items()}


@lru_cache(maxsize=8)
def _cached_sites(
    files: tuple[str, ...], stamps: tuple[float, ...], recipe: str, elements: tuple[str, ...]
) -> SiteSet:
    from activemil.structures import get_recipe

    return read_site_files(list(files), get_recipe(recipe), elements)


def sites_for_bags(files: Sequence[str], bags: BagSet) -> SiteSet:
    """Read ``files`` (the ``site_files`` setting) in ``bags``' recipe and element order
    (from ``bags.meta``); cached per file content stamp."""
    from activemil.featurize.sites import resolve_site_file

    meta = bags.meta if isinstance(bags.meta, dict) else {}
    recipe, elements = meta.get("recipe"), meta.get("elements")
    if not recipe or not elements:
        raise InputError(
            "The bags do not record their recipe and elements (bags.meta), so site_files cannot "
            "be matched to them; build bags with activemil.featurize.featurize_pool or pass "
            "sites= to fit."
        )
    files = tuple(str(f) for f in files)
    stamps = tuple(
        resolve_site_file(f).stat().st_mtime if resolve_site_file(f).is_file() else -1.0
        for f in files
    )
    return _cached_sites(files, stamps, str(recipe), tuple(str(e) for e in elements))


def check_sites(sites: SiteSet, bags: BagSet) -> None:
    """Site features must live in the bags' feature space (zones encoder, same recipe and
    element order)."""
    if not isinstance(sites, SiteSet):
        raise InputError(
            f"sites must be a SiteSet, got {type(sites).__name__}; read site files with "
            "activemil.featurize.sites.read_site_files."
        )
    if len(sites) == 0:
        raise InputError("The site set is empty; pass at least one DFT site or sites=None.")
    els = bags.meta.get("elements") if isinstance(bags.meta, dict) else None
    if els is not None and tuple(els) != tuple(sites.elements):
        raise InputError(
            f"Site data use the element order {','.join(sites.elements)} but the bags use "
            f"{','.join(els)}; read the site files with the bags' element order."
        )
    if sites.dim != bags.dim:
        raise InputError(
            f"Site data have {sites.dim} features per site but the bags have {bags.dim}; site "
            "supervision needs bags from the zones encoder over the same recipe and elements."
        )


class MILRegressor(Surrogate):
    """A single MIL quantile network (one ensemble member).

    Args:
        pooling: ``attention`` (gated attention, default), ``conjunctive``, ``mean`` or ``max``.
        seed: seed for initialisation, inner split and minibatch order (training is
            deterministic on CPU for a fixed seed and thread count).
        **settings: :class:`NetConfig` fields (``hidden``, ``instance_layers``,
            ``attention_dim``, ``side_embed``, ``n_strata``, ``embed_dim``, ``dropout``) and
            :class:`TrainSettings` fields.
    """

    kind = "mil"

    def __init__(self, pooling: str = "attention", seed: int = 0, **settings: object) -> None:
        if pooling not in POOLINGS:
            raise InputError(f"Unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}.")
        self.pooling = pooling
        self.seed = int(seed)
        self._settings = dict(settings)
        self._net_kw, train_kw = split_settings(self._settings, "MIL")
        files = train_kw.get("site_files", ())
        if isinstance(files, str):
            files = (files,)
        if not all(isinstance(f, str) for f in files):
            raise InputError(
                f"site_files must be a list of file paths, got {files!r}; e.g. "
                "site_files=['OH_ontop', 'my_sites.csv']."
            )
        train_kw["site_files"] = tuple(files)
        mode = self._net_kw.get("site_energy_input", "none")
        if mode not in ("none", "add", "replace"):
            raise InputError(
                f"Unknown site_energy_input {mode!r}; choose none, add or replace."
            )
        self.train_settings = TrainSettings(**train_kw)
        self.net: MILQuantileNet | None = None
        self.y_mean = 0.0
        self.y_std = 1.0
        self.it_mean = 0.0
        self.it_std = 1.0
        self.site_tasks: tuple[str, ...] = ()
        self.site_scales = np.zeros((0, 2))
        self.site_fingerprint = ""
        self.history: list[tuple[float, float]] = []
        self.best_epoch = 0
        self.n_train = 0

    def settings(self) -> dict:
        return {"pooling": self.pooling, "seed": self.seed, **self._settings}

    # ------------------------------------------------------------------ training
    def fit(self, bags: BagSet, y: np.ndarray, sites: SiteSet | None = None) -> Self:
        """Train on ``bags`` and ``y [B]`` with pinball loss (+ per-site loss if labels exist).

        ``sites``: standalone DFT sites (``SiteSet``, features ``[S, D]`` in the bags' layout,
        energies ``[S]`` eV); default: the ``site_files`` setting. With sites, the site head
        is first trained alone for ``site_pretrain_steps`` steps, then jointly with the bag
        loss (``site_loss_weight`` x MSE on per-task standardised energies).
        """
        y = check_training_data(bags, y, min_bags=2)
        ts = self.train_settings
        if sites is None and ts.site_files:
            sites = sites_for_bags(ts.site_files, bags)
        if sites is not None and ts.site_loss_weight <= 0 and ts.site_pretrain_steps <= 0:
            sites = None
        if sites is not None:
            check_sites(sites, bags)
        n = len(bags)
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) if y.std() > 1e-12 else 1.0
        t = bag_tensors(bags)
        yt = torch.as_tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
        it = None
        if bags.instance_targets is not None and ts.instance_loss_weight > 0:
            raw = np.where(bags.mask, bags.instance_targets, np.nan)
            if np.isfinite(raw).any():
                vals = raw[np.isfinite(raw)]
                self.it_mean, self.it_std = float(vals.mean()), float(max(vals.std(), 1e-6))
                it = torch.as_tensor((raw - self.it_mean) / self.it_std, dtype=torch.float32)
        sx = st = se = None
        if sites is not None:
            n_tasks = len(sites.tasks)
            scales = np.zeros((n_tasks, 2))
            se_np = np.zeros(len(sites), np.float64)
            for k in range(n_tasks):
                sel = sites.task == k
                mu = float(sites.energy[sel].mean()) if sel.any() else 0.0
                sd = float(sites.energy[sel].std()) if sel.sum() > 1 else 1.0
                scales[k] = (mu, max(sd, 1e-6))
                se_np[sel] = (sites.energy[sel] - scales[k, 0]) / scales[k, 1]
            task_kinds = []
            for k, name in enumerate(sites.tasks):
                kinds_k = np.unique(sites.kind[sites.task == k])
                if len(kinds_k) > 1:
                    raise InputError(
                        f"Site task {name!r} mixes site kinds "
                        f"{', '.join(sites.site_kinds[i] for i in kinds_k)}; give each kind its "
                        "own task (one site file per adsorbate and site kind)."
                    )
                task_kinds.append(int(kinds_k[0]) if len(kinds_k) else 0)
            self.site_tasks, self.site_scales = tuple(sites.tasks), scales
            self.site_fingerprint = sites.fingerprint()
            sx = torch.as_tensor(np.ascontiguousarray(sites.features), dtype=torch.float32)
            st = torch.as_tensor(sites.task, dtype=torch.int64)
            se = torch.as_tensor(se_np, dtype=torch.float32)
        else:
            self.site_tasks, self.site_scales, self.site_fingerprint = (), np.zeros((0, 2)), ""
        config = NetConfig(
            in_dim=bags.dim,
            side_dim=int(bags.side.shape[1]),
            pooling=self.pooling,
            instance_head=it is not None,
            site_tasks=len(self.site_tasks),
            site_task_kinds=tuple(task_kinds) if sites is not None else (),
            **self._net_kw,
        )
        levels = torch.tensor(QUANTILE_LEVELS, dtype=torch.float32)
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(n)
        n_val = round(ts.val_fraction * n)
        early = n_val >= ts.min_val and n - n_val >= 2
        val_idx = torch.as_tensor(np.sort(perm[:n_val]) if early else np.array([], np.int64))
        tr_idx = torch.as_tensor(np.sort(perm[n_val:]) if early else np.arange(n))
        epochs = ts.max_epochs if early else min(ts.small_n_epochs, ts.max_epochs)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = MILQuantileNet(config)
            # standardisation from the bags only, as without sites, so the bag path sees the same
            # inputs (including the DFT sites made no clear difference; docs/design-decisions.md)
            net.set_normalisation(t["x"][tr_idx], t["mask"][tr_idx], t["side"][tr_idx])
            gen = torch.Generator().manual_seed(self.seed)

            def site_loss() -> torch.Tensor:
                assert sx is not None and st is not None and se is not None
                if len(sx) > ts.site_batch_size:
                    pick = torch.randint(len(sx), (ts.site_batch_size,), generator=gen)
                    return ((net.site_energies(sx[pick], st[pick]) - se[pick]) ** 2).mean()
                return ((net.site_energies(sx, st) - se) ** 2).mean()

            if sx is not None and ts.site_pretrain_steps > 0:
                net.train()
                pre = torch.optim.AdamW(net.parameters(), lr=ts.lr, weight_decay=ts.weight_decay)
                for _ in range(ts.site_pretrain_steps):
                    loss = site_loss()
                    pre.zero_grad(set_to_none=True)
                    loss.backward()
                    pre.step()
            opt = torch.optim.AdamW(net.parameters(), lr=ts.lr, weight_decay=ts.weight_decay)
            best = float("inf")
            best_state = copy.deepcopy(net.state_dict())
            since = 0
            self.history = []
            for epoch in range(epochs):
                net.train()
                order = tr_idx[torch.randperm(len(tr_idx), generator=gen)]
                total = 0.0
                for start in range(0, len(order), ts.batch_size):
                    b = order[start : start + ts.batch_size]
                    out = net(**_rows(t, b))
                    loss = pinball_loss(out["quantiles"], yt[b], levels)
                    if it is not None:
                        target = it[b]
                        ok = torch.isfinite(target)
                        if ok.any():
                            err = out["instance_pred"][ok] - target[ok]
                            loss = loss + ts.instance_loss_weight * (err**2).mean()
                    if sx is not None and ts.site_loss_weight > 0:
                        loss = loss + ts.site_loss_weight * site_loss()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(b)
                train_loss = total / len(order)
                if early:
                    net.eval()
                    with torch.no_grad():
                        vq = net(**_rows(t, val_idx))["quantiles"]
                        val = float(pinball_loss(vq, yt[val_idx], levels))
                    self.history.append((train_loss, val))
                    if val < best - 1e-6:
                        best, since, self.best_epoch = val, 0, epoch
                        best_state = copy.deepcopy(net.state_dict())
                    else:
                        since += 1
                        if since >= ts.patience and epoch + 1 >= ts.min_epochs:
                            break
                else:
                    self.history.append((train_loss, float("nan")))
            if early:
                net.load_state_dict(best_state)
            else:
                self.best_epoch = epochs - 1
        net.eval()
        self.net = net
        self.n_train = n
        return self

    # ---------------------------------------------------------------- prediction
    def forward_numpy(self, bags: BagSet) -> dict[str, np.ndarray]:
        """Raw outputs in target units: ``quantiles [B,9]``, ``attention [B,K]``,
        ``embedding [B,d]``, ``contributions [B,K]`` (conjunctive only).

        The instance network runs once per distinct site of the whole BagSet
        (:meth:`BagSet.unique_instances`, cached on the BagSet, so ensemble members share it),
        then pooling runs per bag with the bag's weights and mask; outputs equal the per-bag
        path (``with instance_dedupe(False)``) to float32 rounding."""
        self._check_fitted()
        assert self.net is not None
        c = self.net.config
        check_bags(bags, dim=c.in_dim, side_dim=c.side_dim)
        chunk = self.train_settings.predict_chunk
        outs: dict[str, list[np.ndarray]] = {}
        keys = ("quantiles", "attention", "embedding", "contributions")
        with torch.no_grad():
            if _DEDUPE[0]:
                table, index = bags.unique_instances()
                t = bag_tensors(bags)
                o = self.net.forward_indexed(
                    torch.as_tensor(table), torch.as_tensor(index), t["mask"], t["weights"],
                    t["side"], t["strata"],
                )
                outs = {k: [o[k].double().numpy()] for k in keys if k in o}
            else:
                t = bag_tensors(bags)
                for start in range(0, len(bags), chunk):
                    sl = slice(start, start + chunk)
                    o = self.net(**{k: v[sl] for k, v in t.items()})
                    for k in keys:
                        if k in o:
                            outs.setdefault(k, []).append(o[k].double().numpy())
        res = {k: np.concatenate(v) for k, v in outs.items()}
        res["quantiles"] = res["quantiles"] * self.y_std + self.y_mean
        if "contributions" in res:
            res["contributions"] = res["contributions"] * self.y_std
        res["attention"] = np.where(bags.mask, res["attention"], 0.0)
        return res

    def predict(self, bags: BagSet) -> Prediction:
        r = self.forward_numpy(bags)
        return Prediction(
            ids=tuple(bags.ids),
            quantiles=r["quantiles"],
            member_quantiles=r["quantiles"][None],
            attention=r["attention"],
            embedding=r["embedding"],
            strata=np.asarray(bags.strata, np.int64),
            contributions=r.get("contributions"),
        )

    def predict_instances(self, bags: BagSet) -> np.ndarray:
        """Per-site predictions of the auxiliary head ``[B,K]`` in per-site label units (NaN at
        padding); requires training with per-site labels."""
        self._check_fitted()
        assert self.net is not None
        if not self.net.config.instance_head:
            raise InputError(
                "This surrogate was trained without per-site labels; fit it on bags with "
                "instance_targets to get per-site predictions."
            )
        t = bag_tensors(bags)
        with torch.no_grad():
            p = self.net(**t)["instance_pred"].double().numpy()
        return np.where(bags.mask, p * self.it_std + self.it_mean, np.nan)

    def predict_sites(self, sites: SiteSet) -> np.ndarray:
        """Site-head energies ``[S]`` (eV, the site files' reference) for ``sites``; requires
        training with site data covering the sites' tasks."""
        self._check_fitted()
        assert self.net is not None
        if not self.site_tasks:
            raise InputError(
                "This surrogate was trained without site data; fit it with sites= or the "
                "site_files setting to get site-energy predictions."
            )
        unknown = sorted(set(sites.tasks) - set(self.site_tasks))
        used = set(np.unique(sites.task).tolist())
        unknown = [t for t in unknown if sites.tasks.index(t) in used]
        if unknown:
            raise InputError(
                f"Site task {unknown[0]!r} was not in training (tasks {', '.join(self.site_tasks)}); "
                "predict only sites of trained tasks."
            )
        if sites.dim != self.net.config.in_dim:
            raise InputError(
                f"Sites have {sites.dim} features but the surrogate was trained on "
                f"{self.net.config.in_dim}; read them with the training recipe and elements."
            )
        remap = np.array([self.site_tasks.index(t) if t in self.site_tasks else 0
                          for t in sites.tasks], np.int64)
        task = remap[sites.task]
        with torch.no_grad():
            z = self.net.site_energies(
                torch.as_tensor(np.ascontiguousarray(sites.features), dtype=torch.float32),
                torch.as_tensor(task),
            ).double().numpy()
        return z * self.site_scales[task, 1] + self.site_scales[task, 0]

    # ---------------------------------------------------------------- save/load
    def _save(self, path: Path) -> dict:
        assert self.net is not None
        torch.save(self.net.state_dict(), path / "net.pt")
        return {
            "net_config": self.net.config.to_dict(),
            "scales": [self.y_mean, self.y_std, self.it_mean, self.it_std],
            "best_epoch": self.best_epoch,
            "site_tasks": list(self.site_tasks),
            "site_scales": self.site_scales.tolist(),
            "site_fingerprint": self.site_fingerprint,
        }

    @classmethod
    def _load(cls, path: Path, meta: dict) -> Self:
        obj = cls(**meta["settings"])
        net = MILQuantileNet(NetConfig(**meta["net_config"]))
        net.load_state_dict(torch.load(path / "net.pt", weights_only=True))
        net.eval()
        obj.net = net
        obj.y_mean, obj.y_std, obj.it_mean, obj.it_std = (float(v) for v in meta["scales"])
        obj.best_epoch = int(meta["best_epoch"])
        obj.site_tasks = tuple(meta.get("site_tasks", ()))
        obj.site_scales = np.asarray(meta.get("site_scales", []), np.float64).reshape(-1, 2)
        obj.site_fingerprint = str(meta.get("site_fingerprint", ""))
        return obj
