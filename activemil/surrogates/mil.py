"""MILRegressor: one trained :class:`MILQuantileNet` behind the :class:`Surrogate` interface."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Self

import numpy as np
import torch

from activemil.errors import InputError
from activemil.featurize.bags import BagSet
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


_NET_FIELDS = {f.name for f in fields(NetConfig)} - {"in_dim", "side_dim", "pooling", "instance_head"}
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
        self.train_settings = TrainSettings(**train_kw)
        self.net: MILQuantileNet | None = None
        self.y_mean = 0.0
        self.y_std = 1.0
        self.it_mean = 0.0
        self.it_std = 1.0
        self.history: list[tuple[float, float]] = []
        self.best_epoch = 0
        self.n_train = 0

    def settings(self) -> dict:
        return {"pooling": self.pooling, "seed": self.seed, **self._settings}

    # ------------------------------------------------------------------ training
    def fit(self, bags: BagSet, y: np.ndarray) -> Self:
        """Train on ``bags`` and ``y [B]`` with pinball loss (+ per-site loss if labels exist)."""
        y = check_training_data(bags, y, min_bags=2)
        ts = self.train_settings
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
        config = NetConfig(
            in_dim=bags.dim,
            side_dim=int(bags.side.shape[1]),
            pooling=self.pooling,
            instance_head=it is not None,
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
            net.set_normalisation(t["x"][tr_idx], t["mask"][tr_idx], t["side"][tr_idx])
            opt = torch.optim.AdamW(net.parameters(), lr=ts.lr, weight_decay=ts.weight_decay)
            best = float("inf")
            best_state = copy.deepcopy(net.state_dict())
            since = 0
            self.history = []
            gen = torch.Generator().manual_seed(self.seed)
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

    # ---------------------------------------------------------------- save/load
    def _save(self, path: Path) -> dict:
        assert self.net is not None
        torch.save(self.net.state_dict(), path / "net.pt")
        return {
            "net_config": self.net.config.to_dict(),
            "scales": [self.y_mean, self.y_std, self.it_mean, self.it_std],
            "best_epoch": self.best_epoch,
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
        return obj
