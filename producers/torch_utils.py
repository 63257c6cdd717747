"""What every torch producer needs: the device a config names, a reproducible seed, the warm-start pull."""

from __future__ import annotations

from contextlib import contextmanager

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


def with_anchor_pull(loss, weight: float, codes, previous, pulled, offset):
    """`loss` plus the warm-start pull: `weight` x the mean squared distance of the batch rows that had a vector
    in the previous snapshot (`pulled`) to it, after removing the shift `offset` shared by all products.

    `previous` and `pulled` are aligned with `codes`; `loss` is returned as is when no row is pulled.
    """
    if not pulled.any():
        return loss
    return loss + weight * (codes[pulled] - offset - previous[pulled]).pow(2).sum(1).mean()


@contextmanager
def one_thread():
    """Run torch on one intra-op thread for a training loop of small steps, then restore the count
    (a context manager, or `@one_thread()` on a producer's `train`).

    A step over a few thousand rows is too small to split: a second thread only
    adds synchronisation, which on the shared 2-core machine cost 10x the CPU
    (text_dae, Myntra 41k, one epoch: 58 s CPU on two threads, 4.5 s on one).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
