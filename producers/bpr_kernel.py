"""clicks_bpr's training loop on the CPU, compiled (numba): the batch gradient and a lazy Adam, on threads.

Written with torch ops a step was ~25 passes over batch-sized arrays (three
row gathers, three `index_add_` scatters at ~40 ns a row, the element-wise
products between them) plus a dense Adam over every user and product row:
2.4 ms per batch of 8,192 × 64 on one core, and the dense part grows with the
catalogue, so a 10× larger shop cost 21× more. Here a batch reads the three
rows of a triple once and adds its contribution straight into the gradient
rows, the way `implicit` fuses its SGD step, and Adam then updates only the
rows the batch touched (torch's `SparseAdam` rule: a row's moments move when
it has a gradient, bias correction by the global step). A step costs the
batch, not the tables.

On several threads every row (of users, products and biases) has one owner
thread (`owner`). A batch runs in two parallel phases:

1. each thread walks the whole batch in order and, for the triples that reach
   a row it owns, computes the triple's gradient and adds the terms that land
   in its own rows. No two threads write one row, and a row receives its
   terms in the batch's order, as on one thread, so the float sums and the
   trained vectors are the same bit for bit whatever the number of threads.
   (A Hogwild split, as `implicit` runs, would make the result depend on
   thread timing; the family pool and the tests compare runs.) The price: a
   triple whose rows two threads own is read, and its dot product computed,
   by both;
2. Adam on each owner's touched rows (rows are independent).

Phase 2 starts when every thread has finished phase 1 (phase 1 reads
parameters that phase 2 moves): two synchronisations a batch, cheap on free
cores, costly where a thread waits for the scheduler.

Compiled on first use and cached beside this file (`cache=True`): a fresh
installation compiles once (~10-20 s), later processes load the cache
(`bpr.load_kernel`, ~0.5 s once per process). The loop freshly compiled in a
process and the same loop loaded from the cache agree bit for bit only
without fastmath's "nsz" (`FAST`).
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

# Reassociation lets LLVM vectorise the 64-wide dot products; NaN/Inf semantics are kept (exp may overflow).
# No "nsz": with it (and "reassoc") the loop compiled fresh in a process and the same loop loaded from numba's
# cache gave different results (~5e-7 after three epochs; without it bit for bit, measured both ways), so two
# processes, one of which compiled, disagreed: the family pool's test saw it in the whole suite.
# error_model="numpy": no ZeroDivisionError check per division, which kept the Adam loop scalar.
FAST = {"reassoc", "contract", "arcp"}


# Each table holds a row's parameter, gradient and Adam's two moments side by side, shape (rows, 4, dim): a
# step reaches a row once, as one contiguous block, where four separate tables cost four cache misses (at
# 100k products the tables outgrow the cache and the step was bound by those misses).
PARAM, GRAD, M, V = 0, 1, 2, 3

# Rows are owned in blocks of 16, each block dealt to a thread by a hash: hashing spreads the rows evenly
# whatever the order of the ids, and whole blocks keep two threads off one cache line of the small per-row
# arrays (a bias row is 16 bytes, a stamp 8). The hash maps to a thread by a multiply and a shift (Lemire's
# range reduction), where `block % threads` would cost an integer division, three per triple per thread.
BLOCK_SHIFT = 4
KNUTH = 2654435761  # 2^32 / golden ratio: consecutive blocks land far apart in 32 bits


def threads() -> int:
    """The threads a training uses: numba's current count, which follows NUMBA_NUM_THREADS (the family pool
    sets it per worker) and `numba.set_num_threads`."""
    return get_num_threads()


@njit(cache=True, nogil=True, inline="always")
def owner(row, parts):  # pragma: no cover - compiled
    return ((((row >> BLOCK_SHIFT) * KNUTH) & 0xFFFFFFFF) * parts) >> 32


@njit(cache=True, nogil=True, inline="always")
def listed(stamp, rows, n, row, mark):  # pragma: no cover - compiled
    """List `row` in rows[:n] where the batch first meets it (its stamp is not yet `mark`); the new count."""
    if stamp[row] != mark:
        stamp[row] = mark
        rows[n] = row
        n += 1
    return n


@njit(cache=True, nogil=True)
def _next64(state):  # pragma: no cover - compiled
    """splitmix64: the next state and a 64-bit random number."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _below(r, bound):  # pragma: no cover - compiled
    """An integer in [0, bound) from r's top 32 bits by a multiply (Lemire); bias ~bound / 2^32, nil here."""
    return np.int64(((r >> np.uint64(32)) * np.uint64(bound)) >> np.uint64(32))


@njit(cache=True, nogil=True)
def shuffle_epoch(seed, users, products, weights, n_products, order, out_u, out_p, out_q, out_w):  # pragma: no cover
    """An epoch's triples: the pairs in a random order (Fisher-Yates), each with a uniform random negative
    product, written to out_u, out_p, out_q, out_w; `order` is scratch. Deterministic in `seed`.

    numpy's permutation, three gathers and `integers` took ~3.4 ms an epoch of 79k pairs, this ~1 ms: at two
    threads the epochs' serial preparation was an eighth of the producer's time.
    """
    n = users.shape[0]
    state = np.uint64(seed)
    for i in range(n):
        order[i] = i
    for i in range(n - 1, 0, -1):
        state, r = _next64(state)
        j = _below(r, i + 1)
        order[i], order[j] = order[j], order[i]
    for i in range(n):
        k = order[i]
        out_u[i], out_p[i], out_w[i] = users[k], products[k], weights[k]
        state, r = _next64(state)
        out_q[i] = _below(r, n_products)


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def accumulate(part, parts, users, products, bias, u_all, p_all, q_all, w_all, start, count, l2, stamp_u, stamp_p,
               mark, rows_u, rows_p):  # pragma: no cover - compiled
    """Add to the zero gradients of the rows `part` owns their terms of the gradient of the batch loss
    -mean(w · log σ(x_up - x_uq)) + l2 · Σ_batch (‖γ_u‖² + ‖γ_p‖² + ‖γ_q‖²) / batch,
    x_up - x_uq = γ_u·(γ_p - γ_q) + β_p - β_q, over the batch's triples
    (u_all[i], p_all[i], q_all[i]), start <= i < start + count, and list the distinct rows it touched.

    A row is listed where the batch first meets it (`stamp_* != mark`): no
    sort. Returns (number of user rows, number of product rows).
    """
    dim = products.shape[2]
    decay = np.float32(2.0 * l2 / count)
    n_u = 0
    n_p = 0
    for i in range(start, start + count):
        a, b, c = u_all[i], p_all[i], q_all[i]
        own_a, own_b, own_c = owner(a, parts) == part, owner(b, parts) == part, owner(c, parts) == part
        if not (own_a or own_b or own_c):
            continue
        ru, rp, rq = users[a, PARAM], products[b, PARAM], products[c, PARAM]
        diff = bias[b, PARAM, 0] - bias[c, PARAM, 0]
        for k in range(dim):
            diff += ru[k] * (rp[k] - rq[k])
        # d/d diff of -w log σ(diff) / count is -w σ(-diff) / count.
        g = np.float32(-w_all[i] / (1.0 + np.exp(diff)) / count)
        if own_a:
            n_u = listed(stamp_u, rows_u, n_u, a, mark)
            gu = users[a, GRAD]
            for k in range(dim):
                gu[k] += g * (rp[k] - rq[k]) + decay * ru[k]
        if own_b:
            n_p = listed(stamp_p, rows_p, n_p, b, mark)
            gp = products[b, GRAD]
            for k in range(dim):
                gp[k] += g * ru[k] + decay * rp[k]
            bias[b, GRAD, 0] += g
        if own_c:
            n_p = listed(stamp_p, rows_p, n_p, c, mark)
            gq = products[c, GRAD]
            for k in range(dim):
                gq[k] += decay * rq[k] - g * ru[k]
            bias[c, GRAD, 0] -= g
    return n_u, n_p


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def adam_rows(table, rows, count, lr, beta1, beta2, eps, step):  # pragma: no cover - compiled
    """Adam (torch's formula) on the listed distinct rows of a (rows, 4, dim) table, then zero their gradient."""
    step_size = np.float32(lr / (1.0 - beta1 ** step))
    root2 = np.float32(np.sqrt(1.0 - beta2 ** step))
    # All in float32, as torch: a float64 `1 - b1` made every element a round trip through doubles.
    b1, b2, e = np.float32(beta1), np.float32(beta2), np.float32(eps)
    c1, c2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)
    for j in range(count):
        row = table[rows[j]]
        pr, gr, mr, vr = row[PARAM], row[GRAD], row[M], row[V]
        for k in range(pr.shape[0]):
            g = gr[k]
            mr[k] = b1 * mr[k] + c1 * g
            vr[k] = b2 * vr[k] + c2 * g * g
            pr[k] -= step_size * mr[k] / (np.sqrt(vr[k]) / root2 + e)
            gr[k] = 0.0


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def train_epoch_one_thread(users, products, bias, stamp_u, stamp_p, rows_u, rows_p, u_all, p_all, q_all, w_all,
                           batch_size, lr, l2, beta1, beta2, eps, step):  # pragma: no cover - compiled
    """`train_epoch` with one owner, without numba's thread pool: a family-pool worker with one core's share
    pays no parallel launch per batch. Same arithmetic, so the same result as `train_epoch`."""
    n = u_all.shape[0]
    for start in range(0, n, batch_size):
        count = min(n, start + batch_size) - start
        step += 1
        n_u, n_p = accumulate(0, 1, users, products, bias, u_all, p_all, q_all, w_all, start, count, l2, stamp_u,
                              stamp_p, step, rows_u, rows_p)
        adam_rows(users, rows_u, n_u, lr, beta1, beta2, eps, step)
        adam_rows(products, rows_p, n_p, lr, beta1, beta2, eps, step)
        adam_rows(bias, rows_p, n_p, lr, beta1, beta2, eps, step)
    return step


@njit(cache=True, nogil=True, parallel=True, fastmath=FAST, error_model="numpy")
def train_epoch(users, products, bias, stamp_u, stamp_p, rows_u, rows_p, touched, u_all, p_all, q_all, w_all,
                batch_size, lr, l2, beta1, beta2, eps, step):  # pragma: no cover - compiled
    """One pass over the triples (u_all[i], p_all[i], q_all[i]) in batches; returns the
    global Adam step reached (it counts every batch of every epoch: Adam's bias correction).

    users, products: (rows, 4, dim); bias: (products, 4, 1). The number of owners (`parts`) is rows_u's
    first dimension; touched: (parts, 2), the rows each owner listed.
    """
    parts = rows_u.shape[0]
    n = u_all.shape[0]
    for start in range(0, n, batch_size):
        count = min(n, start + batch_size) - start
        step += 1
        for part in prange(parts):
            touched[part, 0], touched[part, 1] = accumulate(
                part, parts, users, products, bias, u_all, p_all, q_all, w_all, start, count, l2, stamp_u,
                stamp_p, step, rows_u[part], rows_p[part])
        for part in prange(parts):
            adam_rows(users, rows_u[part], touched[part, 0], lr, beta1, beta2, eps, step)
            adam_rows(products, rows_p[part], touched[part, 1], lr, beta1, beta2, eps, step)
            adam_rows(bias, rows_p[part], touched[part, 1], lr, beta1, beta2, eps, step)
    return step
