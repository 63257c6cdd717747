"""Producers at scale (issue 11): seconds per 10k products, BPR against `implicit`, text_dae on Myntra.

Every stage runs in its own child process, so its peak RSS is its own and not
the largest of everything before it. Time ratios against the smallest size are
the headline: a linear stage keeps `s_per_10k` flat as the catalogue grows.

    .venv/bin/python benchmarks/producers_bench.py [--sizes 10000,100000] [--big] [--myntra SHOP_DIR]

`--big` adds 1,000,000 products. `--myntra` takes a shop imported with
`prodvec import myntra ../shared/data/myntra SHOP_DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Before numpy, implicit or numba load OpenMP: waiting threads sleep, as in `prodvec` (cli.py sets the same), so
# the timings are those of the pipeline; spinning threads also starve each other on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

FAMILIES = ("text_dae", "clicks_bpr", "unified", "unified_concat")


# --------------------------------------------------------------------------- child stages
def _generate(shop_dir: str, n: str) -> dict:
    from prodvec.generator import GeneratorConfig, generate_shop

    summary = generate_shop(Path(shop_dir), Path(shop_dir + "-truth"), GeneratorConfig(n_products=int(n)), progress=False)
    return {"events": int(summary["events"])}


def _produce(shop_dir: str, home: str, family: str) -> dict:
    from prodvec.core.shop.loader import load_shop
    from prodvec.core.snapshots import SnapshotStore
    from prodvec.jobs import produce

    shop = load_shop(Path(shop_dir), log=lambda m: None)
    cpu = time.process_time()
    # Validated, so the fusions after it find their modalities served.
    runs = produce(shop, family, [shop.end], SnapshotStore(Path(home)), progress=False, log=lambda m: None)
    return {"train_s": runs[0].seconds, "cpu_s": time.process_time() - cpu}


def held_out_split(users: np.ndarray, seed: int = 0) -> np.ndarray:
    """Boolean mask of training pairs: one random positive per user with two or more is held out."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(users))
    first = pd.Series(order).groupby(users[order]).first()
    counts = np.bincount(users)
    train = np.ones(len(users), dtype=bool)
    train[first[counts[first.index] >= 2].to_numpy()] = False
    return train


def held_out_auc(vectors: np.ndarray, users: np.ndarray, products: np.ndarray, train: np.ndarray) -> float:
    """Mean per-user AUC of the held-out product against every product the user never chose in
    training, the user scored as the mean of their training products' vectors."""
    from scipy import sparse

    seen = sparse.csr_matrix((np.ones(train.sum()), (users[train], products[train])),
                             shape=(users.max() + 1, len(vectors)))
    profile = (seen @ vectors) / np.maximum(np.asarray(seen.sum(1)).ravel(), 1)[:, None]
    hu, hp = users[~train], products[~train]
    aucs = []
    for s in range(0, len(hu), 2048):
        u, p = hu[s : s + 2048], hp[s : s + 2048]
        scores = profile[u] @ vectors.T
        negative = seen[u].toarray() == 0
        negative[np.arange(len(u)), p] = False
        aucs.append(((scores < scores[np.arange(len(u)), p][:, None]) & negative).sum(1) / negative.sum(1))
    return float(np.concatenate(aucs).mean())


def _bpr(shop_dir: str, threads: str, which: str, repeat: str = "1") -> dict:
    """One BPR on the shop's positives less one held-out pair per user: the producer or bare implicit, on
    `threads` threads, trained `repeat` times in this process; the fastest run's wall and CPU seconds (a
    sub-second run on a shared machine is mostly noise: the minimum is the run least disturbed)."""
    import dataclasses

    import numba
    from scipy import sparse

    from prodvec.core import columns as C
    from prodvec.core.producer import TrainContext
    from prodvec.core.shop.loader import load_shop
    from prodvec.producers.bpr import EVENT_WEIGHTS, BPRConfig, ClicksBPR, interaction_pairs

    shop = load_shop(Path(shop_dir), log=lambda m: None)
    users, products, _, product_ids = interaction_pairs(shop, 1)
    train = held_out_split(users)
    # The producer reads events: keep only those of training pairs, so both see the same interactions.
    events = shop.events[shop.events[C.EVENT_TYPE].isin(list(EVENT_WEIGHTS))]
    user_index = pd.Index(np.sort(events[C.USER_ID].unique()))
    pair = user_index.get_indexer(events[C.USER_ID]).astype(np.int64) * len(product_ids) + \
        pd.Index(product_ids).get_indexer(events[C.PRODUCT_ID])
    held = users[~train].astype(np.int64) * len(product_ids) + products[~train]
    train_shop = dataclasses.replace(shop, events=events[~np.isin(pair, held)])
    # Both sides loaded before the clock starts: implicit, and the producer's compiled kernel (numba's import
    # and the cached machine code, ~0.5 s idle), which a pipeline loads once for every cutoff.
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    from prodvec.producers.bpr import load_kernel

    # The producer's kernel runs on numba's threads (a family-pool worker sets them through NUMBA_NUM_THREADS).
    numba.set_num_threads(int(threads))
    load_kernel()
    runs = []
    for _ in range(int(repeat)):
        started, cpu = time.perf_counter(), time.process_time()
        if which == "implicit":
            matrix = sparse.csr_matrix((np.ones(train.sum(), np.float32), (users[train], products[train])),
                                       shape=(users.max() + 1, len(product_ids)))
            model = BayesianPersonalizedRanking(factors=64, iterations=25, num_threads=int(threads), random_state=0)
            model.fit(matrix, show_progress=False)
            vectors = model.item_factors[:, :64]
        else:
            emb = ClicksBPR(BPRConfig()).train(train_shop, TrainContext(cutoff=shop.end, progress=False))
            vectors = np.zeros((len(product_ids), emb.dim), np.float32)
            vectors[pd.Index(product_ids).get_indexer(emb.ids)] = emb.vectors
        runs.append((time.perf_counter() - started, time.process_time() - cpu))
    seconds, cpu = min(runs)
    return {"pairs": int(train.sum()), "products": len(product_ids), "threads": int(threads), "repeat": int(repeat),
            "wall_s": seconds, "cpu_s": cpu, "median_wall_s": float(np.median([r[0] for r in runs])),
            "auc": held_out_auc(vectors, users, products, train)}


STAGES = {"generate": _generate, "produce": _produce, "bpr": _bpr}


def child(stage: str, *args: str) -> dict:
    """Run one stage in a fresh interpreter; its result plus wall seconds and peak RSS."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--stage", stage, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"stage {stage} {args} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["child_wall_s"] = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- parent
def run(sizes: list[int], work: Path, families=FAMILIES, myntra: Path | None = None, bpr_repeat: int = 5) -> dict:
    rows, bpr_rows = [], []
    for n in sizes:
        shop = str(work / f"shop{n}")
        gen = child("generate", shop, str(n))
        rows.append({"stage": "generate", "products": n, "seconds": gen["child_wall_s"], "peak_rss_mb": gen["peak_rss_mb"]})
        for family in families:
            res = child("produce", shop, str(work / f"home{n}"), family)
            rows.append({"stage": family, "products": n, "seconds": res["train_s"], "cpu_s": res["cpu_s"],
                         "peak_rss_mb": res["peak_rss_mb"]})
    bpr_shop = str(work / f"shop{sizes[0]}")
    for threads in (1, 2):
        for which in ("implicit", "producer"):
            bpr_rows.append({"which": which, **child("bpr", bpr_shop, str(threads), which, str(bpr_repeat))})
    if myntra is not None:
        res = child("produce", str(myntra), str(work / "home-myntra"), "text_dae")
        rows.append({"stage": "text_dae (Myntra)", "products": int(pd.read_parquet(Path(myntra) / "products.parquet",
                     columns=["product_id"]).shape[0]), "seconds": res["train_s"], "cpu_s": res["cpu_s"], "peak_rss_mb": res["peak_rss_mb"]})
    return {"scale": rows, "bpr": bpr_rows}


def section(result: dict) -> list[str]:
    """Markdown lines for reports/bench.md."""
    scale = pd.DataFrame(result["scale"])
    scale["s_per_10k"] = scale["seconds"] / scale["products"] * 10_000
    first = scale.groupby("stage")["s_per_10k"].transform("first")
    scale["s_per_10k ×smallest"] = scale["s_per_10k"] / first
    bpr = pd.DataFrame(result["bpr"])
    bpr["wall ×implicit"] = bpr["wall_s"] / bpr.groupby("threads")["wall_s"].transform("first")
    return ["## Producers at scale", "",
            "seconds per 10k products (a linear stage keeps the ratio near 1 as the catalogue grows); "
            "seconds = training wall time (generate: the whole child); cpu_s = the child's CPU time "
            "(validation included); peak RSS of the stage's own process", "",
            scale.round(3).to_string(index=False), "",
            "BPR: bare implicit vs the clicks_bpr producer, same interactions (one positive per user held out), "
            "same threads; wall_s, cpu_s: the fastest of `repeat` runs in one process; AUC = held-out product against every unchosen one, user = mean of its training products", "",
            bpr.round(3).to_string(index=False), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--big", action="store_true", help="add 1,000,000 products")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--myntra", type=Path, help="a shop imported from Myntra (prodvec import myntra ...)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench.md"))
    args, rest = parser.parse_known_args()
    if args.stage:
        result = STAGES[args.stage](*rest)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.big else [])
    with tempfile.TemporaryDirectory(prefix="prodvec-producers-bench-") as work:
        result = run(sizes, Path(work), tuple(args.families.split(",")), args.myntra)
    write(result, args.out)


def write(result: dict, out: Path) -> None:
    """Append the section to OUT (markdown) and put the raw numbers under "producers" in OUT's .json."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = section(result)
    with out.open("a") as fh:
        fh.write("\n" + "\n".join(lines))
    json_path = out.with_suffix(".json")
    data = json.loads(json_path.read_text()) if json_path.exists() else {}
    data["producers"] = result
    json_path.write_text(json.dumps(data, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
