"""Semantic question answering over policy documents, with cited passages."""

import os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting make torch 10-100x slower when the cores are shared (other
# processes, or a rebuild beside a question): a question took 1.7 s instead of 25 ms. Sleeping
# threads cost ~5% on an idle machine (scripts/benchmark.py). Read once, when torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
