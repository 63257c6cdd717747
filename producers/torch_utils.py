"""What every torch producer needs: the device a config names and a reproducible seed."""

from __future__ import annotations

import numpy as np


def torch_device(name: str):
    """The torch device for a config's `device` ("auto" = CUDA when available)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_torch(seed: int) -> np.random.Generator:
    """Seed torch for a reproducible run and return a numpy generator with the same seed.

    Deterministic algorithms matter even on a CPU: the backward pass of an
    embedding lookup accumulates gradients across threads in varying order.
    """
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)
