"""clicks_bpr's training loop on the CPU, compiled (numba): the batch gradient and a lazy Adam, on threads.

Written with torch ops a step was ~25 passes over batch-sized arrays (three
row gathers, three `index_add_` scatters at ~40 ns a row, the element-wise
products between them) plus a dense Adam over every user and product row:
2.4 ms per batch of 8,192 × 64 on one core, and the dense part grows with the
catalogue, so a 10× larger shop cost 21× more. Here compiled loops read a
triple's rows and add its contribution straight into the gradient rows, the
way `implicit` fuses its SGD step, and Adam then updates only the rows the
batch touched (torch's `SparseAdam` rule: a row's moments move when
it has a gradient, bias correction by the global step). A step costs the
batch, not the tables.

On several threads every row (of users, products and biases) has one owner
thread (`owner`), and a batch runs in two parallel phases, each thread on
its own rows:

1. `user_phase`: Adam on its users from the previous batch, then the triples
   of its users, in the batch's order: each one's dot product and slope (the
   loss's derivative in the score difference), computed once, and the user's
   gradient term (reading product rows, writing only its users');
2. `product_phase`: its products' terms from those slopes, in the batch's
   order (reading user rows), then Adam on its products.

Every read of a row another thread owns falls in a phase where nobody
writes it, so two synchronisations a batch suffice (a `barrier` inside one
parallel loop an epoch: numba's own start and join of a parallel loop cost
~65 µs each). No two threads write one row, and a row receives its terms in
the batch's order, as on one thread, so the float sums and the trained
vectors are the same bit for bit whatever the number of threads. (A Hogwild
split, as `implicit` runs, would make the result depend on thread timing; the
family pool and the tests compare runs.) An earlier kernel had each owner
walk the whole batch and compute the dot product of every triple that
reached one of its rows, 7 triples in 8 on two threads, then Adam in a phase
of its own: two threads did 1.75 times one thread's work, and on the default
shop were slower than one (0.520 s against 0.414 s).

One thread runs the same arithmetic fused (`one_batch`: a triple's rows read
once, its slope and terms together) without numba's thread pool.

Compiled on first use and cached beside this file (`cache=True`): a fresh
installation compiles once (~10-20 s), later processes load the cache
(`bpr.load_kernel`, ~0.5 s once per process). The loop freshly compiled in a
process and the same loop loaded from the cache agree bit for bit only
without fastmath's "nsz" (`FAST`).
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# Reassociation lets LLVM vectorise the 64-wide dot products; NaN/Inf semantics are kept (exp may overflow).
# No "nsz": with it (and "reassoc") the loop compiled fresh in a process and the same loop loaded from numba's
# cache gave different results (~5e-7 after three epochs; without it bit for bit, measured both ways), so two
# processes, one of which compiled, disagreed: the family pool's test saw it in the whole suite.
# No "contract" either: a fused multiply-add rounds once, and which product of `g * u + decay * p` LLVM fused
# depended on the code around the (inlined) term, so the one-thread loop and the threaded phases, the same
# source, differed by ~1e-6; without it they agree bit for bit, and the one-thread loop was no slower (0.40 s
# CPU against 0.47 s for the previous kernel with "contract", default shop, 25 epochs, one process).
# error_model="numpy": no ZeroDivisionError check per division, which kept the Adam loop scalar.
FAST = {"reassoc", "arcp"}


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


@njit(cache=True, parallel=True)
def _start_threads(out):  # pragma: no cover - compiled
    for i in prange(out.shape[0]):
        out[i] = i


def workers(parts: int) -> int:
    """How many threads run `train_epoch`'s `parts`: at most numba's count, and one (all parts in turn, the
    same result) on TBB, whose scheduler may run two iterations of a parallel loop on one thread, which would
    leave the first to reach a `barrier` waiting for the other forever. numba's OpenMP and workqueue layers
    give each iteration its own thread."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel loop has run yet: the layer is chosen at the first
        _start_threads(np.zeros(2, np.int64))
        layer = numba.threading_layer()
    return 1 if layer == "tbb" else max(1, min(parts, get_num_threads()))


def _element(context, builder, array_type, array, index, index_type):
    """A pointer to array[index] (one dimension) in generated code."""
    view = context.make_array(array_type)(context, builder, array)
    at = context.cast(builder, index, index_type, types.intp)
    return cgutils.get_item_pointer(context, builder, array_type, view, [at])


@intrinsic
def _arrive(typingctx, counters, index):
    """counters[index] += 1 as one atomic instruction (numba has no atomics on the CPU)."""
    def codegen(context, builder, signature, args):
        at = _element(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        return builder.atomic_rmw("add", at, context.get_constant(types.int64, 1), "seq_cst")

    return types.int64(counters, index), codegen


@intrinsic
def _arrived(typingctx, counters, index):
    """counters[index], read with acquire order: what the threads wrote before they arrived is visible."""
    def codegen(context, builder, signature, args):
        at = _element(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        return builder.load_atomic(at, "acquire", 8)

    return types.int64(counters, index), codegen


_sched_yield = types.ExternalFunction("sched_yield", types.int32())
_usleep = types.ExternalFunction("usleep", types.int32(types.uint32))

# A waiting thread reads the counter SPINS times, then yields its core, and after YIELDS yields sleeps between
# reads: a phase's threads usually end within microseconds of each other, and a thread the scheduler took
# away (on a busy machine) is waited for without holding a core it may need.
SPINS, YIELDS, NAP_US = 1000, 200, 50


@njit(cache=True, nogil=True)
def barrier(arrived, target):  # pragma: no cover - compiled
    """Arrive, then wait until the count of arrivals (arrived[0], never reset within an epoch) reaches target.

    numba starts and joins its threads for every `prange` loop; with OMP_WAIT_POLICY=PASSIVE (the pipeline's
    setting, so that idle threads leave shared cores to other work) a join and a start put a thread to sleep
    and wake it, ~65 µs per loop measured inside this kernel on this 2-core VM under load (three extra empty
    loops a batch cost +50 ms over the default shop's 250 batches), against a ~0.3 s training. One parallel
    loop an epoch with this barrier between phases costs well under a microsecond a phase when both threads
    run (0.07-0.09 µs measured on two idle cores).
    """
    _arrive(arrived, 0)
    spins = 0
    while _arrived(arrived, 0) < target:
        spins += 1
        if spins >= SPINS * (YIELDS + 1):
            _usleep(NAP_US)
        elif spins % SPINS == 0:
            _sched_yield()


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


# The arithmetic of a triple, written once for the one-thread batch (`one_batch`) and the threaded phases
# (`user_phase`, `product_phase`), inlined into each: as separate calls (an array passes as ~7 arguments) they
# cost an earlier threaded gradient phase 0.28 s against 0.18 s. Inlined, each loop compiles them anew: without "contract"
# (FAST) the floats cannot differ between loops, and the tests compare every number of threads bit for bit.
@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def slope(ru, rp, rq, bias_p, bias_q, w, count):  # pragma: no cover - compiled
    """d/d(x_up - x_uq) of the triple's loss -w log σ(x_up - x_uq) / count, with
    x_up - x_uq = γ_u·(γ_p - γ_q) + β_p - β_q: that is -w σ(-(x_up - x_uq)) / count."""
    diff = bias_p - bias_q
    for k in range(ru.shape[0]):
        diff += ru[k] * (rp[k] - rq[k])
    return np.float32(-w / (1.0 + np.exp(diff)) / count)


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def add_user_term(gu, ru, rp, rq, g, decay):  # pragma: no cover - compiled
    """The user row's gradient term of a triple of slope g (decay: the L2 term's factor)."""
    for k in range(gu.shape[0]):
        gu[k] += g * (rp[k] - rq[k]) + decay * ru[k]


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def add_product_term(gp, ru, rp, g, decay):  # pragma: no cover - compiled
    """A product row's gradient term: g for the positive, -g for the negative (a sign flip is exact)."""
    for k in range(gp.shape[0]):
        gp[k] += g * ru[k] + decay * rp[k]


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def user_phase(part, parts, users, products, bias, u_all, p_all, q_all, w_all, start, count, l2, g, mine, stamp_u,
               mark, rows_u):  # pragma: no cover - compiled
    """Phase 1 for the users `part` owns, over the batch of `count` triples from `start`: each of their triples'
    slope g[i - start] (the only slot of g this part writes) and the user's gradient term, in the batch's order;
    the distinct user rows listed in rows_u (`listed`). Reads product rows, writes only its users' rows.
    Returns the number of user rows listed."""
    k = 0
    for j in range(count):  # its triples, picked without a branch (a random one costs the loads in flight)
        mine[k] = j
        k += owner(u_all[start + j], parts) == part
    n_u = 0
    for t in range(k):
        n_u = listed(stamp_u, rows_u, n_u, u_all[start + mine[t]], mark)
    decay = np.float32(2.0 * l2 / count)
    for t in range(k):
        i = start + mine[t]
        a, b, c = u_all[i], p_all[i], q_all[i]
        ru, rp, rq = users[a, PARAM], products[b, PARAM], products[c, PARAM]
        gi = slope(ru, rp, rq, bias[b, PARAM, 0], bias[c, PARAM, 0], w_all[i], count)
        g[i - start] = gi
        add_user_term(users[a, GRAD], ru, rp, rq, gi, decay)
    return n_u


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def product_phase(part, parts, users, products, bias, u_all, p_all, q_all, start, count, l2, g, mine, stamp_p, mark,
                  rows_p):  # pragma: no cover - compiled
    """Phase 2 for the products `part` owns: their gradient terms from the batch's slopes g, the positive's
    before the negative's of each triple, in the batch's order; the distinct rows listed in rows_p. Reads user
    rows, writes only its products' rows. Returns the number of product rows listed."""
    k = 0
    for e in range(2 * count):  # term e: triple e // 2, its positive (e even) or negative product
        i = start + (e >> 1)
        mine[k] = e
        k += owner(q_all[i] if e & 1 else p_all[i], parts) == part
    n_p = 0
    for t in range(k):
        e = mine[t]
        i = start + (e >> 1)
        n_p = listed(stamp_p, rows_p, n_p, q_all[i] if e & 1 else p_all[i], mark)
    decay = np.float32(2.0 * l2 / count)
    for t in range(k):
        e = mine[t]
        i = start + (e >> 1)
        row = q_all[i] if e & 1 else p_all[i]
        gi = -g[i - start] if e & 1 else g[i - start]  # the negative's terms: the slope's sign flipped (exact)
        add_product_term(products[row, GRAD], users[u_all[i], PARAM], products[row, PARAM], gi, decay)
        bias[row, GRAD, 0] += gi
    return n_p


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def one_batch(users, products, bias, u_all, p_all, q_all, w_all, start, count, l2, stamp_u, stamp_p, mark, rows_u,
              rows_p):  # pragma: no cover - compiled
    """`user_phase` and `product_phase` of one part, fused: each triple's rows read once, its slope and its
    three terms computed together by the same inlined functions, each row's terms in the same order (so the
    same sums). Separate phases on one thread re-read rows: 0.70 s CPU against 0.58 s (default shop, 25 epochs)
    Returns (number of user rows, number of product rows) listed.
    """
    decay = np.float32(2.0 * l2 / count)
    n_u = 0
    n_p = 0
    for i in range(start, start + count):  # the listing apart, as in the phases
        n_u = listed(stamp_u, rows_u, n_u, u_all[i], mark)
        n_p = listed(stamp_p, rows_p, n_p, p_all[i], mark)
        n_p = listed(stamp_p, rows_p, n_p, q_all[i], mark)
    for i in range(start, start + count):
        a, b, c = u_all[i], p_all[i], q_all[i]
        ru, rp, rq = users[a, PARAM], products[b, PARAM], products[c, PARAM]
        g = slope(ru, rp, rq, bias[b, PARAM, 0], bias[c, PARAM, 0], w_all[i], count)
        add_user_term(users[a, GRAD], ru, rp, rq, g, decay)
        add_product_term(products[b, GRAD], ru, rp, g, decay)
        bias[b, GRAD, 0] += g
        add_product_term(products[c, GRAD], ru, rq, -g, decay)
        bias[c, GRAD, 0] += -g
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
def train_epoch_one_thread(users, products, bias, stamp_u, stamp_p, rows_u, rows_p, touched, g, mine_u, mine_p,
                           u_all, p_all, q_all, w_all, batch_size, lr, l2, beta1, beta2, eps,
                           step):  # pragma: no cover - compiled
    """`train_epoch` with one part, without numba's thread pool: a family-pool worker with one core's share
    pays no parallel launch. The same arithmetic in the same order (`one_batch`), so the same result as
    `train_epoch`; touched, g, mine_u and mine_p go unused (one signature for both)."""
    n = u_all.shape[0]
    for start in range(0, n, batch_size):
        count = min(n, start + batch_size) - start
        step += 1
        n_u, n_p = one_batch(users, products, bias, u_all, p_all, q_all, w_all, start, count, l2, stamp_u, stamp_p,
                             step, rows_u[0], rows_p[0])
        adam_rows(users, rows_u[0], n_u, lr, beta1, beta2, eps, step)
        adam_rows(products, rows_p[0], n_p, lr, beta1, beta2, eps, step)
        adam_rows(bias, rows_p[0], n_p, lr, beta1, beta2, eps, step)
    return step


@njit(cache=True, nogil=True, parallel=True, fastmath=FAST, error_model="numpy")
def train_epoch(users, products, bias, stamp_u, stamp_p, rows_u, rows_p, touched, g, mine_u, mine_p, u_all, p_all,
                q_all, w_all, batch_size, lr, l2, beta1, beta2, eps, step, workers,
                arrived):  # pragma: no cover - compiled
    """One pass over the triples (u_all[i], p_all[i], q_all[i]) weighted by w_all[i] in batches; returns the
    global Adam step reached (it counts every batch of every epoch: Adam's bias correction).

    users, products: (rows, 4, dim); bias: (products, 4, 1). The number of parts (shares of the rows) is
    rows_u's first dimension; per part, rows_u and rows_p list the rows it owns that a batch touched, touched
    counts them, mine_u and mine_p are its scratch. g: a batch's slopes.

    A batch is two phases, each part on its own rows: (1) Adam on its users from the previous batch, then its
    users' triples: slopes and user terms (reading product rows); (2) its products' terms (reading user rows
    and the slopes), then Adam on its products. Every read of another part's rows falls in a phase where no one
    writes them, so two barriers a batch suffice. After the last batch, Adam on the users.

    One parallel loop over `workers` threads for the whole epoch, its phases separated by `barrier` (arrived:
    its zeroed counter). Worker w runs parts w, w + workers, ...: the parts set the result, the workers only who
    computes it. Every worker must run at once, or the first to arrive waits forever: workers <= numba's
    threads, on a threading layer that gives each iteration of the loop its own thread (`workers`).
    """
    parts = rows_u.shape[0]
    n = u_all.shape[0]
    for worker in prange(workers):
        passed = 0
        at = step
        for start in range(0, n, batch_size):
            count = min(n, start + batch_size) - start
            at += 1
            for part in range(worker, parts, workers):
                if start > 0:
                    adam_rows(users, rows_u[part], touched[part, 0], lr, beta1, beta2, eps, at - 1)
                touched[part, 0] = user_phase(part, parts, users, products, bias, u_all, p_all, q_all, w_all, start,
                                              count, l2, g, mine_u[part], stamp_u, at, rows_u[part])
            passed += workers
            barrier(arrived, passed)
            for part in range(worker, parts, workers):
                touched[part, 1] = product_phase(part, parts, users, products, bias, u_all, p_all, q_all, start,
                                                 count, l2, g, mine_p[part], stamp_p, at, rows_p[part])
                adam_rows(products, rows_p[part], touched[part, 1], lr, beta1, beta2, eps, at)
                adam_rows(bias, rows_p[part], touched[part, 1], lr, beta1, beta2, eps, at)
            passed += workers
            barrier(arrived, passed)
        for part in range(worker, parts, workers):
            adam_rows(users, rows_u[part], touched[part, 0], lr, beta1, beta2, eps, at)
    return step + (n + batch_size - 1) // batch_size
