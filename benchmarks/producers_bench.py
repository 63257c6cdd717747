"""Producers at scale (issue 11): seconds per 10k products, BPR against `implicit`, text_dae on Myntra.

Every stage runs in its own child process, so its peak RSS is its own and not
the largest of everything before it. Time ratios against the smallest size are
the headline: a linear stage keeps `s_per_10k` flat as the catalogue grows.

    .venv/bin/python benchmarks/producers_bench.py [--sizes 10000,100000] [--big] [--families a,b]
        [--work DIR] [--stage-timeout S] [--myntra SHOP_DIR]

Every registered family is timed by default, backbones first, then the fusions
(which read the backbones' snapshots in the same home). Each family at each size
is its own child, so one slow family neither blocks nor inflates the others;
`--stage-timeout` records a stage that runs past it as timed out and goes on.
`--work DIR` keeps the generated shops, the homes and every stage's result
(DIR/results/*.json) and reuses them on the next run, so a 100k shop is
generated once and an interrupted run resumes. `--big` adds 1,000,000 products.
`--myntra` takes a shop imported with `prodvec import myntra ../shared/data/myntra SHOP_DIR`.

To see what dominates one family at one size (the shop and home of a kept --work):

    .venv/bin/python benchmarks/producers_bench.py --stage profile WORK/shop100000 WORK/home100000 FAMILY OUT.prof
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


# --------------------------------------------------------------------------- child stages
def _generate(shop_dir: str, n: str) -> dict:
    from prodvec.generator import GeneratorConfig, generate_shop

    summary = generate_shop(Path(shop_dir), Path(shop_dir + "-truth"), GeneratorConfig(n_products=int(n)), progress=False)
    return {"events": int(summary["events"])}


def _produce(shop_dir: str, home: str, family: str, overrides: str = "{}") -> dict:
    from prodvec.core.shop.loader import load_shop
    from prodvec.core.snapshots import SnapshotStore
    from prodvec.jobs import produce

    shop = load_shop(Path(shop_dir), log=lambda m: None)
    started, cpu = time.perf_counter(), _cpu_seconds()
    # Validated, so the fusions after it find their modalities served; the gate's cost is part of the
    # family's (wall_s - train_s). replace=True: a rerun in a kept --work home trains again.
    runs = produce(shop, family, [shop.end], SnapshotStore(Path(home)), overrides=json.loads(overrides) or None,
                   replace=True, progress=False, log=lambda m: None)
    run = runs[0]
    return {"wall_s": time.perf_counter() - started, "train_s": run.seconds, "cpu_s": _cpu_seconds() - cpu,
            "passed": bool(run.validation and run.validation.get("success")), "skipped": run.skipped}


def _profile(shop_dir: str, home: str, family: str, out: str, overrides: str = "{}") -> dict:
    """`_produce` under cProfile, the stats written to OUT (read them with `python -m pstats OUT`): what
    dominates a family at one size, to put beside the same at another."""
    import cProfile

    profiler = cProfile.Profile()
    result = profiler.runcall(_produce, shop_dir, home, family, overrides)
    profiler.dump_stats(out)
    return result


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) and of any children it waited for
    (a worker pool some library starts), the number that other load on the machine does not inflate."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


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
            # Its input from the same events the producer reads, on the clock: a producer built on implicit
            # would derive its user-product matrix from the shop too (the pairs, 0.06 s of a 0.3 s run here,
            # were once taken outside the clock, which compared the producer's whole job with half of
            # implicit's).
            pair_users, pair_products, _, pair_ids = interaction_pairs(train_shop, 1)
            matrix = sparse.csr_matrix((np.ones(len(pair_users), np.float32), (pair_users, pair_products)),
                                       shape=(pair_users.max() + 1, len(pair_ids)))
            model = BayesianPersonalizedRanking(factors=64, iterations=25, num_threads=int(threads), random_state=0)
            model.fit(matrix, show_progress=False)
            vectors = np.zeros((len(product_ids), 64), np.float32)
            vectors[pd.Index(product_ids).get_indexer(pair_ids)] = model.item_factors[:, :64]
        else:
            producer = ClicksBPR(BPRConfig(threads=int(threads)))
            emb = producer.train(train_shop, TrainContext(cutoff=shop.end, progress=False))
            vectors = np.zeros((len(product_ids), emb.dim), np.float32)
            vectors[pd.Index(product_ids).get_indexer(emb.ids)] = emb.vectors
        runs.append((time.perf_counter() - started, time.process_time() - cpu))
    seconds, cpu = min(runs)
    # The pairs each side trained on: implicit's matrix entries; the producer's own reading of the events.
    trained = matrix.nnz if which == "implicit" else len(interaction_pairs(train_shop, 1)[0])
    return {"pairs": int(train.sum()), "trained_pairs": int(trained), "products": len(product_ids),
            "threads": int(threads), "repeat": int(repeat),
            "wall_s": seconds, "cpu_s": cpu, "median_wall_s": float(np.median([r[0] for r in runs])),
            "auc": held_out_auc(vectors, users, products, train)}


STAGES = {"generate": _generate, "produce": _produce, "profile": _profile, "bpr": _bpr}


def child(stage: str, *args: str, timeout: float | None = None) -> dict:
    """Run one stage in a fresh interpreter; its result plus wall seconds, CPU seconds (user + sys of the
    whole child, its imports and shop loading included) and peak RSS. A stage past `timeout` seconds is
    killed and its result says so (`timed_out`), so one slow family does not hold up the rest."""
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run([sys.executable, __file__, "--stage", stage, *args], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        out = None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    usage = {"child_wall_s": time.perf_counter() - started,
             "child_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}
    if out is None:
        return {"timed_out": True, **usage}
    if out.returncode != 0:
        raise RuntimeError(f"stage {stage} {args} failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), **usage}


def cached_child(results: Path, name: str, stage: str, *args: str, timeout: float | None = None,
                 kept_only: bool = False, log=print) -> dict:
    """`child`, its result kept as RESULTS/NAME.json and read back instead of rerun when present
    (a timed-out stage is tried again). `kept_only`: never run, {"not_run": True} when nothing is kept."""
    path = results / f"{name}.json"
    if path.exists():
        result = json.loads(path.read_text())
        if not result.get("timed_out") or kept_only:
            log(f"{name}: kept result {path}")
            return result
    if kept_only:
        return {"not_run": True}
    log(f"{name}: running")
    result = child(stage, *args, timeout=timeout)
    results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    log(f"{name}: {json.dumps(result)}")
    return result


# --------------------------------------------------------------------------- parent
def _note(result: dict) -> str:
    """Why a produce stage's time may not be a full training: skipped, or its snapshot failed the gate."""
    if result.get("skipped"):
        return f"skipped: {result['skipped']}"
    return "" if result.get("passed", True) else "failed the gate"


def run(sizes: list[int], work: Path, families=None, myntra: Path | None = None, *,
        stage_timeout: float | None = None, bpr: bool = True, overrides: dict[str, dict] | None = None,
        kept_only: bool = False, bpr_repeat: int = 5, log=print) -> dict:
    """Generate a shop per size (once per `work`), then produce each family on it in its own child.

    `families` defaults to every registered one; fusions are moved after the backbones whatever the order
    given, since they read the backbones' snapshots from the same home. `overrides`: family -> {parameter:
    value} (e.g. fewer epochs, to probe a costly family's growth cheaply; the stage results kept in `work`
    do not record them, so give such a run its own `work`).
    """
    from prodvec.producers import all_families, is_fusion

    families = list(all_families() if families is None else families)
    families = [f for f in families if not is_fusion(f)] + [f for f in families if is_fusion(f)]
    results, rows, bpr_rows = work / "results", [], []
    for n in sizes:
        shop = str(work / f"shop{n}")
        gen = cached_child(results, f"generate-{n}", "generate", shop, str(n), kept_only=kept_only, log=log)
        if gen.get("not_run"):
            continue
        rows.append({"stage": "generate", "products": n, "wall_s": gen["child_wall_s"], "cpu_s": gen["child_cpu_s"],
                     "peak_rss_mb": gen["peak_rss_mb"]})
        for family in families:
            res = cached_child(results, f"{family}-{n}", "produce", shop, str(work / f"home{n}"), family,
                               json.dumps((overrides or {}).get(family, {})), timeout=stage_timeout,
                               kept_only=kept_only, log=log)
            if res.get("not_run"):
                continue
            if res.get("timed_out"):
                rows.append({"stage": family, "products": n, "note": f"timed out after {res['child_wall_s']:.0f} s"})
                continue
            rows.append({"stage": family, "products": n, "wall_s": res["wall_s"], "train_s": res["train_s"],
                         "cpu_s": res["cpu_s"], "peak_rss_mb": res["peak_rss_mb"],
                         "note": _note(res)})
    if bpr:
        bpr_shop = str(work / f"shop{sizes[0]}")
        for threads in (1, 2):
            for which in ("implicit", "producer"):
                bpr_rows.append({"which": which, **child("bpr", bpr_shop, str(threads), which, str(bpr_repeat))})
    if myntra is not None:
        res = child("produce", str(myntra), str(work / "home-myntra"), "text_dae")
        rows.append({"stage": "text_dae (Myntra)", "products": int(pd.read_parquet(Path(myntra) / "products.parquet",
                     columns=["product_id"]).shape[0]), "wall_s": res["wall_s"], "train_s": res["train_s"],
                     "cpu_s": res["cpu_s"], "peak_rss_mb": res["peak_rss_mb"]})
    return {"scale": rows, "bpr": bpr_rows, "load_average": os.getloadavg()}


def scale_table(rows: list[dict]) -> pd.DataFrame:
    """The per-stage rows with seconds per 10k products and their ratio to the smallest size."""
    scale = pd.DataFrame(rows)
    for col in ("wall_s", "cpu_s"):
        per = scale[col] / scale["products"] * 10_000
        scale[col.replace("_s", "_per_10k")] = per
        # The smallest size each stage finished at is its reference (a timed-out row has NaN).
        first = per.groupby(scale["stage"]).transform(lambda v: v.dropna().iloc[0] if v.notna().any() else np.nan)
        scale[col.replace("_s", "_×smallest")] = per / first
    order = ["stage", "products", "wall_s", "train_s", "cpu_s", "wall_per_10k", "cpu_per_10k", "wall_×smallest",
             "cpu_×smallest", "peak_rss_mb", "note"]
    return scale[[c for c in order if c in scale]]


def section(result: dict) -> list[str]:
    """Markdown lines for reports/bench.md."""
    scale = scale_table(result["scale"])
    lines = ["## Producers at scale", "",
             "seconds per 10k products (a linear stage keeps the ratio near 1 as the catalogue grows). "
             "wall_s = the family's produce call (training + the validation gate; generate: the whole child), "
             "train_s = training alone; cpu_s = user + sys CPU seconds of that call (all threads; generate: the "
             "whole child), the figure other load on the machine does not inflate; ×smallest = per-10k ratio to "
             "the smallest size; peak RSS of the stage's own process. Load average at the end: "
             + " ".join(f"{v:.2f}" for v in result.get("load_average", ())), "",
             scale.round(3).to_string(index=False, na_rep=""), ""]
    if result["bpr"]:
        bpr = pd.DataFrame(result["bpr"])
        bpr["wall ×implicit"] = bpr["wall_s"] / bpr.groupby("threads")["wall_s"].transform("first")
        lines += ["BPR: bare implicit vs the clicks_bpr producer, same interactions (one positive per user held out), "
                  "same threads; wall_s, cpu_s: the fastest of `repeat` runs in one process; AUC = held-out product against every unchosen one, user = mean of its training "
                  "products", "", bpr.round(3).to_string(index=False), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--big", action="store_true", help="add 1,000,000 products")
    parser.add_argument("--families", help="comma-separated families (default: every registered one)")
    parser.add_argument("--work", type=Path, help="keep shops, homes and stage results here and reuse them")
    parser.add_argument("--stage-timeout", type=float, help="seconds after which a family's stage is recorded "
                        "as timed out")
    parser.add_argument("--no-bpr", action="store_true", help="skip the clicks_bpr vs implicit comparison")
    parser.add_argument("--kept-only", action="store_true", help="run nothing: the table of the stage results "
                        "kept in --work (a stage without one is left out)")
    parser.add_argument("--set", action="append", default=[], metavar="FAMILY.KEY=VALUE",
                        help="a producer parameter for this run (repeatable), as `prodvec run --set`")
    parser.add_argument("--myntra", type=Path, help="a shop imported from Myntra (prodvec import myntra ...)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench.md"))
    args, rest = parser.parse_known_args()
    if args.stage:
        result = STAGES[args.stage](*rest)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.big else [])
    families = args.families.split(",") if args.families else None
    if families:
        from prodvec.producers import producer_class

        for family in families:
            producer_class(family)  # an unknown name fails here, not after an hour of the others
    overrides: dict[str, dict] = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        family, dot, name = key.partition(".")
        if not (eq and dot and family and name):
            parser.error(f"--set expects FAMILY.KEY=VALUE, got {item!r}")
        overrides.setdefault(family, {})[name] = value
    if overrides:
        from prodvec.producers import make_producer

        for family, values in overrides.items():
            make_producer(family, values)  # unknown family or parameter, or a bad value: fail before any stage
    if args.kept_only and not args.work:
        parser.error("--kept-only reads the results kept in --work")
    kwargs = dict(stage_timeout=args.stage_timeout, bpr=not args.no_bpr and not args.kept_only,
                  overrides=overrides, kept_only=args.kept_only)
    if args.work:
        result = run(sizes, args.work, families, args.myntra, **kwargs)
    else:
        with tempfile.TemporaryDirectory(prefix="prodvec-producers-bench-") as work:
            result = run(sizes, Path(work), families, args.myntra, **kwargs)
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
