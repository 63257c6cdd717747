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


class RowAdam:
    """Adam on an embedding table whose cost per step follows the rows the step reads, not the table.

    Dense Adam moves every row at every step: a row without gradient still
    decays its moments and keeps moving by m̂/√v̂. Over a catalogue that costs
    O(rows) per step, and with steps per epoch growing with the catalogue,
    O(rows²) per epoch. This optimiser gives the same result without touching
    idle rows: each row remembers the step it is current at, and before a
    step reads it (`catch_up`), the zero-gradient steps it missed are applied
    at once in closed form. For a row last updated at step τ with moments
    (m, v), the k missed steps move it by

        lr · m/√v · Σ_{s=1..k} rˢ·c(τ+s),   r = β1/√β2,   c(u) = √(1-β2ᵘ)/(1-β1ᵘ)

    and the sum is H(τ) - rᵏ·H(τ+k) with H(τ) = Σ_{s≥1} rˢ·c(τ+s), tabulated
    once for all the steps. It drops only ε from the missed steps' denominators
    (√v̂ + ε), which matters only for a row whose gradients were below ~ε/√(1-β2).
    Unlike `torch.optim.SparseAdam` ("lazy Adam", rows frozen between their
    lookups), a rare row keeps the momentum dense Adam gives it: on sasrec's
    known-answer shop lazy Adam lost 0.13 of neighbour-category share.

    Use: `catch_up(rows)` with every row the step's forward pass reads, then
    backward with a sparse gradient (`nn.Embedding(sparse=True)`), then
    `step()`; `finish()` after the last step brings every row up to date.
    """

    def __init__(self, weight, *, steps: int, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        import torch

        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.weight, self.lr, self.eps, self.steps = weight, lr, eps, steps
        self.beta1, self.beta2 = betas
        self.m, self.v = torch.zeros_like(weight), torch.zeros_like(weight)
        self.current = torch.zeros(weight.shape[0], dtype=torch.long, device=weight.device)  # step each row is at
        self.t = 0
        r = self.beta1 / self.beta2**0.5
        horizon = int(np.ceil(np.log(1e-12) / np.log(r)))  # rˢ below 1e-12 beyond it
        u = np.arange(1, steps + horizon + 2, dtype=np.float64)
        c = np.sqrt(1 - self.beta2**u) / (1 - self.beta1**u)  # c[u - 1] = c(u)
        # H(τ) = Σ_{s=1..horizon} rˢ c(τ+s) for τ = 0..steps, one correlation.
        h = np.correlate(c, r ** np.arange(1, horizon + 1), mode="valid")[: steps + 1]
        self._h = torch.as_tensor(h, device=weight.device)
        self._r = r

    def catch_up(self, rows) -> None:
        """Bring `rows` (indices; repeats allowed) to the current step, as dense Adam's idle steps would."""
        import torch

        rows = torch.unique(torch.as_tensor(rows, device=self.weight.device))
        missed = self.t - self.current.index_select(0, rows)
        late = missed > 0
        if not bool(late.any()):
            return
        rows, missed = rows[late], missed[late]
        tau = self.t - missed
        factor = self._h[tau] - self._r ** missed.double() * self._h[self.t]
        # index_select / index_copy_ rather than fancy indexing: a third of the time on a CPU.
        m, v = self.m.index_select(0, rows), self.v.index_select(0, rows)
        # A row never updated has m = v = 0 and does not move.
        ratio = m / v.sqrt().clamp_min(torch.finfo(v.dtype).tiny)
        with torch.no_grad():
            moved = self.weight.index_select(0, rows).sub_((self.lr * factor.to(m.dtype))[:, None] * ratio)
            self.weight.index_copy_(0, rows, moved)
        self.m.index_copy_(0, rows, m.mul_((self.beta1 ** missed.double()).to(m.dtype)[:, None]))
        self.v.index_copy_(0, rows, v.mul_((self.beta2 ** missed.double()).to(v.dtype)[:, None]))
        self.current.index_fill_(0, rows, self.t)

    def step(self) -> None:
        """One Adam step on the rows in the weight's (sparse) gradient; the rows it read must be caught up."""
        import torch

        grad = self.weight.grad
        if grad is None:
            raise RuntimeError("no gradient: call backward before step")
        if not grad.is_sparse:
            raise ValueError("RowAdam needs a sparse gradient: build the embedding with sparse=True")
        if self.t >= self.steps:
            raise RuntimeError(f"RowAdam was set up for {self.steps} steps")
        grad = grad.coalesce()
        rows, g = grad.indices()[0], grad.values()
        if bool((self.current.index_select(0, rows) < self.t).any()):
            raise RuntimeError("a row with a gradient was not caught up before the forward pass read it")
        self.t += 1
        m = self.m.index_select(0, rows).mul_(self.beta1).add_(g, alpha=1 - self.beta1)
        v = self.v.index_select(0, rows).mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        self.m.index_copy_(0, rows, m)
        self.v.index_copy_(0, rows, v)
        correction1, correction2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        with torch.no_grad():
            step = (self.lr / correction1) * m / (v.sqrt() / correction2**0.5 + self.eps)
            self.weight.index_copy_(0, rows, self.weight.index_select(0, rows).sub_(step))
        self.current.index_fill_(0, rows, self.t)

    def zero_grad(self) -> None:
        self.weight.grad = None

    def finish(self) -> None:
        """Bring every row to the last step (once, at the end of training)."""
        import torch

        self.catch_up(torch.arange(self.weight.shape[0], device=self.weight.device))
