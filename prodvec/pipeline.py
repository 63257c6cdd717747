"""The whole job on one shop: produce -> validate -> promote -> Feast -> consumers.

`prodvec run` and `make demo` call `run_pipeline`; each step is also its own
CLI command for people who schedule them separately.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from prodvec.core import columns as C
from prodvec.core import feast_ops
from prodvec.consumers.returns import BASELINE, ORACLE, ReturnTask, evaluate_returns
from prodvec.core.embeddings import InsufficientData
from prodvec.core.training import RunResult
from prodvec.family_pool import run_families
from prodvec.core.shop.model import EVENTS, ORDERS, Shop
from prodvec.core.snapshots import SnapshotStore, latest_views
from prodvec.validation import shop_suite
from prodvec.validation.verdict import docs_root

BACKBONE_FAMILIES = ("text_dae", "clicks_bpr", "unified", "unified_concat", "unified_blend")


@dataclass(frozen=True)
class Schedule:
    """Retrain every `every_days`, the first time `first_days` after the shop opens.

    A retrain is only scheduled when something arrived since the previous one
    (a catalogue listed in yearly batches gets one per batch, not one a
    month). A catalogue without events or orders is trained once, at its end:
    nothing time-stamped reads its embeddings point-in-time, so earlier
    snapshots would only cost time. A shop younger than `first_days` also gets
    one snapshot, at its end, rather than none.
    """

    first_days: int = 28
    every_days: int = 28
    # The return model trains before and is scored after this many days.
    eval_days: int = 112

    def cutoffs(self, shop: Shop) -> list[pd.Timestamp]:
        if not (shop.has(EVENTS) or shop.has(ORDERS)):
            return [shop.end]
        start = shop.products[C.CREATED_AT].min().normalize()
        grid, day = [], self.first_days
        while start + pd.Timedelta(days=day) <= shop.end:
            grid.append(start + pd.Timedelta(days=day))
            day += self.every_days
        if not grid:
            return [shop.end]
        # Which grid interval each arrival falls in; an interval nobody arrived in trains nothing new.
        stamps = [shop.products[C.CREATED_AT]]
        stamps += [shop.events[C.TS]] if shop.has(EVENTS) else []
        stamps += [shop.orders[C.ORDERED_AT], shop.orders[C.RETURNED_AT].dropna()] if shop.has(ORDERS) else []
        utc = lambda t: t.tz_convert(None).to_numpy(dtype="datetime64[ns]")  # noqa: E731
        arrivals = np.unique(np.searchsorted(utc(pd.DatetimeIndex(grid)), utc(pd.concat(stamps).dt), side="left"))
        return [grid[i] for i in arrivals if i < len(grid)]

    def eval_cutoff(self, shop: Shop) -> pd.Timestamp:
        return shop.products["created_at"].min().normalize() + pd.Timedelta(days=self.eval_days)


@dataclass
class PipelineResult:
    runs: list[RunResult] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    returns: pd.DataFrame | None = None
    # The return task `returns` was scored on: the report reuses the frame for the same task.
    returns_task: ReturnTask | None = None
    table: pd.DataFrame | None = None
    seconds: float = 0.0


def skipped(runs: list[RunResult]) -> bool:
    """Whether a family skipped every cutoff (the shop lacks what it needs): nothing of it to promote or list."""
    return bool(runs) and all(r.skipped for r in runs)


def promote_passed(store: SnapshotStore, runs: list[RunResult], log=print) -> None:
    for run in runs:
        if run.ref is None:
            continue
        if run.kept:
            # A kept snapshot that was rolled back (or failed a re-validation) stays out; one that
            # passed but never got promoted (the last run died before promoting) is promoted now.
            ref = run.ref
            if (ref.tag in store.promoted(ref.family, ref.version) or ref.tag in store.withdrawn(ref.family, ref.version)
                    or not (run.validation and run.validation["success"])):
                continue
        if run.validation and run.validation["success"]:
            store.promote(run.ref)
        else:
            log(f"{run.ref.id}: NOT promoted (kept for inspection): {run.validation['summary']}")


def results_table(store: SnapshotStore, returns: pd.DataFrame | None) -> pd.DataFrame:
    """Family × (return AUC, isotropy, coverage, train seconds) from model cards and the consumer."""
    rows = []
    for family, view in latest_views(store).items():
        version = int(view.rsplit("_v", 1)[1])
        cards = [store.get(f"{family}/v{version}/{tag}").card() for tag in store.promoted(family, version)]
        metrics = cards[-1]["validation"]["metrics"]
        rows.append({"family": family, "isotropy": metrics["isotropy"],
                     "mean_cos": metrics["mean_pairwise_cosine"], "coverage": metrics["coverage"],
                     "train_s": float(np.mean([c["train_seconds"] for c in cards])), "snapshots": len(cards)})
    table = pd.DataFrame(rows).astype({"snapshots": "Int64"}) if rows else pd.DataFrame(rows)
    if returns is not None:
        table = returns[["family", "return_auc", "return_pr_auc"]].merge(table, on="family", how="left")
    return table


def run_pipeline(shop: Shop, home: Path, *, families=BACKBONE_FAMILIES, schedule: Schedule = Schedule(),
                 online: str = "sqlite", overrides: dict[str, dict] | None = None, replace: bool = False,
                 warm_start: bool = True, progress: bool = True, jobs: int = 1, log=print) -> PipelineResult:
    """The whole job; `jobs` > 1 trains that many families side by side (`prodvec.family_pool`)."""
    started = time.perf_counter()
    store = SnapshotStore(home)
    for note in store.recover():
        log(note)
    result = PipelineResult()
    cutoffs = schedule.cutoffs(shop)
    log(f"cutoffs: {', '.join(str(c.date()) for c in cutoffs)}")
    checks, _ = shop_suite.validate_shop(shop, docs_root(home))
    log(f"shop suite (Great Expectations): {shop_suite.summary(checks)}")

    def promote(family: str, runs: list[RunResult]) -> None:
        # As soon as a family is done: a run that dies later still serves what finished.
        if skipped(runs):
            log(runs[0].line())
        else:
            promote_passed(store, runs, log)

    stage = time.perf_counter()
    produced = run_families(shop, families, cutoffs, home, jobs=jobs, overrides=overrides, replace=replace,
                            warm_start=warm_start, progress=progress, log=log, on_done=promote)
    result.runs = [run for _, runs in produced if not skipped(runs) for run in runs]
    log(f"families: {len(produced)} done in {time.perf_counter() - stage:.0f}s")
    stage = time.perf_counter()
    fs = feast_ops.open_store(home, online)
    views = feast_ops.apply(fs, home)
    log(f"feast apply: {len(views)} feature views: {', '.join(views)} ({time.perf_counter() - stage:.0f}s)")
    stage = time.perf_counter()
    result.served = feast_ops.materialize(fs, home)
    log(f"feast materialize: {sum(result.served.values())} product rows online ({time.perf_counter() - stage:.0f}s)")
    if not shop.has(ORDERS):
        log("return model: skipped: needs orders, which this shop does not have")
    else:
        stage = time.perf_counter()
        task = ReturnTask(eval_cutoff=schedule.eval_cutoff(shop), train_from=cutoffs[0] if cutoffs else None)
        try:
            # Many small model fits: one thread each, as in the report (BLAS threads fighting over two
            # cores made this step 3x slower: 271 s against 91 s on the demo-full shop). OpenMP too: the
            # boosted trees open a short parallel region per node, and under the CLI's passive OpenMP
            # waits each one wakes a sleeping thread (the step took 68.7 s with two such threads against
            # 56.3 s with one, in a fresh process on the demo-full home; in `make demo-full` 86-99 s
            # before, 45-50 s after, with the content score's one pass over the rows). The families' fits
            # run in worker processes of one thread each (`evaluate_returns`' jobs): 35 s there.
            with threadpool_limits(1):
                result.returns = evaluate_returns(shop, fs, latest_views(store), task)
            result.returns_task = task
        except InsufficientData as reason:
            log(f"return model: skipped: {reason}")
        else:
            auc = result.returns.set_index("family")["return_auc"]
            embedded = auc.drop([BASELINE, ORACLE], errors="ignore")
            ceiling = f", oracle {auc[ORACLE]:.3f}" if ORACLE in auc else ""
            log(f"return model: AUC {auc.get(BASELINE, float('nan')):.3f} without embeddings, "
                f"best {embedded.idxmax()} {embedded.max():.3f}{ceiling} ({time.perf_counter() - stage:.0f}s)")
    result.table = results_table(store, result.returns)
    result.seconds = time.perf_counter() - started
    return result
