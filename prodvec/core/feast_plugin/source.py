"""The rows a materialization serves, streamed from the offline Parquet as Arrow batches.

Feast's rule (`pull_latest_from_table_or_query`): among the rows with
start <= event_timestamp <= end, each entity gets its newest one by
event_timestamp, then created_timestamp. A served view's Parquet holds every
promoted snapshot, so most products appear several times.

DuckDB picks the winners from the key and timestamp columns only (a few bytes
per row), then streams the winning rows, vectors included, in file order:
memory follows the batch size and the key count, never the vector bytes of
the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa


@dataclass(frozen=True)
class LatestRows:
    """Where and what to read: a Parquet file (or glob) and the view's columns."""

    path: str
    join_key: str
    features: tuple[str, ...]
    timestamp: str
    created: str | None

    @staticmethod
    def resolve(path: str, repo_path: Path | None) -> str:
        """FileSource paths may be relative to the feature repo, as Feast resolves them."""
        if "://" in path or Path(path).is_absolute() or repo_path is None:
            return path
        return str(Path(repo_path) / path)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(tzinfo=None) if ts.tzinfo else ts


def latest_batches(rows: LatestRows, start: datetime, end: datetime, batch_size: int,
                   threads: int = 2, memory_limit: str = "1GB") -> Iterator[pa.RecordBatch]:
    """Yield the winning rows as record batches of at most `batch_size` rows."""
    # File order is kept (DuckDB's default): snapshots are written in catalogue order, so the online
    # store's B-tree sees nearly sorted keys instead of random ones.
    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
    try:
        key, ts = _quote(rows.join_key), _quote(rows.timestamp)
        order = f"{ts} DESC" + (f", {_quote(rows.created)} DESC" if rows.created else "")
        wanted = [key, *(_quote(f) for f in rows.features), ts] + ([_quote(rows.created)] if rows.created else [])
        # Compare as naive UTC, which is how Feast's ibis query casts both sides.
        in_range = f"CAST({ts} AS TIMESTAMP) BETWEEN $start AND $end"
        source = "read_parquet($path, filename = true, file_row_number = true)"
        query = f"""
            WITH winners AS (
                SELECT filename, file_row_number FROM {source}
                WHERE {in_range}
                QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1
            )
            SELECT {", ".join(wanted)} FROM {source}
            WHERE {in_range} AND (filename, file_row_number) IN (SELECT (filename, file_row_number) FROM winners)
        """
        params = {"path": rows.path, "start": _naive_utc(start), "end": _naive_utc(end)}
        reader = con.execute(query, params).fetch_record_batch(batch_size)
        for batch in reader:
            if batch.num_rows:
                yield batch
    finally:
        con.close()
