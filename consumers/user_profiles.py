"""User embeddings in product space, served by Feast point-in-time (entity `user`).

A user's profile at time t is built from the products they bought before t
and those they had sent back before t, each product's vector being the one
served when it was ordered: `bought` (mean of bought products), `returned`
(mean of returned ones), `kept` (mean of bought products not returned so
far, the taste they keep) and the counts. One row per user per moment their
profile changed, so Feast's point-in-time join hands every order the profile
as it stood just before it. A row is stamped one second after the event: an
order never sees itself (Feast joins rows stamped at or before the entity
time), and a return is known from its `returned_at`, not its order's time.

`write_profiles` materialises the table for one product feature view under
`<home>/users/`; `prodvec.core.feast_defs` turns every such table into a
feature view `user_<family>_v<N>` on the next apply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodvec.core import columns as C
# Not feast_defs: the return model's worker processes import this module, and Feast costs each seconds.
from prodvec.core.snapshots import USER_DIR, user_view_name

# A profile row counts from just after its event: an order never reads its own line.
STAMP_DELAY = pd.Timedelta(seconds=1)
FIELDS = ("kept", "returned", "n_bought", "n_returned")


def profile_rows(orders: pd.DataFrame, matrix: np.ndarray, found: np.ndarray) -> pd.DataFrame:
    """Cumulative profile of each user after each of their purchase and return times.

    `matrix`/`found`: each order line's product vector as served at its order
    time. Columns: user_id, event_timestamp, kept, returned (lists of floats,
    zeros where empty), n_bought, n_returned.
    """
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    back = orders[C.RETURNED].to_numpy(bool) & found
    users = orders[C.USER_ID].astype(str).to_numpy()
    def utc(column: str) -> np.ndarray:
        # Naive UTC datetime64: a tz-aware column's plain to_numpy() is an object array of
        # Timestamps, built one by one (it was a fifth of the return model's time).
        return pd.to_datetime(orders[column], utc=True).to_numpy(dtype="datetime64[ns]")

    # Two kinds of event: a purchase adds to `bought` at its order time, a return to `returned` at its return time.
    user = np.concatenate([users[found], users[back]])
    t = np.concatenate([utc(C.ORDERED_AT)[found], utc(C.RETURNED_AT)[back]])
    ret = np.concatenate([np.zeros(int(found.sum()), bool), np.ones(int(back.sum()), bool)])
    vectors = np.vstack([unit[found], unit[back]]).astype(np.float64)
    order = np.lexsort((t, user))
    user, t, ret, vectors = user[order], t[order], ret[order], vectors[order]
    # Running sums per user: a global cumsum minus its value where the user's run starts, kept only at
    # the last event of each (user, time) (the state a row is stamped with).
    start = np.r_[True, user[1:] != user[:-1]]
    last = np.r_[(user[1:] != user[:-1]) | (t[1:] != t[:-1]), True]
    run_of_last = (np.cumsum(start) - 1)[last]

    def running(values: np.ndarray) -> np.ndarray:
        total = np.cumsum(values, axis=0)
        before = np.vstack([np.zeros((1,) + values.shape[1:]), total])[np.flatnonzero(start)]
        return total[last] - before[run_of_last]

    # Kept = bought minus returned, so one running sum of the signed vectors; returns have their own.
    kept_sum = running(np.where(ret[:, None], -vectors, vectors))
    returned_sum = running(vectors * ret[:, None])
    n_bought = running((~ret).astype(float)[:, None])[:, 0]
    n_returned = running(ret.astype(float)[:, None])[:, 0]
    kept_n = np.maximum(n_bought - n_returned, 0)
    kept = np.where(kept_n[:, None] > 0, kept_sum / np.maximum(kept_n, 1)[:, None], 0.0)
    returned = np.where(n_returned[:, None] > 0, returned_sum / np.maximum(n_returned, 1)[:, None], 0.0)
    return pd.DataFrame({
        C.USER_ID: user[last],
        C.EVENT_TIMESTAMP: pd.to_datetime(t[last] + STAMP_DELAY.to_timedelta64(), utc=True),
        "kept": list(kept.astype(np.float32)),
        "returned": list(returned.astype(np.float32)),
        "n_bought": n_bought.astype(np.float32),
        "n_returned": n_returned.astype(np.float32),
    })


def home_of(fs) -> Path:
    """The home a store opened by `feast_ops.open_store` belongs to (its registry is <home>/feast/registry.db)."""
    registry = fs.config.registry
    return Path(getattr(registry, "path", registry)).parent.parent


def write_profiles(home: str | Path, product_view: str, rows: pd.DataFrame, dim: int) -> Path:
    """Write the profile table of `product_view` where feast_defs picks it up (atomically)."""
    folder = Path(home) / USER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{user_view_name(product_view)}.parquet"
    def vectors(column: str) -> pa.FixedSizeListArray:
        # One flat buffer instead of a Python list per row (as SnapshotStore writes snapshots).
        flat = np.stack(rows[column].to_numpy()).astype(np.float32) if len(rows) else np.zeros((0, dim), np.float32)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim)

    table = pa.table({
        C.USER_ID: pa.array(rows[C.USER_ID].to_numpy(), pa.string()),
        C.EVENT_TIMESTAMP: pa.array(pd.to_datetime(rows[C.EVENT_TIMESTAMP], utc=True), pa.timestamp("us", tz="UTC")),
        C.CREATED_TIMESTAMP: pa.array(pd.to_datetime(rows[C.EVENT_TIMESTAMP], utc=True), pa.timestamp("us", tz="UTC")),
        "kept": vectors("kept"),
        "returned": vectors("returned"),
        "n_bought": pa.array(rows["n_bought"].to_numpy(np.float32)),
        "n_returned": pa.array(rows["n_returned"].to_numpy(np.float32)),
    }).replace_schema_metadata({"dim": str(dim), "product_view": product_view})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def historical_profiles(fs, entity_df: pd.DataFrame, product_views: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """product view -> {field: array aligned with entity_df rows} of the users' profiles as of each row's time.

    `entity_df` needs user_id and event_timestamp. Users with no earlier
    purchase get zero vectors and zero counts.
    """
    from prodvec.core.feast_ops import stack

    query = pd.DataFrame({C.USER_ID: entity_df[C.USER_ID].astype(str).to_numpy(),
                          C.EVENT_TIMESTAMP: pd.to_datetime(entity_df[C.EVENT_TIMESTAMP], utc=True).reset_index(drop=True),
                          "_row": np.arange(len(entity_df))})
    views = [user_view_name(v) for v in product_views]
    features = [f"{view}:{name}" for view in views for name in FIELDS]
    frame = fs.get_historical_features(entity_df=query, features=features, full_feature_names=True).to_df()
    frame = frame.sort_values("_row").reset_index(drop=True)
    if len(frame) != len(query):
        raise RuntimeError("feast returned a different set of rows than asked for")
    out = {}
    for product_view, view in zip(product_views, views):
        dim = int(fs.get_feature_view(view).tags["dim"])
        fields = {}
        for name in ("kept", "returned"):
            fields[name] = stack(frame[f"{view}__{name}"], dim)[0]
        for name in ("n_bought", "n_returned"):
            fields[name] = frame[f"{view}__{name}"].fillna(0).to_numpy(float)
        out[product_view] = fields
    return out
