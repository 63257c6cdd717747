"""`make bench`: how cost grows with shop size, measured against the smallest run.

Every row is timed in this one command and reported as a ratio to the
reference (the smallest size), so the numbers compare on any machine. Linear
cost shows as a time ratio close to the size ratio.

    .venv/bin/python benchmarks/run.py [--sizes 1000,4000,16000] [--out reports/bench.md] [--no-feast | --large]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core.embeddings import Embeddings
from prodvec.jobs import produce
from prodvec.generator import GeneratorConfig, generate_shop
from prodvec.core.shop.loader import load_shop
from prodvec.core.snapshots import SnapshotStore
from prodvec.validation import validate_embeddings

import feast_bench  # benchmarks/ is on sys.path when this file runs as a script


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def bench_size(n_products: int, work: Path) -> dict:
    shop_dir, truth = work / f"shop{n_products}", work / f"truth{n_products}"
    summary, generate_s = timed(generate_shop, shop_dir, truth, GeneratorConfig(n_products=n_products), progress=False)
    shop, load_s = timed(load_shop, shop_dir, log=lambda m: None)
    store = SnapshotStore(work / f"home{n_products}")
    cutoff = [shop.end]
    row = {"products": n_products, "events": summary["events"], "generate_s": generate_s, "load_s": load_s}
    for family in ("text_dae", "clicks_bpr", "unified"):
        runs, seconds = timed(produce, shop, family, cutoff, store, validate=True, progress=False, log=lambda m: None)
        row[f"{family}_s"] = runs[0].seconds
    rng = np.random.default_rng(0)
    emb = Embeddings(np.array([f"P{i:08d}" for i in range(n_products * 25)]),
                     rng.normal(size=(n_products * 25, 64)).astype(np.float32))
    _, row["write_100k_rows_s"] = timed(store.write, "bench", 1, pd.Timestamp("2025-01-01", tz="UTC"), emb, {})
    _, row["validate_100k_rows_s"] = timed(validate_embeddings, emb, catalog_ids=emb.ids, expected_dim=64)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000,16000", help="comma-separated n_products; the first is the reference")
    parser.add_argument("--out", type=Path, default=Path("reports/bench.md"))
    parser.add_argument("--no-serving", action="store_true", help="skip the 1M-vector index and Redis load runs")
    parser.add_argument("--no-feast", action="store_true", help="skip the Feast plugin benchmark (feast_bench.py)")
    feast_bench.add_arguments(parser)
    parser.add_argument("--producer-sizes", default="10000,100000",
                        help="sizes for the producers-at-scale section (producers_bench.py); empty to skip")
    # Every registered family at 100k is hours of CPU (sasrec and mrnet ~300 CPU s each at 10k alone): the
    # default times make demo's families and the cheapest clickstream one; `all` times every one.
    parser.add_argument("--producer-families", default="text_dae,clicks_bpr,prod2vec,unified,unified_concat",
                        help="comma-separated families for that section, or 'all' (every registered one)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="prodvec-bench-"))
    try:
        validate_embeddings(Embeddings(np.array(["a", "b", "c"]), np.eye(3, 4)), catalog_ids=np.array(["a", "b", "c"]),
                            expected_dim=4)  # pay the Great Expectations import outside the timings
        import torch  # noqa: F401  (and torch's, which the first producer would otherwise carry)
        rows = [bench_size(n, work) for n in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = pd.DataFrame(rows).set_index("products")
    # The write/validate columns use 25 rows per product, relabelled for readability.
    table = table.rename(columns={"write_100k_rows_s": "write_25xN_rows_s", "validate_100k_rows_s": "validate_25xN_rows_s"})
    ratios = table.div(table.iloc[0]).add_suffix(" ×ref")
    lines = ["# prodvec benchmark", "", f"reference: {sizes[0]} products (ratios are against it)", "",
             table.round(2).to_string(), "", ratios.round(2).to_string(), ""]
    if not args.no_serving:  # serving: the neighbour index at 1M x 64 and Redis under load (issue 15)
        import ann_bench
        import online_load_bench

        lines += ["", *ann_bench.run(), "", *online_load_bench.run()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    if args.producer_sizes:  # issue 11: producers at scale, BPR vs implicit (child processes)
        import producers_bench

        with tempfile.TemporaryDirectory(prefix="prodvec-producers-bench-") as producer_work:
            families = None if args.producer_families == "all" else args.producer_families.split(",")
            producers_bench.write(producers_bench.run([int(s) for s in args.producer_sizes.split(",")],
                                                      Path(producer_work), families), args.out)
    print(f"written to {args.out}")
    if not args.no_feast:
        # The plugin against Feast's engine and the bare stores: its own section of bench.md / bench.json.
        feast_bench.run(args, args.out, args.out.with_suffix(".json"), "python benchmarks/run.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
