"""What clicks_bpr's thread split costs, measured on one core: the critical path of the threaded kernel.

The kernel (producers/bpr_kernel.py) gives every row one owner thread; a batch
is a gradient pass per owner, then Adam per owner, each pass ending when the
slowest owner ends. Here the owners run one after another on one core, each
timed on its own CPU clock, on the producer's own batches (seed 0, 25 epochs,
the shop's pairs): the sum over batches of the slowest owner's gradient pass
and the slowest owner's Adam, against the one-owner loop on the same batches.
Their ratio is what the kernel's wall on PARTS idle cores should be, relative
to one thread, before the threads' wake-ups: it can be measured on a busy
machine, where a two-thread wall cannot.

    .venv/bin/python benchmarks/bpr_split.py SHOP_DIR [PARTS]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def critical_path(users, products, weights, n_products, parts: int, batch: int = 8192, epochs: int = 25,
                  dim: int = 64, lr: float = 0.01, l2: float = 1e-5) -> tuple[float, float]:
    """(gradient seconds, Adam seconds) summed over batches, each batch's slowest owner."""
    from prodvec.producers import bpr_kernel as K
    from prodvec.producers.bpr import Trainer

    init = np.random.default_rng(5)
    trainer = Trainer(init.normal(0, 0.1, (users.max() + 1, dim)).astype(np.float32),
                      init.normal(0, 0.1, (n_products, dim)).astype(np.float32), batch, lr, l2, parts=parts)
    rng, step, gradient, adam, n = np.random.default_rng(0), 0, 0.0, 0.0, len(users)
    for _ in range(epochs):
        order = rng.permutation(n)
        u, p, q, w = users[order], products[order], rng.integers(0, n_products, n), weights[order]
        for start in range(0, n, batch):
            count, step = min(n, start + batch) - start, step + 1
            spans = []
            for part in range(parts):
                clock = time.process_time()
                trainer.touched[part] = K.accumulate(part, parts, trainer.users, trainer.products, trainer.bias, u, p,
                                                     q, w, start, count, l2, *trainer.stamps, step,
                                                     trainer.rows_u[part], trainer.rows_p[part])
                spans.append(time.process_time() - clock)
            gradient += max(spans)
            spans = []
            for part in range(parts):
                clock = time.process_time()
                n_u, n_p = trainer.touched[part]
                K.adam_rows(trainer.users, trainer.rows_u[part], n_u, lr, 0.9, 0.999, 1e-8, step)
                K.adam_rows(trainer.products, trainer.rows_p[part], n_p, lr, 0.9, 0.999, 1e-8, step)
                K.adam_rows(trainer.bias, trainer.rows_p[part], n_p, lr, 0.9, 0.999, 1e-8, step)
                spans.append(time.process_time() - clock)
            adam += max(spans)
    return gradient, adam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shop", type=Path)
    parser.add_argument("parts", type=int, nargs="?", default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    args = parser.parse_args()
    from prodvec.core.shop.loader import load_shop
    from prodvec.producers.bpr import interaction_pairs, load_kernel

    load_kernel()
    users, products, weights, ids = interaction_pairs(load_shop(args.shop, log=lambda m: None), 1)
    weights = (weights / weights.mean()).astype(np.float32)
    best = {}
    for parts in (1, args.parts):
        critical_path(users, products, weights, len(ids), parts, epochs=1)  # compiled and warm
        best[parts] = min((critical_path(users, products, weights, len(ids), parts) for _ in range(args.repeat)),
                          key=sum)
    (g1, a1), (g2, a2) = best[1], best[args.parts]
    print(f"one owner: gradient {g1:.3f} s, Adam {a1:.3f} s, total {g1 + a1:.3f} s")
    print(f"{args.parts} owners, slowest per batch: gradient {g2:.3f} s, Adam {a2:.3f} s, total {g2 + a2:.3f} s")
    print(f"critical path / one owner: {(g2 + a2) / (g1 + a1):.2f}")


if __name__ == "__main__":
    main()
