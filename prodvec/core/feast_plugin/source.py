"""The rows a materialization serves, streamed from the offline Parquet as Arrow batches.

Feast's rule (`pull_latest_from_table_or_query`): among the rows with
start <= event_timestamp <= end, each entity gets its newest one by
event_timestamp, then created_timestamp. A served view's Parquet holds every
promoted snapshot, so most products appear several times.

Two passes, split by what each library does fastest:

1. DuckDB picks the winners from the key and timestamp columns only (a few
   bytes per row) and returns their positions, (file, row number);
2. pyarrow's Parquet reader streams the view's columns of the row groups that
   hold a winner, in file order, and keeps the winning rows. It decodes a
   fixed-size embedding into a `fixed_size_list` whose floats are one
   contiguous buffer (encoding.py uses it as it is), where DuckDB's result
   path turns FLOAT[dim] into Arrow lists at about twice the cost (measured
   0.24 s against 0.41 s for 100k x 256).

Memory follows the batch size plus one byte per row of the table (the winner
mask), never the vector bytes of the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


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

    @property
    def columns(self) -> list[str]:
        return [self.join_key, *self.features, self.timestamp] + ([self.created] if self.created else [])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(tzinfo=None) if ts.tzinfo else ts


def winners(rows: LatestRows, start: datetime, end: datetime, threads: int = 2,
            memory_limit: str = "1GB") -> dict[str, np.ndarray]:
    """Row numbers of each file's winning rows (Feast's newest row per entity within [start, end]),
    files in name order, row numbers in no particular order."""
    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
    try:
        key, ts = _quote(rows.join_key), _quote(rows.timestamp)
        order = f"{ts} DESC" + (f", {_quote(rows.created)} DESC" if rows.created else "")
        # Compare as naive UTC, which is how Feast's ibis query casts both sides.
        table = con.execute(f"""
            SELECT filename, file_row_number FROM read_parquet($path, filename = true, file_row_number = true)
            WHERE CAST({ts} AS TIMESTAMP) BETWEEN $start AND $end
            QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1
        """, {"path": rows.path, "start": _naive_utc(start), "end": _naive_utc(end)}).to_arrow_table()
    finally:
        con.close()
    # Grouped here rather than by an ORDER BY: sorting 100k positions in DuckDB cost more than the query.
    files = table.column("filename").combine_chunks().dictionary_encode()
    which = files.indices.to_numpy(zero_copy_only=False)
    numbers = table.column("file_row_number").to_numpy(zero_copy_only=False).astype(np.int64)
    return {str(name): numbers[which == i] for i, name in sorted(enumerate(files.dictionary.to_pylist()),
                                                                   key=lambda item: item[1])}


def _open(path: str) -> pq.ParquetFile:
    if "://" in path:
        filesystem, inner = pa.fs.FileSystem.from_uri(path)
        return pq.ParquetFile(filesystem.open_input_file(inner))
    return pq.ParquetFile(path)


def winning_pieces(path: str, numbers: np.ndarray, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """The rows `numbers` of one Parquet file, read only from the row groups holding them."""
    parquet = _open(path)
    meta = parquet.metadata
    starts = np.zeros(meta.num_row_groups + 1, dtype=np.int64)
    np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)], out=starts[1:])
    wanted = np.zeros(int(starts[-1]), dtype=bool)
    wanted[numbers] = True
    groups = [g for g in range(meta.num_row_groups) if wanted[starts[g]:starts[g + 1]].any()]
    if not groups:
        return
    # The mask of the rows the reader will yield, in order: the chosen row groups back to back.
    keep = np.concatenate([wanted[starts[g]:starts[g + 1]] for g in groups])
    del wanted
    # One thread: the (single) pass decodes row groups in order; threads only fight the writer for 2 cores.
    position = 0
    for batch in parquet.iter_batches(batch_size, row_groups=groups, columns=columns, use_threads=False):
        mask = keep[position:position + batch.num_rows]
        position += batch.num_rows
        if mask.all():
            yield batch
        elif mask.any():
            yield batch.filter(pa.array(mask))


def rebatch(pieces: Iterator[pa.RecordBatch], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly `batch_size` rows (the last one shorter); a piece that fits passes uncopied."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for piece in pieces:
        while piece.num_rows:
            take = min(batch_size - count, piece.num_rows)
            pending.append(piece.slice(0, take))
            piece, count = piece.slice(take), count + take
            if count == batch_size:
                yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
                pending, count = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def latest_batches(rows: LatestRows, start: datetime, end: datetime, batch_size: int,
                   threads: int = 2, memory_limit: str = "1GB") -> Iterator[pa.RecordBatch]:
    """Yield the winning rows as record batches of at most `batch_size` rows, in file order.

    File order is kept: snapshots are written in catalogue order, so the online
    store's B-tree sees nearly sorted keys instead of random ones.
    """
    chosen = winners(rows, start, end, threads, memory_limit)
    columns = rows.columns

    def pieces() -> Iterator[pa.RecordBatch]:
        for path, numbers in chosen.items():
            yield from winning_pieces(path, numbers, columns, batch_size)

    yield from rebatch(pieces(), batch_size)
