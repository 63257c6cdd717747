"""clicks_bpr writes its gradients in closed form: they must be autograd's, to float precision."""

import torch

from prodvec.producers.bpr import BPRGradients


def test_closed_form_gradients_equal_autograd_of_the_weighted_bpr_loss():
    gen = torch.Generator().manual_seed(0)
    n_users, n_products, dim, batch, l2 = 7, 11, 5, 40, 0.3  # few rows: repeats in every batch
    tables = [torch.randn(n_users, dim, generator=gen), torch.randn(n_products, dim, generator=gen),
              torch.randn(n_products, generator=gen)]
    u = torch.randint(0, n_users, (batch,), generator=gen)
    p = torch.randint(0, n_products, (batch,), generator=gen)
    q = torch.randint(0, n_products, (batch,), generator=gen)
    w = torch.rand(batch, generator=gen) + 0.5

    leaves = [t.clone().requires_grad_(True) for t in tables]
    gu, gp, gq, bp = leaves[0][u], leaves[1][p], leaves[1][q], leaves[2]
    diff = bp[p] - bp[q] + (gu * (gp - gq)).sum(1)
    loss = -(w * torch.nn.functional.logsigmoid(diff)).mean()
    loss = loss + l2 * (gu.pow(2).sum() + gp.pow(2).sum() + gq.pow(2).sum()) / batch
    loss.backward()

    params = [t.clone() for t in tables]
    for param in params:
        param.grad = torch.full_like(param, 99.0)  # stale values must be overwritten, not added to
    BPRGradients(params, batch_size=64, l2=l2)(u, p, q, w)
    for param, leaf in zip(params, leaves):
        torch.testing.assert_close(param.grad, leaf.grad, rtol=1e-5, atol=1e-6)
