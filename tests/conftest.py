"""Shared test configuration: hypothesis profiles and the test-double module on the path."""

import os

import torch
from hypothesis import settings

# one intra-op thread per test process: `pytest -n 2` on two cores would otherwise run four
# threads on two cores and spend most of its time contending
torch.set_num_threads(1)

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
