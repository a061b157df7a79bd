"""The calibrated MIL surrogate as a BoTorch model over candidate ids."""

from __future__ import annotations

import numpy as np
import torch
from botorch.models.ensemble import EnsembleModel
from botorch.posteriors.ensemble import EnsemblePosterior
from botorch.sampling.index_sampler import IndexSampler
from torch import Tensor

from activemil.acquisition.particles import copula_basis, draw_particles
from activemil.acquisition.tables import PoolTables
from activemil.errors import InputError


class MILModel(EnsembleModel):
    """BoTorch model whose inputs are candidate ids and whose posterior is a particle ensemble.

    ``X`` is ``batch x q x 1`` double holding integer ids into the pool (row numbers of the
    tables it was built from). ``forward(X)`` returns ``batch x S x q x 1``: each of the S
    particles is one correlated whole-pool draw (see :mod:`activemil.acquisition.particles`),
    so q-batch samples are coherent. Use :class:`ParticleSampler` to take every particle once.
    """

    def __init__(self, particles: Tensor) -> None:
        """Args: particles: ``[S, N]`` float64 function draws over the pool (larger is better)."""
        super().__init__()
        if particles.ndim != 2:
            raise ValueError(f"particles must be [S, N], got {tuple(particles.shape)}")
        self.register_buffer("particles", particles.to(torch.float64))
        self._num_outputs = 1

    @classmethod
    def from_tables(
        cls,
        tables: PoolTables,
        n_particles: int = 256,
        *,
        rho: float = 0.7,
        seed: int = 0,
        rank: int | None = None,
    ) -> MILModel:
        """Draw ``n_particles`` copula particles from (oriented) tables: ``[S, N]``."""
        if not 0.0 <= rho <= 1.0:
            raise InputError(f"rho={rho} is outside [0, 1]; pass a copula correlation in [0, 1].")
        if n_particles < 1:
            raise InputError(f"n_particles={n_particles} must be at least 1; pass for example 256.")
        basis = copula_basis(tables.embedding, rank)
        return cls(draw_particles(tables.member_quantiles, basis, n_particles, rho=rho, seed=seed))

    @property
    def num_particles(self) -> int:
        return int(self.particles.shape[0])

    @property
    def num_candidates(self) -> int:
        return int(self.particles.shape[1])

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def forward(self, X: Tensor) -> Tensor:
        """``X``: ``batch x q x 1`` ids -> ``batch x S x q x 1`` particle values."""
        ids = X[..., 0].round().long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_candidates):
            raise IndexError(f"candidate ids must lie in [0, {self.num_candidates})")
        vals = self.particles[:, ids]  # S x batch x q
        return vals.movedim(0, -2).unsqueeze(-1)

    def particle_values(self, ids: Tensor | np.ndarray) -> Tensor:
        """``[S, len(ids)]`` values of every particle at the given pool rows."""
        return self.particles[:, torch.as_tensor(np.asarray(ids), dtype=torch.long)]


class ParticleSampler(IndexSampler):
    """Uses every particle exactly once, in order (common random numbers across calls).

    ``sample_shape`` is ``[S]`` where S is the model's particle count; base samples are
    ``arange(S)`` broadcast over the posterior's batch shape.
    """

    def __init__(self, num_particles: int) -> None:
        super().__init__(sample_shape=torch.Size([num_particles]), seed=0)

    def _construct_base_samples(self, posterior: EnsemblePosterior) -> None:
        s = self.sample_shape[0]
        if posterior.ensemble_size != s:
            raise ValueError(
                f"ParticleSampler expects {s} particles, the posterior has {posterior.ensemble_size}"
            )
        target = self.sample_shape + posterior.batch_shape
        if self.base_samples is None or self.base_samples.shape != target:
            idx = torch.arange(s, device=posterior.device)
            idx = idx.view(s, *([1] * len(posterior.batch_shape))).expand(target).contiguous()
            self.register_buffer("base_samples", idx)
