"""Which consumer tasks the report runs, and what each needs from the shop.

A task whose inputs the shop lacks (no events, no orders, no category) is
skipped with a one-line reason instead of failing the report, the same rule
producers follow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
from threadpoolctl import threadpool_limits

from prodvec.consumers.evaluation import EvalContext, TaskResult
from prodvec.consumers.returns import BASELINE, ORACLE, ReturnTask, evaluate_returns
from prodvec.core.shop.model import EVENTS, ORDERS, TEXT


def evaluate_return_task(ctx: EvalContext) -> TaskResult:
    """Cart return prediction (paper task 3) in the report's shape."""
    first = min(ctx.snapshot_times) if ctx.snapshot_times else None
    task = ReturnTask(eval_cutoff=ctx.eval_cutoff, train_from=first, seed=ctx.seed)
    frame = ctx.known.get(task)
    if frame is None or set(frame["view"]) - {""} != set(ctx.views.values()):
        frame = evaluate_returns(ctx.shop, ctx.fs, ctx.views, task)
    frame = frame.set_index("family")
    table = frame[["return_auc", "return_pr_auc", "test_rows_with_embedding"]]
    table = table.rename(columns={"test_rows_with_embedding": "test_coverage"})
    if ORACLE in table.index:
        # How much of what the data allows above chance each row reaches.
        table["share_of_oracle_lift"] = (table["return_auc"] - 0.5) / (table.loc[ORACLE, "return_auc"] - 0.5)
    first_row = frame.iloc[0]
    notes = [f"{int(first_row.train_orders)} order lines placed before {ctx.eval_cutoff.date()} (minus the "
             f"{task.label_days}-day return window) train a gradient-boosted model; {int(first_row.test_orders)} "
             "later lines whose window has closed are the test set.",
             "Features: price, category, the user's earlier orders and returns, size fit (ordered size against "
             "the user's usual size; the brand's earlier returns at that size offset), the product's and "
             "brand's earlier return rates, and the product's engagement before the order (clicks per "
             "impression, carts and purchases per click; consumers/return_features.py); then, per family, a "
             "score read linearly from the product's embedding and its products with the user's profile (mean "
             "kept and mean returned products before the order, Feast view user_<family>_v<N>, point-in-time) "
             "for what the shop-side features leave unexplained, fitted in product folds so that it never "
             "reads the product's own returns, and the cosines of the product to that profile.",
             f"{BASELINE}: the same model without any embedding."]
    if ORACLE in table.index:
        notes.append(f"{ORACLE}: the generator's true return probability of each test line (the ceiling); "
                     "share_of_oracle_lift = (AUC − 0.5) / (oracle AUC − 0.5).")
    return TaskResult("returns", "Cart return prediction (held-out orders)", table, headline="return_auc",
                      notes=notes)


@dataclass(frozen=True)
class ReportTask:
    name: str
    run: Callable[[EvalContext], TaskResult]
    requires: tuple[str, ...] = ()
    # One of the "One Embedding To Do Them All" paper's three tasks (the unified claim is about those).
    paper: bool = False


def _lazy(module: str, function: str) -> Callable[[EvalContext], TaskResult]:
    def run(ctx: EvalContext) -> TaskResult:
        import importlib

        return getattr(importlib.import_module(module), function)(ctx)

    return run


TASKS = (
    ReportTask("attributes", _lazy("prodvec.consumers.attributes", "evaluate_attributes"), paper=True),
    ReportTask("similarity", _lazy("prodvec.consumers.similarity", "evaluate_similarity"), (EVENTS,), paper=True),
    ReportTask("returns", evaluate_return_task, (ORDERS,), paper=True),
    ReportTask("mrnet_comparison", _lazy("prodvec.consumers.mrnet_comparison", "evaluate_mrnet_comparison"), (TEXT,)),
    ReportTask("retrieval", _lazy("prodvec.consumers.retrieval", "evaluate_retrieval"), (EVENTS,)),
    ReportTask("intrinsic", _lazy("prodvec.consumers.intrinsic", "evaluate_intrinsic")),
    ReportTask("return_drivers", _lazy("prodvec.consumers.return_drivers", "evaluate_return_drivers"), (ORDERS,)),
)


@dataclass
class TaskOutcome:
    task: ReportTask
    result: TaskResult | None
    skipped: str | None
    seconds: float


def run_tasks(ctx: EvalContext, names: tuple[str, ...] | None = None, log=print) -> list[TaskOutcome]:
    outcomes = []
    for task in TASKS:
        if names is not None and task.name not in names:
            continue
        missing = ctx.shop.missing(task.requires)
        if task.name == "attributes" and not ctx.shop.label_columns:
            missing = ["side-information columns"]
        if missing:
            reason = f"the shop has no {', '.join(missing)}"
            log(f"report: {task.name} skipped: {reason}")
            outcomes.append(TaskOutcome(task, None, reason, 0.0))
            continue
        started = time.perf_counter()
        try:
            # The tasks fit many small models: one BLAS thread each is 3-4x faster than
            # threads fighting over two cores (measured on the 2-core machine); one OpenMP
            # thread, as in the pipeline's return step (see there).
            with threadpool_limits(1):
                result = task.run(ctx)
        except ValueError as error:  # the data cannot support the task (e.g. no held-out orders)
            log(f"report: {task.name} skipped: {error}")
            outcomes.append(TaskOutcome(task, None, str(error), time.perf_counter() - started))
            continue
        seconds = time.perf_counter() - started
        log(f"report: {task.name} scored {len(result.table)} rows in {seconds:.0f}s")
        outcomes.append(TaskOutcome(task, result, None, seconds))
    return outcomes


def summary_table(outcomes: list[TaskOutcome]) -> pd.DataFrame:
    """family × (task, metric) for every metric of every task that ran."""
    parts = []
    for outcome in outcomes:
        if outcome.result is None:
            continue
        table = outcome.result.table.copy()
        table.columns = pd.MultiIndex.from_product([[outcome.task.name], table.columns])
        parts.append(table)
    return pd.concat(parts, axis=1) if parts else pd.DataFrame()
