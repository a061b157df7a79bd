"""MILQuantileNet: per-instance MLP -> pooling -> [bag vector, side embedding] -> 9 monotone quantiles.

All tensors here are in *standardised* units: features and side information are standardised
with buffers fitted on the training bags (:meth:`MILQuantileNet.set_normalisation`), targets are
standardised by the trainer (``(y - mean) / std``). The trainer converts back to target units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from activemil.surrogates.prediction import MEDIAN_INDEX, QUANTILE_LEVELS

POOLINGS: tuple[str, ...] = ("attention", "conjunctive", "mean", "max")
N_QUANTILES = len(QUANTILE_LEVELS)
#: smallest gap between neighbouring quantiles (standardised units) so they never cross or tie
MIN_GAP = 1e-4


@dataclass
class NetConfig:
    """Architecture of a :class:`MILQuantileNet` (JSON-serialisable).

    Attributes:
        in_dim: per-instance feature dimension ``D``.
        side_dim: side-information dimension ``S`` (0 = none).
        pooling: one of :data:`POOLINGS`.
        hidden: width of the per-instance MLP and of the instance representation ``h_k``.
        instance_layers: number of hidden layers of the per-instance MLP (>= 1).
        attention_dim: width of the gated-attention projections ``V`` and ``U``.
        side_embed: width of the side-information embedding (composition + stratum).
        n_strata: size of the stratum embedding table (strata are clipped to ``[0, n_strata-1]``).
        embed_dim: width ``d`` of the bag embedding returned by :meth:`MILQuantileNet.forward`.
        dropout: dropout on the instance representation during training.
        instance_head: add an auxiliary per-instance regression head (for per-site labels).
        site_tasks: outputs of the standalone site-energy head (one per site task, e.g. *OH
            on-top and *O fcc; 0 = no head): a linear map of the shared instance
            representation ``h_k``, trained on DFT site files (two-fidelity training).
        site_task_kinds: site-kind index of each site task (its kind one-hot column in the
            ``zones`` layout, whose first columns are the kind one-hot).
        site_energy_input: how the site head's predicted energies enter the bag path (only
            with ``site_tasks > 0``): ``none``; ``add``: ``h_k <- h_k + g([e_k * m_k, m_k])``
            with ``m_k`` the task/kind match of site k and ``g`` a small MLP (the bag path can
            learn a volcano of the predicted energy); ``replace``: ``h_k <- g([e_k m_k, m_k])``,
            an energy bottleneck: pooling sees sites only through their predicted energies.
        input_clip: standardised features and side information are clipped to
            ``[-input_clip, input_clip]`` so a feature that was (nearly) constant in training
            cannot blow up on a new bag.
    """

    in_dim: int
    side_dim: int = 0
    pooling: str = "attention"
    hidden: int = 64
    instance_layers: int = 2
    attention_dim: int = 32
    side_embed: int = 16
    n_strata: int = 16
    embed_dim: int = 32
    dropout: float = 0.0
    instance_head: bool = False
    site_tasks: int = 0
    site_task_kinds: tuple[int, ...] = ()
    site_energy_input: str = "none"
    input_clip: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


class Pooling(nn.Module):
    """Pools instance representations ``h [B,K,H]`` into a bag vector ``z [B,H]``.

    Every pooling returns ``(z [B,H], attention [B,K])`` where ``attention`` is a distribution
    over real instances (0 at padding). Instance weights ``w [B,K]`` (instance probabilities)
    enter attention as a ``log w`` offset and mean pooling as weights.
    """

    def __init__(self, kind: str, hidden: int, attention_dim: int) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"pooling {kind!r} is not one of {POOLINGS}")
        self.kind = kind
        if kind in ("attention", "conjunctive"):
            self.V = nn.Linear(hidden, attention_dim)
            self.U = nn.Linear(hidden, attention_dim)
            self.w = nn.Linear(attention_dim, 1)

    def instance_scores(self, h: Tensor) -> Tensor:
        """Gated attention score ``w^T(tanh(V h) * sigmoid(U h))`` of each instance ``h [...,H]``
        (no weight offset, no mask): ``[...]``."""
        return self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))).squeeze(-1)

    def attention_logits(
        self, h: Tensor | None, mask: Tensor, weights: Tensor, score: Tensor | None = None
    ) -> Tensor:
        """Gated attention logits ``w^T(tanh(V h) * sigmoid(U h)) + log w``, ``-inf`` at padding.
        ``score [B,K]``: precomputed :meth:`instance_scores` of ``h`` (deduplicated prediction)."""
        if score is None:
            assert h is not None
            score = self.instance_scores(h)
        score = score + torch.log(weights.clamp_min(1e-12))
        return score.masked_fill(~mask, float("-inf"))

    def forward(
        self, h: Tensor | None, mask: Tensor, weights: Tensor, score: Tensor | None = None,
        table: Tensor | None = None, index: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Pool ``h [B,K,H]``, or (deduplicated prediction) ``table[index]`` with ``table [U,H]``
        and ``index [B,K]`` without materialising the gathered ``[B,K,H]`` block."""
        if h is None:
            assert table is not None and index is not None
            if self.kind == "max":  # needs the per-feature maxima: gather the block
                h = table[index]
        if self.kind in ("attention", "conjunctive"):
            a = torch.softmax(self.attention_logits(h, mask, weights, score), dim=1)
        elif self.kind == "mean":
            a = weights * mask
            a = a / a.sum(dim=1, keepdim=True).clamp_min(1e-12)
        else:  # max over real instances; attention = share of feature maxima held by each site
            assert h is not None
            hm = h.masked_fill(~mask.unsqueeze(-1), float("-inf"))
            z, arg = hm.max(dim=1)
            a = F.one_hot(arg, num_classes=h.shape[1]).to(h.dtype).mean(dim=1)  # [B,K]
            return z, a
        if h is None:
            assert table is not None and index is not None
            z = F.embedding_bag(index, table, per_sample_weights=a, mode="sum")
        else:
            z = torch.einsum("bk,bkh->bh", a, h)
        return z, a


class MILQuantileNet(nn.Module):
    """Multiple-instance network with a monotone 9-quantile head.

    ``forward(x [B,K,D], mask [B,K] bool, weights [B,K], side [B,S], strata [B] int64)`` returns a
    dict with ``quantiles [B,9]`` (strictly increasing along the last axis), ``attention [B,K]``,
    ``embedding [B,d]``, ``contributions [B,K]`` (conjunctive pooling only: ``a_k f(h_k)``, whose
    sum over k is the instance part of the median) and ``instance_pred [B,K]`` (if the auxiliary
    per-instance head is on). Units: standardised target units.

    The head predicts the median and softplus increments: ``q_{i+1} = q_i + softplus(r_i) + eps``
    upwards from the median and ``q_{i-1} = q_i - softplus(r_i) - eps`` downwards, so quantiles
    never cross.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        layers: list[nn.Module] = []
        width = c.in_dim
        for _ in range(max(1, c.instance_layers)):
            layers += [nn.Linear(width, c.hidden), nn.SiLU()]
            width = c.hidden
        self.instance_mlp = nn.Sequential(*layers)
        self.dropout = nn.Dropout(c.dropout)
        self.pool = Pooling(c.pooling, c.hidden, c.attention_dim)
        self.stratum_embed = nn.Embedding(c.n_strata, c.side_embed)
        self.side_mlp = (
            nn.Sequential(nn.Linear(c.side_dim, c.side_embed), nn.SiLU()) if c.side_dim > 0 else None
        )
        self.head_body = nn.Sequential(
            nn.Linear(c.hidden + c.side_embed, c.embed_dim), nn.SiLU(),
            nn.Linear(c.embed_dim, c.embed_dim), nn.SiLU(),
        )
        self.head_out = nn.Linear(c.embed_dim, N_QUANTILES)
        if c.pooling == "conjunctive":
            self.instance_value = nn.Linear(c.hidden, 1)  # f(h_k)
        if c.instance_head:
            self.aux_head = nn.Linear(c.hidden, 1)
        if c.site_tasks > 0:
            self.site_head = nn.Linear(c.hidden, c.site_tasks)
            if c.site_energy_input not in ("none", "add", "replace"):
                raise ValueError(f"site_energy_input {c.site_energy_input!r}: none, add, replace")
            if c.site_energy_input != "none":
                if len(c.site_task_kinds) != c.site_tasks:
                    raise ValueError("site_task_kinds needs one kind index per site task")
                self.register_buffer(
                    "task_kind_cols", torch.as_tensor(list(c.site_task_kinds), dtype=torch.int64)
                )
                self.energy_mlp = nn.Sequential(
                    nn.Linear(2 * c.site_tasks, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(),
                    nn.Linear(32, c.hidden),
                )
        self.register_buffer("x_mean", torch.zeros(c.in_dim))
        self.register_buffer("x_std", torch.ones(c.in_dim))
        self.register_buffer("s_mean", torch.zeros(max(c.side_dim, 1)))
        self.register_buffer("s_std", torch.ones(max(c.side_dim, 1)))

    @torch.no_grad()
    def set_normalisation(
        self, x: Tensor, mask: Tensor, side: Tensor, extra: Tensor | None = None
    ) -> None:
        """Fit feature / side standardisation on training data (``x [B,K,D]``, ``side [B,S]``;
        ``extra [N,D]``: more instance rows for the feature statistics, e.g. DFT sites)."""
        xs = x[mask]
        if extra is not None and extra.shape[0] > 0:
            xs = torch.cat([xs, extra.to(xs.dtype)])
        if xs.shape[0] > 0:
            self.x_mean.copy_(xs.mean(0))
            self.x_std.copy_(_std_with_floor(xs))
        if self.config.side_dim > 0 and side.shape[0] > 0:
            self.s_mean.copy_(side.mean(0))
            self.s_std.copy_(_std_with_floor(side))

    def encode(self, x: Tensor) -> Tensor:
        """Shared encoder output ``h0 [...,H]`` of raw site features ``x [...,D]`` (standardised,
        clipped, per-instance MLP); the site head reads it."""
        clip = self.config.input_clip
        return self.instance_mlp(((x - self.x_mean) / self.x_std).clamp(-clip, clip))

    def instance(self, x: Tensor) -> Tensor:
        """Instance representations ``h [...,H]`` of raw site features ``x [...,D]``: the
        encoder output (plus the predicted-energy embedding with ``site_energy_input``), with
        dropout; everything before pooling."""
        h = self.encode(x)
        c = self.config
        if c.site_tasks > 0 and c.site_energy_input != "none":
            m = x[..., self.task_kind_cols]  # [...,T] 1 where the site is of the task's kind
            g = self.energy_mlp(torch.cat([self.site_head(h) * m, m], dim=-1))
            h = h + g if c.site_energy_input == "add" else g
        return self.dropout(h)

    def site_energies(self, x: Tensor, task: Tensor) -> Tensor:
        """Site-head predictions ``[S]`` (standardised per task) for raw site features
        ``x [S,D]`` and task indices ``task [S]`` (int64)."""
        out = self.site_head(self.dropout(self.encode(x)))  # [S, n_tasks]
        return out.gather(1, task.unsqueeze(1)).squeeze(1)

    def instance_outputs(self, h: Tensor) -> dict[str, Tensor]:
        """Per-instance quantities of ``h [...,H]`` that pooling and the heads need: ``score``
        (attention kinds), ``value`` ``f(h)`` (conjunctive), ``instance_pred`` (auxiliary head)."""
        c = self.config
        out: dict[str, Tensor] = {}
        if c.pooling in ("attention", "conjunctive"):
            out["score"] = self.pool.instance_scores(h)
        if c.pooling == "conjunctive":
            out["value"] = self.instance_value(h).squeeze(-1)
        if c.instance_head:
            out["instance_pred"] = self.aux_head(h).squeeze(-1)
        return out

    def forward(
        self, x: Tensor, mask: Tensor, weights: Tensor, side: Tensor, strata: Tensor
    ) -> dict[str, Tensor]:
        h = self.instance(x)  # [B,K,H]
        return self.bag_forward(h, self.instance_outputs(h), mask, weights, side, strata)

    def forward_indexed(
        self, table: Tensor, index: Tensor, mask: Tensor, weights: Tensor, side: Tensor,
        strata: Tensor, rows: int = 8192,
    ) -> dict[str, Tensor]:
        """Same outputs as :meth:`forward` for bags given as ``index [B,K]`` into distinct raw
        instances ``table [U,D]`` (``x = table[index]``): the instance part runs once per
        distinct instance, pooling and heads per bag.

        Work is done ``rows`` instances at a time (``rows // K`` bags in the pooling stage): at
        ~8k rows the activations stay in cache, about twice as fast as 70k-row blocks.
        """
        n_u = table.shape[0]
        h_u = table.new_empty((n_u, self.config.hidden))
        inst_u: dict[str, Tensor] = {}
        for start in range(0, n_u, rows):
            h = self.instance(table[start : start + rows])
            h_u[start : start + rows] = h
            for k, v in self.instance_outputs(h).items():
                if k not in inst_u:
                    inst_u[k] = table.new_empty((n_u,))
                inst_u[k][start : start + rows] = v
        outs: dict[str, list[Tensor]] = {}
        step = max(1, rows // max(1, index.shape[1]))
        for start in range(0, index.shape[0], step):
            sl = slice(start, start + step)
            idx = index[sl]
            o = self.bag_forward(
                None, {k: v[idx] for k, v in inst_u.items()}, mask[sl], weights[sl],
                side[sl], strata[sl], table=h_u, index=idx,
            )
            for k, v in o.items():
                outs.setdefault(k, []).append(v)
        return {k: torch.cat(v) for k, v in outs.items()}

    def bag_forward(
        self, h: Tensor | None, inst: dict[str, Tensor], mask: Tensor, weights: Tensor,
        side: Tensor, strata: Tensor, table: Tensor | None = None, index: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Pooling and heads on instance representations ``h [B,K,H]`` (or ``table[index]``, see
        :meth:`Pooling.forward`) and the :meth:`instance_outputs` ``inst`` (each ``[B,K]``)."""
        c = self.config
        clip = c.input_clip
        z, a = self.pool(h, mask, weights, inst.get("score"), table=table, index=index)
        e = self.stratum_embed(strata.clamp(0, c.n_strata - 1))
        if self.side_mlp is not None:
            s = (side - self.s_mean[: c.side_dim]) / self.s_std[: c.side_dim]
            e = e + self.side_mlp(s.clamp(-clip, clip))
        emb = self.head_body(torch.cat([z, e], dim=-1))  # [B,d]
        raw = self.head_out(emb)  # [B,9]
        out: dict[str, Tensor] = {"attention": a, "embedding": emb}
        median = raw[:, MEDIAN_INDEX]
        if c.pooling == "conjunctive":
            f = inst["value"].masked_fill(~mask, 0.0)  # [B,K]
            contrib = a * f
            out["contributions"] = contrib
            median = median + contrib.sum(dim=1)
        up = torch.cumsum(F.softplus(raw[:, MEDIAN_INDEX + 1 :]) + MIN_GAP, dim=1)
        down = torch.cumsum(F.softplus(raw[:, :MEDIAN_INDEX].flip(1)) + MIN_GAP, dim=1).flip(1)
        m = median.unsqueeze(1)
        out["quantiles"] = torch.cat([m - down, m, m + up], dim=1)
        if c.instance_head:
            out["instance_pred"] = inst["instance_pred"]
        return out


def _std_with_floor(v: Tensor) -> Tensor:
    """Per-column std of ``v [N,C]`` floored at 10% of the median non-zero column std (1 for
    all-constant inputs), so near-constant columns are not inflated."""
    std = v.std(0, unbiased=False)
    nz = std[std > 1e-8]
    floor = 0.1 * float(nz.median()) if nz.numel() else 1.0
    return torch.where(std > 1e-8, std.clamp_min(floor), torch.ones_like(std))


def pinball_loss(q: Tensor, y: Tensor, levels: Tensor) -> Tensor:
    """Mean pinball (quantile) loss of ``q [B,L]`` at ``levels [L]`` for targets ``y [B]``."""
    diff = y.unsqueeze(1) - q
    return torch.maximum(levels * diff, (levels - 1) * diff).mean()
