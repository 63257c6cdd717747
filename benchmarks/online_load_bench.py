"""`make bench` part: Redis online store under load while a new snapshot is materialized (long version).

16 loopback clients, a fixed number of requests each (1 and 100 products
alternately), bounded in time; a real redis-server on 127.0.0.1. The short
version with the same checks runs in `make test` (tests/test_online_load.py).

    .venv/bin/python benchmarks/online_load_bench.py [--products 20000] [--requests 200]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.consumers.online_load import redis_server, run_load
from prodvec.core import feast_ops
from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import SnapshotStore


def run(products: int = 20_000, requests: int = 200, clients: int = 16, max_seconds: float = 300.0,
        log=print) -> list[str]:
    if shutil.which("redis-server") is None:
        return ["## Redis under load", "", "skipped: redis-server is not installed (make test installs it)", ""]
    home = Path(tempfile.mkdtemp(prefix="prodvec-load-"))
    try:
        store = SnapshotStore(home)
        ids = np.array([f"P{i:07d}" for i in range(products)])
        refs = []
        for cutoff, seed in (("2025-02-01", 1), ("2025-03-01", 2)):
            vectors = np.random.default_rng(seed).standard_normal((products, 64)).astype(np.float32)
            ref = store.write("fam", 1, pd.Timestamp(cutoff, tz="UTC"), Embeddings(ids, vectors), {})
            store.update_card(ref, validation={"success": True, "summary": "bench"})
            refs.append(ref)
        store.promote(refs[0])
        with redis_server() as url:
            fs = feast_ops.open_store(home, url)
            feast_ops.apply(fs, home)
            feast_ops.materialize(fs, home)
            result = run_load(home, url, "product_fam_v1", refs[0], refs[1], clients=clients,
                              requests_per_client=requests, max_seconds=max_seconds)
        lines = [f"## Redis under load: {clients} clients x {requests} requests, {products:,} products x 64, "
                 "a new snapshot materialized meanwhile", "", *result.lines(), ""]
        if result.failures or result.mixes:
            lines.append(f"FAILED: {(result.failures + result.mixes)[:5]}")
        log("\n".join(lines))
        return lines
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("reports/bench_online_load.md"))
    args = parser.parse_args()
    lines = run(args.products, args.requests, log=lambda *_: None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
