"""Producing several families at once: one worker process per core, each training whole families.

A family's snapshots depend on each other (each cutoff warm-starts from the
previous one), so a family is the unit of work and stays in one process.
Families do not depend on each other, except that a fusion reads the other
families' snapshots: `run_families` trains every non-fusion family first,
then the fusions.

Most producers use one core for most of their time (Python loops, gensim,
small torch batches), so on the 2-core machine two families side by side
cut `make demo-full`'s pipeline from 681 s to 432 s. Each worker is limited to
its share of the cores (BLAS, OpenMP, torch, numba), because a pool of
workers that each start a thread per core only fight over them.

Workers are spawned, never forked: a fork of a process that already runs
torch or OpenMP threads can deadlock. Each one receives the shop once, when it
starts, so memory grows by one copy of the shop per worker (`--jobs 1` trains in
the command's own process, for a shop that barely fits). The snapshot store already allows one writer per family across
processes (`home_lock`), and the validation gate serialises its writes to
Great Expectations' files (`validation.suite`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from joblib import cpu_count
from threadpoolctl import threadpool_limits

from prodvec.core.shop.model import Shop
from prodvec.core.snapshots import SnapshotStore
from prodvec.core.training import RunResult
from prodvec.jobs import produce
from prodvec.producers import is_fusion, make_producer, producer_class

# Set before a worker imports numpy or torch: the libraries read them once, when they load.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

_worker_shop: Shop | None = None
_worker_lines = None  # the queue a worker's log lines travel to the parent by


def default_jobs(families) -> int:
    """One worker per core this process may use (joblib's count heeds `taskset` and container limits), never
    more than there are families to train side by side."""
    return max(1, min(cpu_count(), sum(not is_fusion(f) for f in families)))


def _start_worker(shop: Shop, lines) -> None:
    global _worker_shop, _worker_lines
    _worker_shop, _worker_lines = shop, lines


def _send(*parts) -> None:
    _worker_lines.put(" ".join(str(p) for p in parts))


@contextmanager
def _thread_variables(threads: int):
    """The thread-count variables, set while workers are spawned (they inherit them) and restored after."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _produce_family(home: str, family: str, cutoffs: list[pd.Timestamp], overrides: dict | None,
                    replace: bool, warm_start: bool, threads: int) -> list[RunResult]:
    import torch

    torch.set_num_threads(threads)
    # Also for a BLAS that unpickling the shop loaded before anything read the variables.
    with threadpool_limits(threads):
        return produce(_worker_shop, family, cutoffs, SnapshotStore(home), overrides=overrides,
                       replace=replace, keep_existing=True, warm_start=warm_start, progress=False, log=_send)


def stages(families) -> list[list[str]]:
    """The families in the order they can run: every non-fusion family, then the fusions that read them.

    Within a stage the costliest start first (`Producer.relative_cost`): started last, the longest family
    would run alone at the end while the other cores wait.
    """
    families = list(dict.fromkeys(families))
    groups = ([f for f in families if not is_fusion(f)], [f for f in families if is_fusion(f)])
    return [sorted(group, key=lambda f: -producer_class(f).relative_cost) for group in groups if group]


def run_families(shop: Shop, families, cutoffs: list[pd.Timestamp], home: Path, *, jobs: int,
                 overrides: dict[str, dict] | None = None, replace: bool = False, warm_start: bool = True,
                 progress: bool = True, log=print, on_done=None) -> list[tuple[str, list[RunResult]]]:
    """Train each family at `cutoffs` (as `jobs.produce` does), `jobs` families at a time.

    Returns (family, runs) in the order of `families`. `on_done(family, runs)`
    is called in this process as each family finishes (the pipeline promotes
    its snapshots then). `jobs=1` trains in this process, one family after
    another, with progress bars. A family that raises stops the run: the
    families already running finish, none is started, and the error is
    raised here.
    """
    overrides = overrides or {}
    families = list(dict.fromkeys(families))
    for family in families:  # a mistyped --set fails now, not minutes into a worker
        make_producer(family, overrides.get(family))
    done: dict[str, list[RunResult]] = {}

    def finish(family: str, runs: list[RunResult]) -> None:
        done[family] = runs
        if on_done is not None:
            on_done(family, runs)

    if jobs <= 1:
        store = SnapshotStore(home)
        for family in (f for group in stages(families) for f in group):
            finish(family, produce(shop, family, cutoffs, store, overrides=overrides.get(family), replace=replace,
                                   keep_existing=True, warm_start=warm_start, progress=progress, log=log))
        return [(family, done[family]) for family in families]
    threads = max(1, cpu_count() // jobs)
    log(f"training {len(families)} families, {jobs} at a time ({threads} thread{'s' * (threads > 1)} each)")
    spawn = multiprocessing.get_context("spawn")
    # The workers' lines reach `log` here, as they happen (the CLI's output, a test's capture).
    lines = spawn.SimpleQueue()
    printer = threading.Thread(target=_relay, args=(lines, log), daemon=True)
    printer.start()
    try:
        with _thread_variables(threads), ProcessPoolExecutor(
                max_workers=jobs, mp_context=spawn, initializer=_start_worker, initargs=(shop, lines)) as pool:
            _run_stages(pool, families, cutoffs, home, overrides, replace, warm_start, threads, finish)
    finally:
        lines.put(None)
        printer.join()
    return [(family, done[family]) for family in families]


def _relay(lines, log) -> None:
    while (line := lines.get()) is not None:
        log(line)


def _run_stages(pool, families, cutoffs, home, overrides, replace, warm_start, threads, finish) -> None:
    """Each stage's families on the pool; the next stage starts when the previous one is done."""
    for group in stages(families):
        running: dict[Future, str] = {
            pool.submit(_produce_family, str(home), family, cutoffs, overrides.get(family), replace,
                        warm_start, threads): family
            for family in group}
        pending = set(running)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    wait(pending)
                    raise future.exception()
                finish(running[future], future.result())
