"""Return prediction: will this cart line come back?

Training rows are orders placed before `eval_cutoff - label_days` with the
labels known at `eval_cutoff`; test rows are orders placed after the cutoff
whose return window has closed. Every row gets each embedding as served at
its own order time (Feast point-in-time). Each family is scored with the same
scikit-learn model on baseline features (price, category, the user's earlier
orders and returns) plus that family's embedding; the baseline alone is the
no-embedding row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import normalize

from prodvec.core import columns as C
from prodvec.consumers.features import historical_embeddings, sums_before, user_history
from prodvec.core.embeddings import InsufficientData
from prodvec.core.shop.model import Shop

BASELINE = "no_embedding"
ORDER_ROW = "order_row"


@dataclass(frozen=True)
class ReturnTask:
    eval_cutoff: pd.Timestamp
    # Returns arrive up to this long after the order: younger labels are not final.
    label_days: int = 30
    train_from: pd.Timestamp | None = None
    seed: int = 0


def split_orders(shop: Shop, task: ReturnTask) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) order lines with label, as a consumer would have known them."""
    window = pd.Timedelta(days=task.label_days)
    known = shop.until(task.eval_cutoff).orders
    train = known[known[C.ORDERED_AT] < task.eval_cutoff - window]
    if task.train_from is not None:
        train = train[train[C.ORDERED_AT] >= task.train_from]
    orders = shop.orders
    test = orders[(orders[C.ORDERED_AT] >= task.eval_cutoff) & (orders[C.ORDERED_AT] <= shop.end - window)]
    # Which line of shop.orders each row is: the user context is computed over all of them.
    return (train.rename_axis(ORDER_ROW).reset_index(), test.rename_axis(ORDER_ROW).reset_index())


def baseline_frame(shop: Shop, rows: pd.DataFrame) -> pd.DataFrame:
    at = rows.rename(columns={C.ORDERED_AT: C.EVENT_TIMESTAMP})
    frame = user_history(shop.orders, at)
    frame["log_price"] = np.log(rows[C.PRICE].to_numpy())
    category = rows[C.PRODUCT_ID].map(shop.products.set_index(C.PRODUCT_ID)[C.CATEGORY]) \
        if C.CATEGORY in shop.products else pd.Series("unknown", index=rows.index)
    # One fixed category list for train and test, so codes mean the same in both.
    known = sorted(shop.products[C.CATEGORY].dropna().unique()) if C.CATEGORY in shop.products else []
    frame[C.CATEGORY] = pd.Categorical(category.fillna("unknown").astype(str).to_numpy(),
                                       categories=[*known, "unknown"])
    return frame


def _model(seed: int):
    # Gradient boosting: return propensity is a non-linear function of where a
    # product sits in embedding space (a linear probe loses most of it).
    return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
                                          early_stopping=True, validation_fraction=0.15, n_iter_no_change=20,
                                          categorical_features="from_dtype", random_state=seed)


def user_context(orders: pd.DataFrame, matrix: np.ndarray, found: np.ndarray) -> pd.DataFrame:
    """Per order line: cosine of its product to the user's earlier purchases and earlier returns.

    `matrix`/`found` are the embeddings of every line of `orders`, each as served
    at its own order time. A purchase counts from its order time, a return
    from its `returned_at`, and only strictly earlier ones; NaN where the user
    has none (gradient boosting reads NaN as "unknown").
    """
    unit = np.where(found[:, None], normalize(matrix), 0.0)
    # Every line is both a query (its own time) and, once placed, part of the user's history.
    bought = pd.DataFrame({C.USER_ID: orders[C.USER_ID].to_numpy(), "t": orders[C.ORDERED_AT].to_numpy()})
    returned = orders[C.RETURNED].to_numpy(bool) & found
    sent_back = pd.DataFrame({C.USER_ID: orders[C.USER_ID].to_numpy()[returned],
                              "t": orders[C.RETURNED_AT].to_numpy()[returned]})
    out = {}
    for name, events, values in (("cos_user_bought", bought[found], unit[found]),
                                 ("cos_user_returned", sent_back, unit[returned])):
        total, count = sums_before(events, values, bought)
        mean = normalize(total)
        out[name] = np.where((count > 0) & found, (unit * mean).sum(1), np.nan)
    return pd.DataFrame(out, index=orders.index)


def _design(base: pd.DataFrame, matrix: np.ndarray | None, found: np.ndarray | None,
            context: pd.DataFrame | None = None) -> pd.DataFrame:
    if matrix is None:
        return base
    emb = pd.DataFrame(matrix, columns=[f"e{i}" for i in range(matrix.shape[1])], index=base.index)
    emb["has_embedding"] = found.astype(float)
    parts = [base, emb] if context is None else [base, emb, context.set_index(base.index)]
    return pd.concat(parts, axis=1)


def evaluate_returns(shop: Shop, fs, views: dict[str, str], task: ReturnTask) -> pd.DataFrame:
    """One row per family (and the baseline): ROC-AUC and PR-AUC on later orders.

    `views` maps family -> Feast feature view to read.
    """
    train, test = split_orders(shop, task)
    if train.empty or test.empty or train[C.RETURNED].nunique() < 2:
        raise InsufficientData(f"return task: {len(train)} train and {len(test)} test orders around "
                               f"{task.eval_cutoff}; need both, with returned and kept lines")
    # Every order line once, as of its own time: rows for the model and the users' histories.
    orders = shop.orders
    embedded = historical_embeddings(fs, orders.rename(columns={C.ORDERED_AT: C.EVENT_TIMESTAMP}),
                                     list(views.values()))
    base_train, base_test = baseline_frame(shop, train), baseline_frame(shop, test)
    y_train, y_test = train[C.RETURNED].to_numpy(bool), test[C.RETURNED].to_numpy(bool)
    at_train, at_test = orders.index.get_indexer(train[ORDER_ROW]), orders.index.get_indexer(test[ORDER_ROW])
    rows = []
    for family, view in [(BASELINE, None), *views.items()]:
        x_train, x_test, f_test = base_train, base_test, None
        if view is not None:
            matrix, found = embedded[view]
            # The user's returns count in the context only once known at the train rows' time
            # (the `orders` labels are final ones; sums_before keeps to returned_at < order time).
            context = user_context(orders, matrix, found)
            x_train = _design(base_train, matrix[at_train], found[at_train], context.iloc[at_train])
            x_test = _design(base_test, matrix[at_test], found[at_test], context.iloc[at_test])
            f_test = found[at_test]
        model = _model(task.seed)
        model.fit(x_train, y_train)
        scores = model.predict_proba(x_test)[:, 1]
        rows.append({
            "family": family, "view": view or "",
            "return_auc": roc_auc_score(y_test, scores),
            "return_pr_auc": average_precision_score(y_test, scores),
            "train_orders": len(train), "test_orders": len(test),
            "test_rows_with_embedding": float(f_test.mean()) if f_test is not None else float("nan"),
        })
    return pd.DataFrame(rows)
