"""The pipeline's return step on a finished home: seconds, CPU and every family's AUC.

Runs `consumers.returns.evaluate_returns` on the newest served view of every
family, as `prodvec run` does after training (same task, same threads: one
BLAS/OpenMP thread per process, `--jobs` worker processes). It rewrites the
home's user-profile tables and Feast registry: use a copy of a home.

    cp -r workspace /tmp/home && /usr/bin/time -v .venv/bin/python benchmarks/return_step.py /tmp/home [--jobs 1]

`/usr/bin/time -v` adds the peak RSS of this process (the workers are
separate processes). Run it with `OMP_WAIT_POLICY=PASSIVE`, as the CLI sets
it, to time what `prodvec run` does.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes [default: one per core]")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    from prodvec.consumers.returns import ReturnTask, evaluate_returns
    from prodvec.core import feast_ops
    from prodvec.core.shop import load_shop
    from prodvec.core.snapshots import SnapshotStore, latest_views
    from prodvec.pipeline import Schedule

    shop = load_shop(f"{args.home}/shop", log=lambda *_: None)
    views = latest_views(SnapshotStore(args.home))
    fs = feast_ops.open_store(args.home, "sqlite")
    schedule = Schedule()
    task = ReturnTask(eval_cutoff=schedule.eval_cutoff(shop), train_from=schedule.cutoffs(shop)[0])
    wall, cpu = time.perf_counter(), time.process_time()
    with threadpool_limits(1):
        table = evaluate_returns(shop, fs, views, task, jobs=args.jobs)
    print(f"return step: {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU in this "
          f"process, {len(views)} families")
    print(table[["family", "return_auc", "return_pr_auc"]].round(6).to_string(index=False))


if __name__ == "__main__":
    main()
