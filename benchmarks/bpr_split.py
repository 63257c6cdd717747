"""What clicks_bpr's thread split costs, measured on one core: the critical path of the threaded kernel.

The kernel (producers/bpr_kernel.py) runs a batch in three parallel phases:
the triples' slopes, split into ranges; the gradient pass per owner thread;
Adam per owner; each phase ends when its slowest part ends. Here the parts run
one after another on one core, each timed on its own CPU clock, on batches
like the producer's (25 epochs of the shop's pairs): the sum over batches of
each phase's slowest part, against the one-thread loop on the same batches.
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
                  dim: int = 64, lr: float = 0.01, l2: float = 1e-5) -> tuple[float, float, float]:
    """(slope seconds, gradient seconds, Adam seconds) summed over batches, each batch's slowest part; one part
    is the one-thread loop (`one_batch`, its time under gradient)."""
    from prodvec.producers import bpr_kernel as K
    from prodvec.producers.bpr import Trainer

    init = np.random.default_rng(5)
    trainer = Trainer(init.normal(0, 0.1, (users.max() + 1, dim)).astype(np.float32),
                      init.normal(0, 0.1, (n_products, dim)).astype(np.float32), batch, lr, l2, parts=parts)
    rng, step, n = np.random.default_rng(0), 0, len(users)
    spent = np.zeros(3)
    for _ in range(epochs):
        order = rng.permutation(n)
        u, p, q, w = users[order], products[order], rng.integers(0, n_products, n), weights[order]
        for start in range(0, n, batch):
            count, step = min(n, start + batch) - start, step + 1
            chunk = -(-count // parts)
            spans = np.zeros((3, parts))
            if parts == 1:  # the one-thread loop: slopes and gradient fused (counted as gradient), then Adam
                clock = time.process_time()
                trainer.touched[0] = K.one_batch(trainer.users, trainer.products, trainer.bias, u, p, q, w, start,
                                                 count, l2, *trainer.stamps, step, trainer.rows_u[0],
                                                 trainer.rows_p[0])
                spans[1, 0] = time.process_time() - clock
            for part in range(parts if parts > 1 else 0):  # the threaded kernel's phases, each part on its own
                clock = time.process_time()
                K.slopes(part, parts, trainer.users, trainer.products, trainer.bias, u, p, q, w, start, count,
                         start + min(count, part * chunk), start + min(count, (part + 1) * chunk), trainer.slopes,
                         *trainer.deal)
                spans[0, part] = time.process_time() - clock
            for part in range(parts if parts > 1 else 0):
                clock = time.process_time()
                trainer.touched[part] = K.accumulate(part, parts, trainer.users, trainer.products, trainer.bias, u, p,
                                                     q, trainer.slopes, start, count, l2, *trainer.deal,
                                                     *trainer.stamps, step,
                                                     trainer.rows_u[part], trainer.rows_p[part])
                spans[1, part] = time.process_time() - clock
            for part in range(parts):
                clock = time.process_time()
                n_u, n_p = trainer.touched[part]
                K.adam_rows(trainer.users, trainer.rows_u[part], n_u, lr, 0.9, 0.999, 1e-8, step)
                K.adam_rows(trainer.products, trainer.rows_p[part], n_p, lr, 0.9, 0.999, 1e-8, step)
                K.adam_rows(trainer.bias, trainer.rows_p[part], n_p, lr, 0.9, 0.999, 1e-8, step)
                spans[2, part] = time.process_time() - clock
            spent += spans.max(1)
    return tuple(spent)


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
    for parts, (s, g, a) in best.items():
        print(f"{parts} part(s), slowest per batch: slopes {s:.3f} s, gradient {g:.3f} s, Adam {a:.3f} s, "
              f"total {s + g + a:.3f} s")
    print(f"critical path / one part: {sum(best[args.parts]) / sum(best[1]):.2f}")


if __name__ == "__main__":
    main()
