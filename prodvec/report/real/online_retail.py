"""Online Retail in the real-data report: `run_pipeline` with the backbone families and the cancellation
(return) model through Feast, its data size stated beside the number, or why there is none."""

from __future__ import annotations

from pathlib import Path

from prodvec.core import columns as C
from prodvec.report.output import records
from prodvec.report.real.common import (RETAIL, DatasetOutcome, RealConfig, flags, fresh_home, import_sample,
                                        pipeline_lines)
from prodvec.report.render import Section, no_flags

RETAIL_FILE = "online_retail.csv"
RETAIL_FAMILIES = ("text_dae", "clicks_bpr", "unified")


def run(source: Path, work: Path, plots: Path, config: RealConfig, log=print) -> DatasetOutcome:
    """Invoices (`source`/online_retail.csv) -> backbone families through the pipeline -> cancellation (return)
    AUC through Feast."""
    from prodvec.consumers.returns import ReturnTask, split_orders
    from prodvec.core.snapshots import SnapshotStore
    from prodvec.family_pool import default_jobs
    from prodvec.pipeline import Schedule, results_table, run_pipeline

    shop = import_sample("online-retail", source / RETAIL_FILE, work / "retail", log)
    schedule = Schedule(config.retail_first_days, config.retail_every_days, config.retail_eval_days)
    home = fresh_home(work / "retail_home")
    result = run_pipeline(shop, home, families=RETAIL_FAMILIES, schedule=schedule, overrides=config.retail_overrides,
                          progress=False, jobs=default_jobs(RETAIL_FAMILIES), log=log)
    cutoffs = schedule.cutoffs(shop)
    task = ReturnTask(eval_cutoff=schedule.eval_cutoff(shop), train_from=cutoffs[0] if cutoffs else None)
    train, test = split_orders(shop, task)
    orders = shop.orders
    size = (f"{len(orders):,} order lines in {orders[C.ORDER_ID].nunique():,} orders of "
            f"{orders[C.USER_ID].nunique():,} customers, {int(orders[C.RETURNED].sum())} returned; around the "
            f"evaluation cutoff {task.eval_cutoff.date()}: {len(train):,} training lines "
            f"({int(train[C.RETURNED].sum())} returned) and {len(test):,} test lines "
            f"({int(test[C.RETURNED].sum())} returned)")
    returns = result.returns
    if returns is not None:
        auc = returns.set_index("family")[["return_auc", "return_pr_auc", "train_orders", "test_orders",
                                           "test_rows_with_embedding"]]
        best = auc["return_auc"].idxmax()
        claim = (f"Online Retail: cancellation (return) AUC {auc.at[best, 'return_auc']:.3f} ({best}) vs "
                 f"{auc.at['no_embedding', 'return_auc']:.3f} without embeddings, through Feast, on {size}.")
        tables = [("Cancellation (return) prediction, held-out orders", auc,
                   flags(auc, ["return_auc", "return_pr_auc"]))]
    else:
        why = (" The import matched no cancellation to an order line it kept (see its log): the published "
               "sample is about 1% of the UCI file, drawn line by line, so a cancellation rarely keeps its order; "
               "the full file has them." if not orders[C.RETURNED].any() else "")
        claim = (f"Online Retail: no cancellation (return) AUC — the data is too small for a held-out split with "
                 f"both classes: {size}. The return model needs returned and kept lines on both sides of the "
                 "split." + why)
        tables = []
    snapshots = results_table(SnapshotStore(home), None).set_index("family")
    tables.append(("Families trained and served (validation metrics of the newest snapshot)", snapshots,
                   no_flags(snapshots)))
    section = Section("Online Retail: cancellations as returns", notes=[
        claim,
        f"Retrained every {schedule.every_days} days from day {schedule.first_days} ("
        + ", ".join(str(c.date()) for c in cutoffs) + "); the return model learns from orders placed before "
        f"{task.eval_cutoff.date()} minus its {task.label_days}-day window and is scored on later ones, every "
        "order reading each embedding as served at its own time (Feast).",
        *pipeline_lines(result)], tables=tables)
    return DatasetOutcome(RETAIL, [section], [claim],
                          numbers={"auc": records(returns.set_index("family")) if returns is not None else None,
                                   "order_lines": len(orders), "orders": int(orders[C.ORDER_ID].nunique()),
                                   "returned": int(orders[C.RETURNED].sum())})

