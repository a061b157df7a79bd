"""Shared test settings: one torch thread (2-core CI), fixed seeds.

Property-based tests draw their examples from a fixed seed by default (hypothesis profile
``fixed``: ``derandomize=True``, no example database), so a test run, and CI, is repeatable: a
rare draw cannot turn one run red and the next green. ``HYPOTHESIS_PROFILE=explore pytest``
draws fresh random examples (and keeps failures in ``.hypothesis/``) to hunt for new bugs;
a failure found that way becomes a regression test with a fixed input."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch
from hypothesis import settings

settings.register_profile("fixed", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))

torch.set_num_threads(1)
