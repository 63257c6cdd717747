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

from prodvec import feast_ops
from prodvec.consumers.returns import BASELINE, ReturnTask, evaluate_returns
from prodvec.producers.run import RunResult, produce
from prodvec.shop.model import Shop
from prodvec.snapshots import SnapshotStore, view_name

BACKBONE_FAMILIES = ("text_dae", "clicks_bpr", "unified")


def all_families() -> tuple[str, ...]:
    """Every registered producer, fusions last: they read the others' snapshots."""
    from prodvec.producers import PRODUCERS
    from prodvec.producers.fusion import FUSIONS

    return tuple([f for f in PRODUCERS if f not in FUSIONS] + [f for f in PRODUCERS if f in FUSIONS])


@dataclass(frozen=True)
class Schedule:
    """Retrain every `every_days`, the first time `first_days` after the shop opens."""

    first_days: int = 28
    every_days: int = 28
    # The return model trains before and is scored after this many days.
    eval_days: int = 112

    def cutoffs(self, shop: Shop) -> list[pd.Timestamp]:
        start = shop.products["created_at"].min().normalize()
        out, day = [], self.first_days
        while start + pd.Timedelta(days=day) <= shop.end:
            out.append(start + pd.Timedelta(days=day))
            day += self.every_days
        return out

    def eval_cutoff(self, shop: Shop) -> pd.Timestamp:
        return shop.products["created_at"].min().normalize() + pd.Timedelta(days=self.eval_days)


@dataclass
class PipelineResult:
    runs: list[RunResult] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    returns: pd.DataFrame | None = None
    table: pd.DataFrame | None = None
    seconds: float = 0.0


def promote_passed(store: SnapshotStore, runs: list[RunResult], log=print) -> None:
    for run in runs:
        if run.ref is None:
            continue
        if run.validation and run.validation["success"]:
            store.promote(run.ref)
        else:
            log(f"{run.ref.id}: NOT promoted (kept for inspection): {run.validation['summary']}")


def latest_views(store: SnapshotStore) -> dict[str, str]:
    """family -> feature view of its newest served version."""
    views = {}
    for family, version, _ in store.served_versions():
        views[family] = view_name(family, version)
    return views


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
                 progress: bool = True, log=print) -> PipelineResult:
    started = time.perf_counter()
    store = SnapshotStore(home)
    store.clean_temporary()
    result = PipelineResult()
    cutoffs = schedule.cutoffs(shop)
    log(f"cutoffs: {', '.join(str(c.date()) for c in cutoffs)}")
    for family in families:
        runs = produce(shop, family, cutoffs, store, overrides=(overrides or {}).get(family), replace=replace,
                       progress=progress, log=log)
        if runs and runs[0].skipped:
            log(runs[0].line())
            continue
        promote_passed(store, runs, log)
        result.runs += runs
    fs = feast_ops.open_store(home, online)
    views = feast_ops.apply(fs, home)
    log(f"feast apply: {len(views)} feature views: {', '.join(views)}")
    result.served = feast_ops.materialize(fs, home)
    log(f"feast materialize: {sum(result.served.values())} product rows online")
    if shop.has("orders"):
        task = ReturnTask(eval_cutoff=schedule.eval_cutoff(shop), train_from=cutoffs[0] if cutoffs else None)
        result.returns = evaluate_returns(shop, fs, latest_views(store), task)
        auc = result.returns.set_index("family")["return_auc"]
        log(f"return model: AUC {auc.get(BASELINE, float('nan')):.3f} without embeddings, "
            f"best {auc.drop(BASELINE).idxmax()} {auc.drop(BASELINE).max():.3f}")
    result.table = results_table(store, result.returns)
    result.seconds = time.perf_counter() - started
    return result
