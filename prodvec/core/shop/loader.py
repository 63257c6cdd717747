"""Read a shop directory and enforce every rule of the data contract.

Everything is checked before any training starts, and nothing is repaired or
silently dropped: a row that breaks a rule stops the load with a
`ContractError` naming the file, the column, the rule and one bad row. The one
exception is opt-in: `drop_unknown_products=True` drops events and order lines
whose product is not in the catalogue, and says how many.

Accepted representations are normalised so downstream code sees one of each:
string columns become object columns of Python `str` (None for null),
timestamps become `datetime64[ns, UTC]`, prices `float64`, `returned` `bool`.

The rules live in two places per file: a table of columns (type, whether the
column and its values are required), then a short function with the rules
that look at values or at other columns, one line per rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import infer_dtype, is_bool_dtype, is_numeric_dtype, is_string_dtype

from prodvec.core import columns as C
from prodvec.core.shop.errors import ContractError
from prodvec.core.shop.model import Shop

STRING, TIMESTAMP, FLOAT, BOOL = "string", "timestamp", "float", "bool"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Col:
    name: str
    kind: str
    required: bool = True  # the file must have this column
    nullable: bool = False
    nonempty: bool = False  # strings: "" and blanks are rejected too


# -- the contract, one table per file -----------------------------------------
PRODUCT_COLUMNS = (
    Col(C.PRODUCT_ID, STRING, nonempty=True),
    Col(C.CREATED_AT, TIMESTAMP),
    Col(C.TITLE, STRING, required=False, nonempty=True),
    Col(C.DESCRIPTION, STRING, required=False, nullable=True),
    Col(C.CATEGORY, STRING, required=False),
    Col(C.PRICE, FLOAT, required=False),
    Col(C.IMAGE_PATH, STRING, required=False, nullable=True),
)
EVENT_COLUMNS = (
    Col(C.SESSION_ID, STRING, nonempty=True),
    Col(C.USER_ID, STRING, nonempty=True),
    Col(C.PRODUCT_ID, STRING),
    Col(C.EVENT_TYPE, STRING),
    Col(C.TS, TIMESTAMP),
)
ORDER_COLUMNS = (
    Col(C.ORDER_ID, STRING, nonempty=True),
    Col(C.USER_ID, STRING, nonempty=True),
    Col(C.PRODUCT_ID, STRING),
    Col(C.ORDERED_AT, TIMESTAMP),
    Col(C.PRICE, FLOAT),
    Col(C.SIZE, STRING, nullable=True),
    Col(C.RETURNED, BOOL),
    Col(C.RETURNED_AT, TIMESTAMP, nullable=True),
)
# Columns shown in every error example, so the bad row can be found.
KEYS = {
    C.PRODUCTS_FILE: (C.PRODUCT_ID,),
    C.EVENTS_FILE: (C.SESSION_ID, C.PRODUCT_ID),
    C.ORDERS_FILE: (C.ORDER_ID, C.PRODUCT_ID),
}


def _product_rules(t: _Table, root: Path) -> None:
    df = t.df
    t.fail_if(C.PRODUCT_ID, df[C.PRODUCT_ID].duplicated(keep=False), "must be unique")
    if C.PRICE in df:
        t.fail_if(C.PRICE, ~_positive(df[C.PRICE]), "must be > 0 and finite")
    if C.IMAGE_PATH in df:
        path = df[C.IMAGE_PATH]
        t.fail_if(C.IMAGE_PATH, path.str.match(r"[/\\]|[A-Za-z]:", na=False),
                  "must be relative to the shop directory (no leading '/')")
        t.fail_if(C.IMAGE_PATH, path.str.contains(r"(?:^|[/\\])\.\.(?:[/\\]|$)", na=False),
                  "must stay inside the shop directory (no '..')")
        t.fail_if(C.IMAGE_PATH, path.notna() & ~path.str.lower().str.endswith(IMAGE_SUFFIXES, na=False),
                  "must be a PNG or JPEG file (.png, .jpg, .jpeg)")
        # One stat per distinct path: the file system has no vectorised exists().
        missing = [p for p in path.dropna().unique() if not (root / p).is_file()]
        t.fail_if(C.IMAGE_PATH, path.isin(missing), f"image file does not exist under {root}")
        # A symlink (of the file or of a directory on its way) may lead anywhere: what is
        # read must be inside the shop, whatever the name says.
        inside = root.resolve()
        escaping = [p for p in path.dropna().unique() if not (root / p).resolve().is_relative_to(inside)]
        t.fail_if(C.IMAGE_PATH, path.isin(escaping),
                  f"must stay inside the shop directory (it leads outside {inside} through a symlink)")


def _event_rules(t: _Table) -> None:
    t.fail_if(C.EVENT_TYPE, ~t.df[C.EVENT_TYPE].isin(C.EVENT_TYPES), f"must be one of {', '.join(C.EVENT_TYPES)}")


def _order_rules(t: _Table) -> None:
    df = t.df
    returned, returned_at = df[C.RETURNED], df[C.RETURNED_AT]
    t.fail_if(C.PRICE, ~_positive(df[C.PRICE]), "must be > 0 and finite")
    t.fail_if(C.RETURNED_AT, ~returned & returned_at.notna(), "must be null unless returned is True",
              show=(C.RETURNED,))
    t.fail_if(C.RETURNED_AT, returned & returned_at.isna(), "is required when returned is True",
              show=(C.RETURNED,))
    t.fail_if(C.RETURNED_AT, returned_at < df[C.ORDERED_AT], f"must not be before {C.ORDERED_AT}",
              show=(C.ORDERED_AT,))


def _positive(price: pd.Series) -> pd.Series:
    return np.isfinite(price) & (price > 0)


# -- loading -------------------------------------------------------------------
def load_shop(
    path: str | Path,
    *,
    drop_unknown_products: bool = False,
    log: Callable[[str], None] = print,
) -> Shop:
    """Read and check a shop directory; raise `ContractError` at the first broken rule.

    With `drop_unknown_products`, events and order lines whose product_id is
    not in products.parquet are dropped (one log line per file) instead of
    rejected; every other rule still applies to them first.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ContractError(C.PRODUCTS_FILE, None, f"shop directory {str(root)!r} does not exist")

    products = _read(root, C.PRODUCTS_FILE, PRODUCT_COLUMNS)
    if products is None:
        raise ContractError(C.PRODUCTS_FILE, None, f"is missing from {root} (it is required)")
    if len(products.df) == 0:
        raise ContractError(C.PRODUCTS_FILE, None, "has no rows; a shop needs at least one product")
    _product_rules(products, root)
    _normalise_side_info(products.df)

    events = _read(root, C.EVENTS_FILE, EVENT_COLUMNS)
    if events is not None:
        _event_rules(events)
    orders = _read(root, C.ORDERS_FILE, ORDER_COLUMNS)
    if orders is not None:
        _order_rules(orders)

    for table in (products, events, orders):
        if table is not None:
            _warn_future(table, log)

    # References last: every row, even one about to be dropped, obeys the rules above.
    known = products.df[C.PRODUCT_ID]
    return Shop(
        root=root,
        products=products.df,
        events=None if events is None else _known_products(events, known, drop_unknown_products, log),
        orders=None if orders is None else _known_products(orders, known, drop_unknown_products, log),
    )


# Later than this is a typo or a wrong unit (ms read as s), not data: warned about with examples.
FUTURE_SLACK = pd.Timedelta(days=1)


def _warn_future(t: _Table, log: Callable[[str], None]) -> None:
    """Timestamps after now are accepted (a listing may be scheduled) but said, with the first one."""
    now = pd.Timestamp.now(tz="UTC")
    for name in t.df.columns:
        values = t.df[name]
        if values.dtype == _UTC_NS:
            future = (values > now + FUTURE_SLACK).to_numpy()
            if future.any():
                rule = (f"lies in the future (after {now:%Y-%m-%d}); such rows count as known only from "
                        "that time on: check the unit and the year")
                log(f"warning: {t.error(name, rule, future)}")


def _read(root: Path, file: str, spec: tuple[Col, ...]) -> _Table | None:
    """The file's table with every column checked and normalised; None if there is no file."""
    path = root / file
    if not path.exists():
        return None
    if path.is_dir():
        raise ContractError(file, None, f"is a directory ({path}), not a parquet file; write the table to one "
                                        f"file, e.g. df.to_parquet({str(path)!r})")
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise _unreadable(path, file) or ContractError(file, None, f"cannot be read as parquet ({exc})") from exc
    index = df.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None):
        # pandas stored a non-default index; in the file it is just more columns.
        # Named levels come back as columns, unnamed ones (leftover row labels) go.
        df = df.reset_index(drop=all(name is None for name in index.names))
    table = _Table(file, df, KEYS[file])
    for col in spec:
        table.check_column(col)
    return table


def _unreadable(path: Path, file: str) -> ContractError | None:
    """The column and row that stop a readable parquet file from loading (invalid UTF-8 in a string column)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException):
        return None
    for name in table.column_names:
        column = table.column(name)
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        binary = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
        raw = pa.chunked_array([chunk.view(binary) for chunk in column.chunks], binary)
        for row, value in enumerate(raw.to_pylist()):
            try:
                value is None or value.decode("utf-8")
            except UnicodeDecodeError as error:
                return ContractError(file, name, "must be valid UTF-8 text; re-export it with the right encoding "
                                                 f"({error.reason} at byte {error.start})",
                                     example={name: value.decode("utf-8", errors="replace")}, row=row,
                                     count=sum(1 for v in raw.to_pylist() if v is not None and not _utf8(v)))
    return None


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _known_products(t: _Table, known: pd.Series, drop: bool, log: Callable[[str], None]) -> pd.DataFrame:
    unknown = ~t.df[C.PRODUCT_ID].isin(known)
    if not unknown.any():
        return t.df
    err = t.error(C.PRODUCT_ID, f"must exist in {C.PRODUCTS_FILE} "
                                "(or load with drop_unknown_products=True to drop such rows)", unknown)
    if not drop:
        raise err
    log(f"{t.file}: dropped {err.count} rows whose {C.PRODUCT_ID} is not in {C.PRODUCTS_FILE} "
        f"(e.g. row {err.row}: {err.example})")
    return t.df[~unknown.to_numpy()].reset_index(drop=True)


def _normalise_side_info(df: pd.DataFrame) -> None:
    """Other string columns of products are side information; give them the one string form.

    Non-string extra columns (stock counts, weights, ...) are allowed and left alone.
    """
    for name in df.columns:
        if name not in C.PRODUCT_CORE_COLUMNS and df[name].dtype != object and _string_like(df[name]):
            df[name] = _to_object(df[name])


# -- one table being checked -----------------------------------------------------
@dataclass
class _Table:
    file: str
    df: pd.DataFrame
    keys: tuple[str, ...]

    def fail_if(self, column: str, bad, rule: str, show: tuple[str, ...] = ()) -> None:
        """Raise for `rule` when any row of the boolean mask `bad` is set."""
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            raise self.error(column, rule, bad, show)

    def error(self, column: str | None, rule: str, bad, show: tuple[str, ...] = ()) -> ContractError:
        """The error for `rule`, with the count of bad rows and the first one as example."""
        rows = np.flatnonzero(np.asarray(bad, dtype=bool))
        if len(rows) == 0:
            return ContractError(self.file, column, rule)
        row = int(rows[0])
        shown = [c for c in dict.fromkeys((*self.keys, *show, column)) if c in self.df.columns]
        example = {c: _printable(self.df[c].iat[row]) for c in shown}
        return ContractError(self.file, column, rule, example=example, row=row, count=len(rows))

    def check_column(self, col: Col) -> None:
        """Type, nulls and emptiness of one column; stores its normalised form."""
        if col.name not in self.df.columns:
            if col.required:
                hint = f"; found {list(self.df.columns)}"
                raise ContractError(self.file, col.name, f"required column is missing{hint}")
            return
        values = _CONVERT[col.kind](self, col.name, self.df[col.name])
        if not col.nullable:
            self.fail_if(col.name, values.isna(), "must not be null")
        if col.nonempty:
            self.fail_if(col.name, values.str.strip().eq(""), "must not be empty")
        if col.kind == BOOL:
            values = values.astype(bool)  # no nulls left: a BOOL column is never nullable
        if values is not self.df[col.name]:
            self.df[col.name] = values

    def wrong_type(self, name: str, values: pd.Series, expected: str, hint: str = "",
                   bad: pd.Series | None = None) -> ContractError:
        if len(values) == 0:  # an empty file whose column has the wrong type: no row to show
            return ContractError(self.file, name, f"must be {expected}, got {values.dtype}{hint}")
        bad = values.notna() if bad is None else bad
        if not bad.any():  # an all-null column of the wrong type: show its first row
            bad = pd.Series(True, index=values.index)
        first = values[bad.to_numpy()].iloc[0]
        found = values.dtype if values.dtype != object else type(first).__name__
        return self.error(name, f"must be {expected}, got {found}{hint}", bad)


# -- types: check one and normalise it -------------------------------------------
def _as_string(t: _Table, name: str, values: pd.Series) -> pd.Series:
    if values.dtype == object:
        if infer_dtype(values, skipna=True) in ("string", "empty"):
            return values
        # Only on the way to an error: find which rows are not strings.
        bad = values.notna() & ~values.map(lambda v: isinstance(v, str))
    elif _string_like(values):
        return _to_object(values)
    else:
        bad = None
    held = infer_dtype(values, skipna=True)
    if held in ("integer", "floating", "mixed-integer-float", "decimal"):
        hint = f"; cast it to string first, e.g. df[{name!r}] = df[{name!r}].astype(str)"
    elif held == "bytes":
        hint = f"; decode it first, e.g. df[{name!r}] = df[{name!r}].str.decode('utf-8')"
    else:
        hint = ""
    raise t.wrong_type(name, values, "a string", hint, bad=bad)


def _as_timestamp(t: _Table, name: str, values: pd.Series) -> pd.Series:
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_timestamp(dtype.pyarrow_dtype):
        tz = dtype.pyarrow_dtype.tz
        if tz is not None:
            values = values.astype(pd.DatetimeTZDtype(dtype.pyarrow_dtype.unit, tz))
    elif isinstance(dtype, pd.DatetimeTZDtype):
        tz = dtype.tz
    elif isinstance(dtype, np.dtype) and dtype.kind == "M":
        tz = None
    else:
        strings = " (strings are not parsed)" if _string_like(values) or dtype == object else ""
        raise t.wrong_type(name, values, "a timestamp with a time zone", strings)
    if tz is None:
        raise t.wrong_type(name, values, "a timestamp with a time zone",
                           " (naive: time zones are not guessed; write it tz-aware, "
                           "e.g. with .dt.tz_localize('UTC') if it is UTC)")
    if values.dtype == _UTC_NS:
        return values
    values = values.dt.tz_convert("UTC")
    out_of_range = (values < pd.Timestamp.min.tz_localize("UTC")) | (values > pd.Timestamp.max.tz_localize("UTC"))
    t.fail_if(name, out_of_range, "must lie between 1677-09-22 and 2262-04-11 (pandas' nanosecond range)")
    return values.dt.as_unit("ns")


def _as_float(t: _Table, name: str, values: pd.Series) -> pd.Series:
    if values.dtype == np.float64:
        return values
    if is_numeric_dtype(values.dtype) and not is_bool_dtype(values.dtype):
        return pd.Series(values.to_numpy(dtype=np.float64, na_value=np.nan), index=values.index, name=name)
    raise t.wrong_type(name, values, "a number (float64)")


def _as_bool(t: _Table, name: str, values: pd.Series) -> pd.Series:
    # pyarrow hands a bool column with nulls over as object; the null rule reports those.
    if is_bool_dtype(values.dtype):
        return values
    if values.dtype == object and infer_dtype(values, skipna=True) in ("boolean", "empty"):
        return values
    raise t.wrong_type(name, values, "a bool (True/False)")


_CONVERT = {STRING: _as_string, TIMESTAMP: _as_timestamp, FLOAT: _as_float, BOOL: _as_bool}
_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def _string_like(values: pd.Series) -> bool:
    """pandas/pyarrow string dtypes, and dictionary-encoded (categorical) strings."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return infer_dtype(dtype.categories, skipna=True) == "string"
    return dtype != object and is_string_dtype(dtype)


def _to_object(values: pd.Series) -> pd.Series:
    return pd.Series(values.to_numpy(dtype=object, na_value=None), index=values.index, name=values.name)


def _printable(value):
    """A cell as a plain Python value, so error messages read like the data."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value
