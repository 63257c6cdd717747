"""Joining features onto a consumer's entity rows, always as of each row's own time.

`historical_embeddings` is the recipe a downstream team copies: give it a
dataframe with `product_id` and `event_timestamp` (plus any columns of yours)
and it returns the same rows with one embedding matrix per feature view.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodvec.core import columns as C

ROW = "_row"


def historical_embeddings(fs, entity_df: pd.DataFrame, views: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """view -> (matrix aligned with entity_df rows, mask of rows that had an embedding).

    Each row receives the newest snapshot whose cutoff is at or before its
    `event_timestamp` (Feast's point-in-time join); never a later one.
    """
    # Here, not at the top: the report's model fits run in worker processes that import the consumers'
    # modules, and Feast costs each of them seconds to import.
    from prodvec.core.feast_ops import embedding_columns, quiet_feast, stack

    if entity_df.empty:
        return {}
    query = pd.DataFrame({C.PRODUCT_ID: entity_df[C.PRODUCT_ID].astype(str).to_numpy(),
                          C.EVENT_TIMESTAMP: pd.to_datetime(entity_df[C.EVENT_TIMESTAMP], utc=True).reset_index(drop=True),
                          ROW: np.arange(len(entity_df))})
    features = [f"{view}:{C.EMBEDDING}" for view in views]
    with quiet_feast():
        frame = fs.get_historical_features(entity_df=query, features=features, full_feature_names=True).to_df()
    frame = frame.sort_values(ROW).reset_index(drop=True)
    if len(frame) != len(query) or not (frame[ROW].to_numpy() == query[ROW].to_numpy()).all():
        raise RuntimeError("feast returned a different set of rows than asked for")
    out = {}
    for view, column in embedding_columns(frame).items():
        dim = int(fs.get_feature_view(view).tags["dim"])
        out[view] = stack(frame[column], dim)
    return out


def user_history(orders: pd.DataFrame, at: pd.DataFrame) -> pd.DataFrame:
    """Per row of `at` (user_id, event_timestamp): the user's earlier orders and returns.

    Only what had happened strictly before the row's time counts: a return is
    known from its `returned_at`, not from the order it belongs to.
    """
    query = pd.DataFrame({C.USER_ID: at[C.USER_ID].to_numpy(),
                          "t": pd.to_datetime(at[C.EVENT_TIMESTAMP], utc=True).reset_index(drop=True)})

    def count_before(times: pd.DataFrame, column: str) -> np.ndarray:
        events = times[[C.USER_ID, column]].dropna().rename(columns={column: "t"}).reset_index(drop=True)
        return sums_before(events, np.zeros((len(events), 0)), query)[1].astype(float)

    orders_before = count_before(orders, C.ORDERED_AT)
    returns_before = count_before(orders[orders[C.RETURNED]], C.RETURNED_AT)
    return pd.DataFrame({"user_orders_before": orders_before, "user_returns_before": returns_before,
                         "user_return_rate_before": returns_before / np.maximum(orders_before, 1)},
                        index=at.index)


def sums_before(event_keys: pd.DataFrame, values: np.ndarray, query_keys: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per query (user_id, t): the sum of `values` rows of the same user with time strictly before t, and their count.

    `event_keys` and `query_keys` have columns user_id and t (tz-aware, or naive in UTC). One
    sort and one binary search, whatever the number of users: a user's events
    occupy one contiguous run of the sorted key, so a prefix sum difference
    gives each query its total.
    """
    users, _ = pd.factorize(pd.concat([event_keys[C.USER_ID], query_keys[C.USER_ID]]).astype(str))
    stamps = pd.concat([event_keys["t"], query_keys["t"]])
    # Times as dense ranks over both sides: the combined key stays far from int64 overflow.
    times, rank = np.unique(pd.to_datetime(stamps, utc=True).astype("int64").to_numpy(), return_inverse=True)
    span = len(times) + 1
    combined = users.astype(np.int64) * span + rank.astype(np.int64)
    ek, qk = combined[:len(event_keys)], combined[len(event_keys):]
    order = np.argsort(ek, kind="stable")
    ek = ek[order]
    prefix = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values[order].astype(np.float64), axis=0)])
    user_start = np.searchsorted(ek, (qk // span) * span, side="left")
    upto = np.searchsorted(ek, qk, side="left")  # strictly before: equal keys are not counted
    return prefix[upto] - prefix[user_start], (upto - user_start).astype(np.int64)
