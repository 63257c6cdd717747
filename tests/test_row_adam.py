"""RowAdam: dense Adam's updates on an embedding table, at a cost that follows the rows each step reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prodvec.producers.torch_utils import RowAdam


def train(n: int = 200, dim: int = 8, steps: int = 400, lookups: int = 12, lr: float = 1e-2):
    """The same lookups trained by torch's dense Adam, RowAdam and SparseAdam from one start."""
    torch.manual_seed(0)
    start, target = torch.randn(n, dim), torch.randn(n, dim)
    rng = np.random.default_rng(0)
    batches = [torch.as_tensor(rng.choice(n, lookups)) for _ in range(steps)]
    tables = {name: torch.nn.Embedding(n, dim, sparse=name != "dense") for name in ("dense", "row", "lazy")}
    for table in tables.values():
        table.weight.data.copy_(start)
    dense = torch.optim.Adam(tables["dense"].parameters(), lr=lr)
    row = RowAdam(tables["row"].weight, steps=steps, lr=lr)
    lazy = torch.optim.SparseAdam(tables["lazy"].parameters(), lr=lr)
    for rows in batches:
        row.catch_up(rows)  # before the forward pass reads them
        for name, table in tables.items():
            looked_up = table(rows)
            # Repeated rows and a term linear in the row: gradients of varying sign and size.
            loss = ((looked_up - target[rows]) ** 2).sum() + 0.1 * looked_up.sum()
            optimiser = {"dense": dense, "row": row, "lazy": lazy}[name]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    row.finish()
    return start, {name: table.weight.detach() for name, table in tables.items()}


def test_row_adam_follows_dense_adam_where_lazy_adam_does_not():
    start, weights = train()
    moved = (weights["dense"] - start).abs().max()
    assert moved > 0.5  # the test trains far enough to tell the optimisers apart
    np.testing.assert_allclose(weights["row"], weights["dense"], atol=1e-4)
    # SparseAdam freezes a row between its lookups; dense Adam keeps moving it on its momentum.
    assert (weights["lazy"] - weights["dense"]).abs().max() > 0.1


def test_row_adam_leaves_rows_it_was_not_asked_about_until_they_are_read():
    table = torch.nn.Embedding(10, 4, sparse=True)
    start = table.weight.detach().clone()
    row = RowAdam(table.weight, steps=5, lr=0.1)
    for _ in range(3):
        row.catch_up(torch.tensor([0, 1]))
        row.zero_grad()
        table(torch.tensor([0, 1])).sum().backward()
        row.step()
    before = table.weight.detach().clone()
    torch.testing.assert_close(before[2:], start[2:])  # never updated: m = v = 0, nothing to catch up
    row.catch_up(torch.tensor([0]))  # current already: a no-op
    torch.testing.assert_close(table.weight.detach(), before)


def test_row_adam_refuses_a_dense_gradient_and_steps_past_its_plan():
    table = torch.nn.Embedding(4, 2)
    table(torch.tensor([0])).sum().backward()
    with pytest.raises(ValueError, match="sparse=True"):
        RowAdam(table.weight, steps=1).step()
    sparse = torch.nn.Embedding(4, 2, sparse=True)
    row = RowAdam(sparse.weight, steps=1)
    for _ in range(2):
        row.zero_grad()
        sparse(torch.tensor([0])).sum().backward()
        if row.t == 1:
            with pytest.raises(RuntimeError, match="set up for 1 steps"):
                row.step()
        else:
            row.step()
