"""Join any embedding family onto your own rows by product_id and timestamp (point-in-time).

Run after `make demo`:

    .venv/bin/python -m prodvec.consumers.join_embeddings                    # unified_blend, on sample order lines
    .venv/bin/python -m prodvec.consumers.join_embeddings --family text_dae --home workspace

Your entity dataframe needs `product_id` and `event_timestamp` (tz-aware UTC:
when your row happened); any other columns ride along untouched. Each row gets
the embedding from the newest snapshot trained at or before its own time —
never one trained on its future — straight from Feast's
`get_historical_features`, so a model trained on the result sees what it will
see in production.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def join_embeddings(entity_df: pd.DataFrame, family: str, home: str | Path = "workspace") -> pd.DataFrame:
    """`entity_df` plus `<family>_0 … <family>_{d-1}` columns and `<family>_found`."""
    from prodvec.core import feast_ops
    from prodvec.consumers.features import historical_embeddings
    from prodvec.core.snapshots import SnapshotStore, latest_views

    views = latest_views(SnapshotStore(home))
    if family not in views:
        raise SystemExit(f"no served snapshot of {family!r} under {home}; served: {', '.join(views) or 'none'}")
    store = feast_ops.open_store(home)
    matrix, found = historical_embeddings(store, entity_df, [views[family]])[views[family]]
    columns = pd.DataFrame(matrix, columns=[f"{family}_{i}" for i in range(matrix.shape[1])], index=entity_df.index)
    return pd.concat([entity_df, columns.assign(**{f"{family}_found": found})], axis=1)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="unified_blend")
    parser.add_argument("--home", default="workspace")
    parser.add_argument("--shop", default="workspace/shop")
    args = parser.parse_args(argv)

    # Your own rows would go here; the demo shop's order lines stand in for them.
    orders = pd.read_parquet(Path(args.shop) / "orders.parquet")
    sample = orders.sample(5, random_state=0)
    entity_df = pd.DataFrame({"product_id": sample["product_id"].to_numpy(),
                              "event_timestamp": sample["ordered_at"].to_numpy(),
                              "label_returned": sample["returned"].to_numpy()})
    joined = join_embeddings(entity_df, args.family, args.home)
    dims = [c for c in joined.columns if c.startswith(f"{args.family}_") and c[len(args.family) + 1:].isdigit()]
    print(joined[["product_id", "event_timestamp", "label_returned", f"{args.family}_found", *dims[:3]]]
          .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"... {len(dims)} embedding columns per row; norm of the first: {np.linalg.norm(joined[dims].iloc[0]):.3f}")
    return joined


if __name__ == "__main__":
    main()
