"""Session click logs (YooChoose / RecSys Challenge 2015, Diginetica / CIKM Cup 2016) -> a click-only shop.

The session-recommendation benchmarks publish bare clicks: a session, an
item, a time, sometimes a user. The shop gets one `click` event per line and
an id-only catalogue (`product_id`, `created_at` = the product's first click;
no title or category, so only the behavioural families train on it).

Dialects, recognised from the first line (or forced with `dialect=`):

- ``yoochoose``: the prepared files of the session-rec benchmarks
  (rn5l/session-rec ``data/rsc15/prepared``), tab-separated
  ``SessionId, ItemId, Time`` with Time in Unix seconds (UTC by definition).
  A header line is optional; without one the columns are taken in that order.
- ``yoochoose-raw``: the challenge's own ``yoochoose-clicks.dat``, no header,
  comma-separated ``session, timestamp, item, category`` with ISO-8601 UTC
  timestamps (``2014-04-07T10:51:09.277Z``). The category is per click and
  mostly ``0`` (unknown), so it is not used.
- ``diginetica``: ``train-item-views.csv``, ``;``-separated
  ``session_id;user_id;item_id;timeframe;eventdate`` (or the original
  camel-case header ``sessionId;userId;itemId;...``). `timeframe` is the time
  since the session's first event in milliseconds and `eventdate` the
  calendar day of the event; the day of the session's *first* event plus
  `timeframe` gives each click's timestamp. Taking each event's own date
  instead would put a session that crosses midnight a day apart and out of
  order. The dataset gives no time of day and no time zone: a session reads
  as starting at 00:00 UTC on its day, so order within a session is exact
  and across sessions exact to the day.

Users: the shop contract needs a `user_id` on every event. Where the source
names a user (Diginetica, when `user_id` is filled in) it is kept; otherwise
the session stands in for the user as ``session:<session_id>`` (the prefix
keeps a session from merging with a real user of the same number).

SOURCE is one file, or a folder. A folder holding one ``*train_full*`` (or
``*_train``) file and one ``*test*`` file, as session-rec prepares them, is
imported as one shop and the split is kept in ``<shop>/import.json``:
`split.time` is the first test timestamp, and the given split is recovered
as training data = events strictly before it, test = sessions whose first
click is at or after it (see `read_split`). A folder with a single data file
is imported like that file.

Rules: a line with an empty session or item id, or a time that does not
parse, stops the import with the file, column and an example row; nothing
is dropped. Item ids are kept as written (strings).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.importers.io import Log, SourceError, id_strings, read_csv, reject_rows, require_columns, write_shop

YOOCHOOSE, YOOCHOOSE_RAW, DIGINETICA = "yoochoose", "yoochoose-raw", "diginetica"
DIALECTS = (YOOCHOOSE, YOOCHOOSE_RAW, DIGINETICA)
IMPORT_FILE = "import.json"  # how the shop was made, and the given train/test split
SESSION_USER_PREFIX = "session:"
DATA_SUFFIXES = (".txt", ".csv", ".tsv", ".dat")


@dataclass(frozen=True)
class Dialect:
    name: str
    sep: str
    # role -> column, as the publisher's header spells it and in its order (the names of a headerless file).
    # Headers are matched without case, blanks or underscores: SessionId == session_id == sessionId.
    columns: dict[str, str]

    def header_in(self, line: str) -> bool:
        return {_normalise(c) for c in self.columns.values()} <= {_normalise(c) for c in line.split(self.sep)}


_DIALECTS = {
    YOOCHOOSE: Dialect(YOOCHOOSE, "\t", {"session": "SessionId", "item": "ItemId", "time": "Time"}),
    YOOCHOOSE_RAW: Dialect(YOOCHOOSE_RAW, ",", {"session": "session", "time": "timestamp", "item": "item",
                                                 "category": "category"}),
    DIGINETICA: Dialect(DIGINETICA, ";", {"session": "session_id", "user": "user_id", "item": "item_id",
                                           "timeframe": "timeframe", "date": "eventdate"}),
}


def import_shop(source: Path, shop_dir: Path, *, overwrite: bool = False, dialect: str | None = None,
                log: Log = print) -> Path:
    """Import click log(s) at `source` (a file or a folder) into the shop `shop_dir`; return `shop_dir`."""
    if dialect is not None and dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")
    files = source_files(Path(source))
    parts = {role: read_clicks(path, dialect) for role, path in files.items()}
    dialects = {clicks.attrs["dialect"] for clicks in parts.values()}
    if len(dialects) > 1:
        raise SourceError(Path(files["test"]).name, None,
                          f"is in dialect {parts['test'].attrs['dialect']}, but the training file is in "
                          f"{parts['train'].attrs['dialect']}; both files must be the same dialect")
    events = pd.concat(list(parts.values()), ignore_index=True)
    # Time order, file order within a tie (YooChoose has clicks in the same millisecond).
    events = events.sort_values(C.TS, kind="stable", ignore_index=True)
    products = (events.groupby(C.PRODUCT_ID, sort=True)[C.TS].min().rename(C.CREATED_AT).reset_index()
                .sort_values([C.CREATED_AT, C.PRODUCT_ID], kind="stable", ignore_index=True))

    meta = {
        "format": "session-clicks",
        "dialect": dialects.pop(),
        "source": str(Path(source).resolve()),
        "files": {role: _file_summary(path, parts[role]) for role, path in files.items()},
        "split": _split(parts, log) if "test" in parts else None,
    }
    write_shop(shop_dir, products, events, overwrite=overwrite, log=log)
    _write_json(meta, Path(shop_dir) / IMPORT_FILE)
    users = events[C.USER_ID].str.startswith(SESSION_USER_PREFIX)
    log(f"session-clicks ({meta['dialect']}): {len(events)} clicks, {events[C.SESSION_ID].nunique()} sessions, "
        f"{len(products)} products; {int(users.sum())} clicks without a user id use their session as user"
        + (f"; split at {meta['split']['time']}" if meta["split"] else ""))
    return Path(shop_dir)


def read_split(shop_dir: Path) -> pd.Timestamp | None:
    """The train/test split time recorded by the import (None if the shop has none).

    Training data is every event strictly before it; the test sessions are
    those whose first click is at or after it.
    """
    path = Path(shop_dir) / IMPORT_FILE
    if not path.is_file():
        return None
    split = json.loads(path.read_text()).get("split")
    return pd.Timestamp(split["time"]).tz_convert("UTC") if split else None


# -- finding and reading the source ------------------------------------------------
def source_files(source: Path) -> dict[str, Path]:
    """{"all": file} for a single log, {"train": file, "test": file} for a prepared split."""
    if source.is_file():
        return {"all": source}
    if not source.is_dir():
        raise SourceError(source.name, None, f"not found at {source}")
    files = sorted(p for p in source.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in DATA_SUFFIXES)
    test = [p for p in files if re.search(r"test", p.stem, re.IGNORECASE)]
    train = [p for p in files if re.search(r"train_full", p.stem, re.IGNORECASE)] or \
            [p for p in files if re.search(r"(^|[_-])train$", p.stem, re.IGNORECASE)]
    if len(test) == 1 and len(train) == 1:
        return {"train": train[0], "test": test[0]}
    if len(files) == 1:
        return {"all": files[0]}
    raise SourceError(source.name, None,
                      f"holds {[p.name for p in files]}: expected one click log, or one *train_full* (or *_train) "
                      "and one *test* file; point SOURCE at the file to import")


def read_clicks(path: Path, dialect: str | None = None) -> pd.DataFrame:
    """One click log as contract events (session_id, user_id, product_id, event_type, ts), in file order.

    `attrs["dialect"]` names the dialect it was read as.
    """
    first = _first_line(path)
    spec = _DIALECTS[dialect] if dialect else _detect(path, first)
    header = spec.header_in(first)
    if not header and not _looks_like_data(first, spec):
        raise SourceError(path.name, None, f"first line {first!r} is neither a {spec.name} header "
                          f"({spec.sep.join(spec.columns.values())!r}) nor a {spec.name} data line")
    names = list(spec.columns.values())
    raw = read_csv(path, sep=spec.sep, dtype=str, keep_default_na=False, header=0 if header else None,
                   names=None if header else names[: len(first.split(spec.sep))])
    # role -> the column as the file spells it, so that errors quote the file's own header.
    spelled = {_normalise(name): name for name in raw.columns}
    col = {role: spelled.get(_normalise(name), name) for role, name in spec.columns.items()}
    require_columns(raw, path.name, col.values())
    if raw.empty:
        raise SourceError(path.name, None, "has no clicks")
    keys = [col["session"], col["item"]]
    for role in ("session", "item"):
        raw[col[role]] = raw[col[role]].str.strip()
        reject_rows(raw, raw[col[role]].eq(""), path.name, col[role], "must not be empty", keys)
    ts = _TIMES[spec.name](raw, path.name, col, keys)  # a DatetimeIndex in UTC, one per row
    session = raw[col["session"]]
    user = None
    if "user" in col:
        # "NA" is how the Diginetica files write a missing user.
        user = id_strings(raw[col["user"]].mask(raw[col["user"]].str.strip().isin(["", "NA", "NaN", "null"])))
    fallback = SESSION_USER_PREFIX + session
    events = pd.DataFrame({
        C.SESSION_ID: session.to_numpy(dtype=object),
        C.USER_ID: fallback.to_numpy(dtype=object) if user is None else user.fillna(fallback).to_numpy(dtype=object),
        C.PRODUCT_ID: raw[col["item"]].to_numpy(dtype=object),
        C.EVENT_TYPE: C.CLICK,
        C.TS: ts,  # a DatetimeIndex, datetime64[ns, UTC]
    })
    events.attrs["dialect"] = spec.name
    return events


def _first_line(path: Path) -> str:
    if not path.is_file():
        raise SourceError(path.name, None, f"not found at {path}")
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        line = handle.readline().rstrip("\r\n")
    if not line.strip():
        raise SourceError(path.name, None, "is empty (no header or click on its first line)")
    return line


def _detect(path: Path, first: str) -> Dialect:
    """The dialect whose header (or, for a headerless file, whose data line) the first line is."""
    for spec in _DIALECTS.values():
        if spec.header_in(first):
            return spec
    for spec in _DIALECTS.values():
        if _looks_like_data(first, spec):
            return spec
    raise SourceError(path.name, None, f"cannot tell the click-log dialect from the first line {first!r}; "
                      f"expected a header like 'SessionId<TAB>ItemId<TAB>Time' or "
                      f"'session_id;user_id;item_id;timeframe;eventdate', or pass dialect= one of {', '.join(DIALECTS)}")


def _looks_like_data(line: str, spec: Dialect) -> bool:
    fields = line.split(spec.sep)
    if spec.name == YOOCHOOSE:
        return len(fields) == 3 and all(_is_number(f) for f in fields)
    if spec.name == YOOCHOOSE_RAW:
        return len(fields) == 4 and bool(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z?", fields[1].strip()))
    return len(fields) == 5 and bool(re.fullmatch(r"\d{4}-\d\d-\d\d", fields[4].strip()))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _normalise(name: str) -> str:
    """Header spellings compared without case, blanks or underscores: SessionId == session_id."""
    return re.sub(r"[\s_]", "", str(name)).lower()


# -- timestamps, one function per dialect ---------------------------------------------
def _unix_seconds(raw: pd.DataFrame, file: str, col: dict, keys: list[str]) -> pd.Series:
    seconds = pd.to_numeric(raw[col["time"]], errors="coerce")
    reject_rows(raw, ~np.isfinite(seconds), file, col["time"], "must be a Unix time in seconds (e.g. 1396437466.94)",
                keys)
    # Whole milliseconds: the files carry three decimals, and float seconds would round unevenly.
    return pd.to_datetime(np.round(seconds.to_numpy() * 1000).astype(np.int64), unit="ms", utc=True).as_unit("ns")


def _iso_utc(raw: pd.DataFrame, file: str, col: dict, keys: list[str]) -> pd.Series:
    text = raw[col["time"]].str.strip()
    ts = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    reject_rows(raw, ts.isna(), file, col["time"], "must be an ISO-8601 UTC time like 2014-04-07T10:51:09.277Z",
                keys)
    return pd.DatetimeIndex(ts).as_unit("ns")


def _day_plus_timeframe(raw: pd.DataFrame, file: str, col: dict, keys: list[str]) -> pd.Series:
    day = pd.to_datetime(raw[col["date"]].str.strip(), format="%Y-%m-%d", errors="coerce")
    reject_rows(raw, day.isna(), file, col["date"], "must be a date like 2016-05-09", keys)
    frame = pd.to_numeric(raw[col["timeframe"]], errors="coerce")
    reject_rows(raw, ~(np.isfinite(frame) & (frame >= 0)), file, col["timeframe"],
                "must be milliseconds since the session's first event (a number >= 0)", keys)
    start = day.groupby(raw[col["session"]]).transform("min")
    ts = start + pd.to_timedelta(np.round(frame.to_numpy()).astype(np.int64), unit="ms")
    return pd.DatetimeIndex(ts).tz_localize("UTC").as_unit("ns")


_TIMES = {YOOCHOOSE: _unix_seconds, YOOCHOOSE_RAW: _iso_utc, DIGINETICA: _day_plus_timeframe}


# -- what the import records -------------------------------------------------------
def _file_summary(path: Path, clicks: pd.DataFrame) -> dict:
    return {"file": path.name, "clicks": len(clicks), "sessions": int(clicks[C.SESSION_ID].nunique()),
            "items": int(clicks[C.PRODUCT_ID].nunique()),
            "first": clicks[C.TS].min().isoformat(), "last": clicks[C.TS].max().isoformat()}


def _split(parts: dict[str, pd.DataFrame], log: Log) -> dict:
    """The given split as a time, and how exactly that time reproduces it."""
    train, test = parts["train"], parts["test"]
    time = test[C.TS].min()
    late = int((train[C.TS] >= time).sum())
    shared = int(np.isin(test[C.SESSION_ID].unique(), train[C.SESSION_ID].unique()).sum())
    unseen = int((~test[C.PRODUCT_ID].isin(train[C.PRODUCT_ID])).sum())
    if late or shared:
        log(f"split: {late} training clicks at or after the first test click and {shared} sessions in both files; "
            "splitting by time leaves those out of training")
    return {"time": time.isoformat(),
            "rule": "train: events strictly before time; test: sessions whose first click is at or after time",
            "train_clicks_at_or_after_time": late, "sessions_in_both_files": shared,
            "test_clicks_on_items_not_in_train": unseen}


def _write_json(data: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
