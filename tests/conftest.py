"""Shared test settings: one torch thread (2-core CI), fixed seeds."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch

torch.set_num_threads(1)
