"""What clicks_bpr's thread split costs, measured on one core: the critical path of the threaded kernel.

The kernel (producers/bpr_kernel.py) runs a batch in two parallel phases, each
part on the rows it owns: its users (their Adam from the last batch, their
triples' slopes and user terms), then its products (their terms and Adam);
each phase ends when its slowest part ends. Here the parts run
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
                  dim: int = 64, lr: float = 0.01, l2: float = 1e-5) -> tuple[float, float]:
    """(phase 1 seconds, phase 2 seconds) summed over batches, each batch's slowest part; one part is the
    one-thread loop (`one_batch` and Adam, under phase 1)."""
    from prodvec.producers import bpr_kernel as K
    from prodvec.producers.bpr import Trainer

    init = np.random.default_rng(5)
    t = Trainer(init.normal(0, 0.1, (users.max() + 1, dim)).astype(np.float32),
                init.normal(0, 0.1, (n_products, dim)).astype(np.float32), batch, lr, l2, parts=parts)
    rng, step, n = np.random.default_rng(0), 0, len(users)
    spent = np.zeros(2)
    for _ in range(epochs):
        order = rng.permutation(n)
        u, p, q, w = users[order], products[order], rng.integers(0, n_products, n), weights[order]
        for start in range(0, n, batch):
            count, step = min(n, start + batch) - start, step + 1
            spans = np.zeros((2, parts))
            if parts == 1:
                clock = time.process_time()
                n_u, n_p = K.one_batch(t.users, t.products, t.bias, u, p, q, w, start, count, l2, *t.stamps, step,
                                       t.rows_u[0], t.rows_p[0])
                for table, rows, k in ((t.users, t.rows_u[0], n_u), (t.products, t.rows_p[0], n_p),
                                       (t.bias, t.rows_p[0], n_p)):
                    K.adam_rows(table, rows, k, lr, 0.9, 0.999, 1e-8, step)
                spans[0, 0] = time.process_time() - clock
            for part in range(parts if parts > 1 else 0):  # the threaded kernel's phases, each part on its own
                clock = time.process_time()
                if start > 0:
                    K.adam_rows(t.users, t.rows_u[part], t.touched[part, 0], lr, 0.9, 0.999, 1e-8, step - 1)
                t.touched[part, 0] = K.user_phase(part, parts, t.users, t.products, t.bias, u, p, q, w, start, count,
                                                  l2, t.slopes, t.mine[0][part], t.stamps[0], step, t.rows_u[part])
                spans[0, part] = time.process_time() - clock
            for part in range(parts if parts > 1 else 0):
                clock = time.process_time()
                t.touched[part, 1] = K.product_phase(part, parts, t.users, t.products, t.bias, u, p, q, start, count,
                                                     l2, t.slopes, t.mine[1][part], t.stamps[1], step,
                                                     t.rows_p[part])
                K.adam_rows(t.products, t.rows_p[part], t.touched[part, 1], lr, 0.9, 0.999, 1e-8, step)
                K.adam_rows(t.bias, t.rows_p[part], t.touched[part, 1], lr, 0.9, 0.999, 1e-8, step)
                spans[1, part] = time.process_time() - clock
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
    for parts, (one, two) in best.items():
        print(f"{parts} part(s), slowest per batch: phase 1 {one:.3f} s, phase 2 {two:.3f} s, total {one + two:.3f} s")
    print(f"critical path / one part: {sum(best[args.parts]) / sum(best[1]):.2f}")


if __name__ == "__main__":
    main()
