"""What every importer shares: reading a source file, reporting bad rows, writing the shop.

An importer reads its source into pandas, builds the contract's tables and
hands them to `write_shop`, which does the rest the same way for every
format. The API (stable; other importers build on it):

    table = read_csv(source / "styles.csv", dtype=str)          # SourceError if missing/unreadable
    require_columns(table, "styles.csv", ["id", "year"])        # SourceError naming what is missing
    reject_rows(table, bad, "styles.csv", "id", "must be unique")   # stop with an example row
    table = drop_rows(table, bad, "styles.csv", "year", "no year", log)     # drop, say why and how many
    naive = parse_times(table, "InvoiceDate", "x.csv")          # SourceError on unparseable values
    ts = local_to_utc(naive, "Europe/London")                   # explicit zone, never guessed
    ids = id_strings(table["CustomerID"])                       # 17850.0 -> "17850", NaN -> None
    write_shop(shop_dir, products, events=None, orders=None,
               images=paths_by_product_id, overwrite=False, log=print)
    summarize(shop_dir)  # {"products": ..., "events": ..., "orders": ..., "returned": ..., "images": ...}
    refuse_existing(shop_dir, overwrite)  # optional early check; write_shop repeats it

`write_shop` stages the whole shop in a temporary sibling directory (parquet
files, copied images), checks it with the contract loader (`load_shop`), and
only then moves it into `shop_dir`: a failed import, or one that would break
the contract, leaves `shop_dir` as it was. An existing non-empty `shop_dir` is
refused unless `overwrite=True`, and overwriting removes only what an import
writes (the three parquet files and `images/`), never a user's other files.

Errors about the *source* are `SourceError`, a `ContractError` whose file is
the source file, so they read like the loader's own:

    styles.csv, column 'productDisplayName': must not be empty — 7 bad rows, e.g. row 12: {'id': '39403', ...}

Nothing is dropped silently: `drop_rows` logs one line per rule with the
count and an example, and importers document which rules drop and which stop.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from prodvec.core import columns as C
from prodvec.core.shop.errors import ContractError

__all__ = [
    "SHOP_OUTPUTS",
    "SourceError",
    "drop_rows",
    "id_strings",
    "local_to_utc",
    "parse_times",
    "read_csv",
    "refuse_existing",
    "reject_rows",
    "require_columns",
    "summarize",
    "write_parquet",
    "write_shop",
]

# What an import writes into a shop directory (and all that overwrite removes).
SHOP_OUTPUTS = (C.PRODUCTS_FILE, C.EVENTS_FILE, C.ORDERS_FILE, C.IMAGES_DIR)
_TMP_PREFIX = ".tmp-import-"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")

Log = Callable[[str], None]


class SourceError(ContractError):
    """A source file cannot be imported: `file` is the source file (e.g. styles.csv), not a shop file."""


# -- reading and checking a source ------------------------------------------------
def read_csv(path: Path, **kwargs) -> pd.DataFrame:
    """`pd.read_csv` that raises `SourceError` naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(path.name, None, f"not found at {path}")
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SourceError(path.name, None, f"cannot be read as CSV ({exc})") from exc


def require_columns(df: pd.DataFrame, file: str, names: Iterable[str]) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise SourceError(file, missing[0], f"required column is missing; found {list(df.columns)}")


def _example(df: pd.DataFrame, bad: np.ndarray, column: str | None, keys: Iterable[str]) -> tuple[int, dict]:
    position = int(np.flatnonzero(bad)[0])
    label = df.index[position]
    # Importers keep the source's row labels through filtering, so the row named is the source's.
    row = int(label) if isinstance(label, (int, np.integer)) else position
    shown = [c for c in dict.fromkeys([*keys, *([column] if column else [])]) if c in df.columns]
    values = {}
    for c in shown:
        v = df[c].iat[position]
        if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)):
            v = None
        elif isinstance(v, pd.Timestamp):
            v = v.isoformat()
        elif isinstance(v, np.generic):
            v = v.item()
        values[c] = v
    return row, values


def reject_rows(df: pd.DataFrame, bad, file: str, column: str | None, rule: str,
                keys: Iterable[str] = ()) -> None:
    """Raise `SourceError` when any row of the boolean mask `bad` is set; `keys` are shown in the example.

    The row named is `df`'s integer index label (its position otherwise): for a
    CSV read whole and filtered without resetting the index, the 0-based data
    line, header not counted.
    """
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        row, example = _example(df, bad, column, keys)
        raise SourceError(file, column, rule, example=example, row=row, count=int(bad.sum()))


def drop_rows(df: pd.DataFrame, bad, file: str, column: str | None, why: str, log: Log,
              keys: Iterable[str] = ()) -> pd.DataFrame:
    """`df` without the rows of mask `bad` (index kept), logging why, how many and one example:

        styles.csv, column 'productDisplayName': no product name: dropped 2 rows (e.g. row 3325: {...})
    """
    bad = np.asarray(bad, dtype=bool)
    if not bad.any():
        return df
    row, example = _example(df, bad, column, keys)
    where = file if column is None else f"{file}, column {column!r}"
    n = int(bad.sum())
    log(f"{where}: {why}: dropped {n} row{'' if n == 1 else 's'} (e.g. row {row}: {example})")
    return df[~bad]


# -- converting values ------------------------------------------------------------
def parse_times(df: pd.DataFrame, column: str, file: str, *, format: str | None = None,
                keys: Iterable[str] = ()) -> pd.Series:
    """Column `column` parsed as (naive) datetimes; `SourceError` with an example for any unparseable value.

    Missing values stay NaT: whether they are allowed is the importer's rule.
    """
    parsed = pd.to_datetime(df[column], format=format if format else "mixed", errors="coerce")
    reject_rows(df, parsed.isna() & df[column].notna(), file, column,
                f"must be a date and time{f' like {format}' if format else ''}", keys)
    return parsed


def local_to_utc(values: pd.Series, tz: str) -> pd.Series:
    """Naive wall-clock datetimes in zone `tz` (e.g. "Europe/London") as UTC timestamps.

    Daylight-saving edges are resolved, not rejected: a time in the hour
    skipped in spring is shifted forward, a time in the hour repeated in autumn
    is read as the first (summer-time) one.
    """
    if not pd.api.types.is_datetime64_dtype(values.dtype):
        raise TypeError(f"{values.name!r}: expected naive datetimes (see parse_times), got {values.dtype}")
    local = values.dt.tz_localize(tz, ambiguous=np.ones(len(values), dtype=bool), nonexistent="shift_forward")
    return local.dt.tz_convert("UTC").dt.as_unit("ns")


def id_strings(values: pd.Series) -> pd.Series:
    """Identifiers as strings: integral floats lose their '.0' (pandas reads an id column with gaps
    as float), surrounding blanks go, missing and blank values become None."""
    out = np.full(len(values), None, dtype=object)
    present = values.notna().to_numpy()
    if pd.api.types.is_float_dtype(values.dtype):
        v = values.to_numpy()[present]
        integral = np.isfinite(v) & (v == np.round(v))
        text = v.astype(str).astype(object)
        text[integral] = v[integral].astype(np.int64).astype(str)
    else:
        text = values[present].astype(str).str.strip().to_numpy(dtype=object)
    out[present] = text
    out[out == ""] = None
    return pd.Series(out, index=values.index, name=values.name, dtype=object)


# -- writing the shop --------------------------------------------------------------
def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write `df` (without its index) to a temporary name, then rename: never a half file at `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def write_shop(
    shop_dir: Path,
    products: pd.DataFrame,
    events: pd.DataFrame | None = None,
    orders: pd.DataFrame | None = None,
    *,
    images: pd.Series | None = None,
    overwrite: bool = False,
    log: Log = print,
) -> Path:
    """Write a complete shop into `shop_dir`, checked by the contract loader first; return `shop_dir`.

    `images` maps product_id (index) to a source image file (PNG/JPEG); each is
    copied to `images/<product_id><suffix>` and products get `image_path` (null
    for products without one). Products, events and orders must already use
    the contract's columns; the loader rejects anything else before
    `shop_dir` is touched.
    """
    shop_dir = Path(shop_dir)
    refuse_existing(shop_dir, overwrite)
    shop_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{shop_dir.name}-", dir=shop_dir.parent))
    try:
        products = products.reset_index(drop=True)
        if images is not None:
            products = products.assign(**{C.IMAGE_PATH: _copy_images(images, products[C.PRODUCT_ID], stage)})
        write_parquet(products, stage / C.PRODUCTS_FILE)
        if events is not None:
            write_parquet(events, stage / C.EVENTS_FILE)
        if orders is not None:
            write_parquet(orders, stage / C.ORDERS_FILE)
        from prodvec.core.shop.loader import load_shop  # the loader check: nothing lands unless it passes

        load_shop(stage, log=log)
        _move_into_place(stage, shop_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return shop_dir


def summarize(shop_dir: Path) -> dict[str, int]:
    """Row counts of an imported shop (from parquet metadata), returned order lines and products with an image."""
    shop_dir = Path(shop_dir)
    out = {}
    for key, file in (("products", C.PRODUCTS_FILE), ("events", C.EVENTS_FILE), ("orders", C.ORDERS_FILE)):
        path = shop_dir / file
        out[key] = pq.ParquetFile(path).metadata.num_rows if path.exists() else 0
    out["returned"] = 0
    if out["orders"]:
        out["returned"] = int(pd.read_parquet(shop_dir / C.ORDERS_FILE, columns=[C.RETURNED])[C.RETURNED].sum())
    out["images"] = 0
    if C.IMAGE_PATH in pq.read_schema(shop_dir / C.PRODUCTS_FILE).names:
        out["images"] = int(pd.read_parquet(shop_dir / C.PRODUCTS_FILE, columns=[C.IMAGE_PATH])[C.IMAGE_PATH]
                            .notna().sum())
    return out


def refuse_existing(shop_dir: Path, overwrite: bool) -> None:
    """FileExistsError for a non-empty `shop_dir` without `overwrite`; `write_shop` checks it too,
    an importer calls it first to fail before reading a large source."""
    if shop_dir.exists() and not shop_dir.is_dir():
        raise FileExistsError(f"{shop_dir} exists and is not a directory")
    if shop_dir.is_dir() and any(shop_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{shop_dir} exists and is not empty; pass overwrite=True (--overwrite) to replace it")


def _copy_images(images: pd.Series, product_ids: pd.Series, stage: Path) -> pd.Series:
    """Copy each product's image into stage/images; the relative image_path per product (None: no image)."""
    images = images.dropna()
    images = images[images.index.isin(product_ids)]
    if images.index.has_duplicates:
        raise ValueError(f"images: more than one image for product {images.index[images.index.duplicated()][0]!r}")
    sources = images.map(Path)
    names = pd.Series(images.index.map(lambda pid: _SAFE_NAME.sub("_", str(pid))), index=images.index)
    # Distinct ids can sanitise to one name ("a/b", "a_b"): number the repeats.
    repeat = names.groupby(names).cumcount()
    names = names.where(repeat == 0, names + "-" + repeat.astype(str))
    relative = C.IMAGES_DIR + "/" + names + sources.map(lambda p: p.suffix.lower())
    (stage / C.IMAGES_DIR).mkdir()
    for source, target in zip(sources, relative):
        if not source.is_file():
            raise FileNotFoundError(f"image {source} does not exist")
        shutil.copyfile(source, stage / target)
    return product_ids.map(relative).astype(object).where(product_ids.isin(relative.index), None)


def _move_into_place(stage: Path, shop_dir: Path) -> None:
    if not shop_dir.exists():
        os.rename(stage, shop_dir)
        stage.mkdir()  # the caller's cleanup removes an empty stage
        return
    for name in SHOP_OUTPUTS:  # only what an import writes, never a user's other files
        old = shop_dir / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for name in SHOP_OUTPUTS:
        if (stage / name).exists():
            os.replace(stage / name, shop_dir / name)
