"""clicks_bpr trains in a compiled loop (producers/bpr_kernel.py): it must be the weighted BPR loss's
gradient under torch's SparseAdam rule, step for step, with rows repeated inside a batch, and give the same
result bit for bit however many threads share the rows out."""

import numpy as np
import pytest
import torch

from prodvec.producers import bpr_kernel
from prodvec.producers.bpr import Trainer
from prodvec.producers.bpr_kernel import shuffle_epoch


def torch_reference(gamma_u, gamma_p, batches, lr, l2):
    """The same training with autograd and torch.optim.SparseAdam (only rows with a gradient move)."""
    users = torch.nn.Embedding.from_pretrained(torch.tensor(gamma_u), freeze=False, sparse=True)
    products = torch.nn.Embedding.from_pretrained(torch.tensor(gamma_p), freeze=False, sparse=True)
    bias = torch.nn.Embedding.from_pretrained(torch.zeros(len(gamma_p), 1), freeze=False, sparse=True)
    optimiser = torch.optim.SparseAdam([users.weight, products.weight, bias.weight], lr=lr)
    for u, p, q, w in batches:
        u, p, q, w = (torch.as_tensor(a) for a in (u, p, q, w))
        gu, gp, gq = users(u), products(p), products(q)
        diff = (bias(p) - bias(q)).squeeze(1) + (gu * (gp - gq)).sum(1)
        loss = -(w * torch.nn.functional.logsigmoid(diff)).mean()
        loss = loss + l2 * (gu.pow(2).sum() + gp.pow(2).sum() + gq.pow(2).sum()) / len(u)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return users.weight.detach().numpy(), products.weight.detach().numpy(), bias.weight.detach().numpy()


@pytest.mark.parametrize("parts", [1, 2])  # the one-thread loop, and the threaded one
def test_compiled_epochs_equal_autograd_with_sparse_adam(parts):
    rng = np.random.default_rng(0)
    n_users, n_products, dim, batch, lr, l2 = 9, 13, 6, 40, 0.05, 0.3  # few rows: repeats in every batch
    gamma_u = rng.normal(0, 0.5, (n_users, dim)).astype(np.float32)
    gamma_p = rng.normal(0, 0.5, (n_products, dim)).astype(np.float32)
    trainer = Trainer(gamma_u.copy(), gamma_p.copy(), batch_size=batch, lr=lr, l2=l2, parts=parts)
    batches = []
    for _ in range(3):  # three epochs of 100 triples: batches of 40, 40 and a short one of 20
        u, p, q = (rng.integers(0, n, 100) for n in (n_users, n_products, n_products))
        p[:5] = q[:5]  # a triple whose positive and negative are one row: its product gradient cancels
        w = rng.uniform(0.5, 2, 100).astype(np.float32)
        trainer.epoch(u, p, q, w)
        batches += [(u[s:s + batch], p[s:s + batch], q[s:s + batch], w[s:s + batch]) for s in range(0, 100, batch)]
    want_u, want_p, want_b = torch_reference(gamma_u, gamma_p, batches, lr, l2)
    assert trainer.step == 9
    # Adam divides by the gradient's running size, so float32 rounding in sums that nearly cancel (a bias
    # row's ±terms) shows at ~1e-4 of one step (lr = 0.05); a wrong formula would be off by a step.
    for table, want in zip(("users", "products", "bias"), (want_u, want_p, want_b)):
        np.testing.assert_allclose(trainer.part(table, "param"), want, rtol=0, atol=2e-4)
    assert np.abs(trainer.gamma_p - gamma_p).max() > 0.1  # it trained: the comparison is not of two copies


def test_a_row_no_batch_touches_does_not_move():
    rng = np.random.default_rng(1)
    gamma_u = rng.normal(0, 0.5, (4, 3)).astype(np.float32)
    gamma_p = rng.normal(0, 0.5, (6, 3)).astype(np.float32)
    trainer = Trainer(gamma_u.copy(), gamma_p.copy(), batch_size=8, lr=0.1, l2=0.01)
    u, p, q = rng.integers(0, 3, 16), rng.integers(0, 5, 16), rng.integers(0, 5, 16)  # user 3, product 5 unused
    for _ in range(5):
        trainer.epoch(u, p, q, np.ones(16, np.float32))
    np.testing.assert_array_equal(trainer.part("users", "param")[3], gamma_u[3])
    np.testing.assert_array_equal(trainer.gamma_p[5], gamma_p[5])
    assert not np.allclose(trainer.gamma_p[:5], gamma_p[:5])
    assert all(not trainer.part(t, "grad").any() for t in ("users", "products", "bias"))  # zero for the next batch


def test_any_number_of_threads_gives_the_one_thread_result_bit_for_bit(monkeypatch):
    # Enough rows for every part to own several 16-row blocks, and a skewed choice of products so that the
    # parts' shares of a batch differ; parts above the thread count run one after another, same result.
    rng = np.random.default_rng(2)
    n_users, n_products, dim = 300, 500, 32
    gamma_u = rng.normal(0, 0.1, (n_users, dim)).astype(np.float32)
    gamma_p = rng.normal(0, 0.1, (n_products, dim)).astype(np.float32)
    epochs = []
    for _ in range(3):
        u = rng.integers(0, n_users, 5000)
        p = np.minimum(rng.zipf(1.3, 5000) - 1, n_products - 1)
        epochs.append((u, p, rng.integers(0, n_products, 5000), rng.uniform(0.5, 3, 5000).astype(np.float32)))
    trained = {}
    for parts in (1, 2, 3, 5, "3 on one worker"):
        with monkeypatch.context() as patch:
            if isinstance(parts, str):  # the parts in turn on one thread: numba's TBB layer (bpr_kernel.workers)
                patch.setattr(bpr_kernel, "workers", lambda parts: 1)
            trainer = Trainer(gamma_u.copy(), gamma_p.copy(), batch_size=1024, lr=0.02, l2=1e-4,
                              parts=int(str(parts)[0]))
            for epoch in epochs:
                trainer.epoch(*epoch)
        trained[parts] = trainer
    # The one-thread entry is another compiled function making the same sums in the same order: bit for bit too
    # (which holds across a fresh compile and numba's cache only without fastmath's "nsz", see bpr_kernel.FAST).
    for table in ("users", "products", "bias"):
        for what in ("param", "m", "v"):
            for parts in (2, 3, 5, "3 on one worker"):
                np.testing.assert_array_equal(trained[parts].part(table, what), trained[1].part(table, what))
    assert np.abs(trained[1].gamma_p - gamma_p).max() > 0.01


def test_unequal_triples_are_refused():
    trainer = Trainer(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), batch_size=4, lr=0.1, l2=0.0)
    with pytest.raises(ValueError, match="unequal lengths"):
        trainer.epoch(np.zeros(3, np.int64), np.zeros(3, np.int64), np.zeros(2, np.int64), np.ones(3, np.float32))


def test_an_epoch_takes_every_pair_once_in_a_seeded_order_with_uniform_negatives():
    n, n_products = 20_000, 7
    users, products = np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64) % n_products
    weights = np.arange(n, dtype=np.float32)

    def epoch(seed):
        out = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float32))
        shuffle_epoch(seed, users, products, weights, n_products, np.empty(n, np.int64), *out)
        return out

    u, p, q, w = epoch(3)
    assert np.array_equal(np.sort(u), users)  # a permutation of the pairs, each pair kept whole
    assert np.array_equal(p, u % n_products) and np.array_equal(w, u.astype(np.float32))
    assert not np.array_equal(u, users)
    counts = np.bincount(q, minlength=n_products)
    assert len(counts) == n_products and counts.min() > 0.9 * n / n_products  # every product, about equally
    assert all(np.array_equal(a, b) for a, b in zip(epoch(3), (u, p, q, w)))
    assert not np.array_equal(epoch(4)[0], u)
