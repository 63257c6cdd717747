"""The shop contract: every rule rejects a bad row with a message naming file, column and value."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from prodvec.core import columns as C
from prodvec.core.shop import ContractError, Shop, load_shop
from tests.shop_factory import make_shop, shop_tables

P, E, O = C.PRODUCTS_FILE, C.EVENTS_FILE, C.ORDERS_FILE
TABLE = {P: "products", E: "events", O: "orders"}


# -- mutations ------------------------------------------------------------------
def put(file: str, column: str, row: int, value) -> Callable:
    """Set one cell."""
    def mutate(tables):
        tables[TABLE[file]].loc[row, column] = value
    return mutate


def replace(file: str, column: str, fn: Callable[[pd.Series], pd.Series]) -> Callable:
    """Replace a whole column (to change its type)."""
    def mutate(tables):
        df = tables[TABLE[file]]
        df[column] = fn(df[column])
    return mutate


def drop(file: str, column: str) -> Callable:
    def mutate(tables):
        del tables[TABLE[file]][column]
    return mutate


def nulled(row: int):
    """A column made object with a null at `row` (for types that cannot hold one)."""
    return lambda s: s.astype(object).where(s.index != row, None)


def before_ordering(s: pd.Series) -> pd.Series:
    return s.where(s.index != 1, pd.Timestamp("2020-01-01", tz="UTC"))


def far_future(s: pd.Series) -> pd.Series:
    """A "never" date some exports use, which only a coarser unit than ns can hold."""
    s = s.dt.as_unit("us")
    return s.where(s.index != 1, pd.Timestamp("9999-12-31", tz="UTC"))


@dataclass(frozen=True)
class Rule:
    id: str
    file: str
    column: str
    mutate: Callable
    shows: str  # must appear in the message: the bad value, as the example prints it


RULES = [
    # products.parquet
    Rule("product_id-required", P, C.PRODUCT_ID, drop(P, C.PRODUCT_ID), "required column is missing"),
    Rule("product_id-string-not-int", P, C.PRODUCT_ID, replace(P, C.PRODUCT_ID, lambda s: np.arange(len(s))),
         "'product_id': 0}"),
    Rule("product_id-not-null", P, C.PRODUCT_ID, put(P, C.PRODUCT_ID, 2, None), "row 2: {'product_id': None}"),
    Rule("product_id-not-empty", P, C.PRODUCT_ID, put(P, C.PRODUCT_ID, 3, " "), "row 3: {'product_id': ' '}"),
    Rule("product_id-unique", P, C.PRODUCT_ID, put(P, C.PRODUCT_ID, 5, "P002"), "'product_id': 'P002'"),
    Rule("created_at-required", P, C.CREATED_AT, drop(P, C.CREATED_AT), "required column is missing"),
    Rule("created_at-naive-rejected", P, C.CREATED_AT, replace(P, C.CREATED_AT, lambda s: s.dt.tz_localize(None)),
         "'created_at': '2024-01-01T00:00:00'"),
    Rule("created_at-string-rejected", P, C.CREATED_AT, replace(P, C.CREATED_AT, lambda s: s.astype(str)),
         "'created_at': '2024-01-01 00:00:00+00:00'"),
    Rule("created_at-not-null", P, C.CREATED_AT, put(P, C.CREATED_AT, 4, pd.NaT), "row 4: {'product_id': 'P004', "
         "'created_at': None}"),
    Rule("title-string", P, C.TITLE, replace(P, C.TITLE, lambda s: np.arange(len(s)) + 42), "'title': 42}"),
    Rule("description-string", P, C.DESCRIPTION, replace(P, C.DESCRIPTION, lambda s: s.str.encode("utf-8")),
         ".str.decode('utf-8') — 17 bad rows, e.g. row 0: {'product_id': 'P000', 'description': b'A red"),
    Rule("title-not-empty", P, C.TITLE, put(P, C.TITLE, 6, ""), "row 6: {'product_id': 'P006', 'title': ''}"),
    Rule("title-not-null", P, C.TITLE, put(P, C.TITLE, 6, None), "'title': None"),
    Rule("category-not-null", P, C.CATEGORY, put(P, C.CATEGORY, 8, None), "row 8: {'product_id': 'P008', "
         "'category': None}"),
    Rule("price-number", P, C.PRICE, replace(P, C.PRICE, lambda s: s.astype(str)), "'price': '"),
    Rule("price-positive", P, C.PRICE, put(P, C.PRICE, 17, -3.0), "row 17: {'product_id': 'P017', 'price': -3.0}"),
    Rule("price-finite", P, C.PRICE, put(P, C.PRICE, 1, np.inf), "'price': inf"),
    Rule("price-not-null", P, C.PRICE, put(P, C.PRICE, 9, None), "'price': None"),
    Rule("image_path-relative", P, C.IMAGE_PATH, put(P, C.IMAGE_PATH, 2, "/etc/x.png"), "'/etc/x.png'"),
    Rule("image_path-inside-shop", P, C.IMAGE_PATH, put(P, C.IMAGE_PATH, 2, "images/../../x.png"),
         "'images/../../x.png'"),
    Rule("image_path-png-or-jpeg", P, C.IMAGE_PATH, put(P, C.IMAGE_PATH, 2, "images/P002.gif"), "'images/P002.gif'"),
    Rule("image_path-file-exists", P, C.IMAGE_PATH, put(P, C.IMAGE_PATH, 2, "images/nope.jpg"), "'images/nope.jpg'"),
    # events.parquet
    Rule("events-ts-required", E, C.TS, drop(E, C.TS), "required column is missing"),
    Rule("session_id-not-empty", E, C.SESSION_ID, put(E, C.SESSION_ID, 7, ""), "row 7: {'session_id': ''"),
    Rule("events-user_id-not-null", E, C.USER_ID, put(E, C.USER_ID, 7, None), "'user_id': None"),
    Rule("events-product_id-exists", E, C.PRODUCT_ID, put(E, C.PRODUCT_ID, 11, "P999"), "row 11: {'session_id': "
         "'S002', 'product_id': 'P999'}"),
    Rule("event_type-allowed", E, C.EVENT_TYPE, put(E, C.EVENT_TYPE, 3, "view"), "'event_type': 'view'"),
    Rule("ts-naive-rejected", E, C.TS, replace(E, C.TS, lambda s: s.dt.tz_localize(None)),
         "'ts': '2024-01-21T00:00:00'"),
    # orders.parquet
    Rule("order_id-not-empty", O, C.ORDER_ID, put(O, C.ORDER_ID, 4, ""), "row 4: {'order_id': ''"),
    Rule("orders-user_id-not-empty", O, C.USER_ID, put(O, C.USER_ID, 4, ""), "'user_id': ''"),
    Rule("orders-product_id-exists", O, C.PRODUCT_ID, put(O, C.PRODUCT_ID, 5, "X1"), "'product_id': 'X1'"),
    Rule("ordered_at-naive-rejected", O, C.ORDERED_AT, replace(O, C.ORDERED_AT, lambda s: s.dt.tz_localize(None)),
         "'ordered_at': '2024-01-21T00:05:00'"),
    Rule("orders-price-positive", O, C.PRICE, put(O, C.PRICE, 3, 0.0), "'price': 0.0"),
    Rule("orders-price-not-null", O, C.PRICE, put(O, C.PRICE, 3, None), "'price': None"),
    Rule("size-string", O, C.SIZE, replace(O, C.SIZE, lambda s: np.full(len(s), 38)), "'size': 38"),
    Rule("returned-bool", O, C.RETURNED, replace(O, C.RETURNED, lambda s: s.astype(int)), "'returned': 0"),
    Rule("returned-not-null", O, C.RETURNED, replace(O, C.RETURNED, nulled(2)), "row 2: {'order_id': 'O002', "
         "'product_id': 'P015', 'returned': None}"),
    Rule("returned_at-null-unless-returned", O, C.RETURNED_AT,
         put(O, C.RETURNED_AT, 0, pd.Timestamp("2024-02-01", tz="UTC")), "'returned_at': '2024-02-01T00:00:00+00:00'"),
    Rule("returned_at-required-when-returned", O, C.RETURNED_AT, put(O, C.RETURNED_AT, 1, pd.NaT),
         "'returned': True, 'returned_at': None"),
    Rule("returned_at-not-before-ordered_at", O, C.RETURNED_AT, replace(O, C.RETURNED_AT, before_ordering),
         "'returned_at': '2020-01-01T00:00:00+00:00'"),
    Rule("returned_at-in-nanosecond-range", O, C.RETURNED_AT, replace(O, C.RETURNED_AT, far_future),
         "'returned_at': '9999-12-31T00:00:00+00:00'"),
    Rule("returned_at-naive-rejected", O, C.RETURNED_AT, replace(O, C.RETURNED_AT, lambda s: s.dt.tz_localize(None)),
         "'returned_at': '2024-01-25T01:05:00'"),
]


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_is_enforced(tmp_path, rule):
    root = make_shop(tmp_path, mutate=rule.mutate)
    with pytest.raises(ContractError) as caught:
        load_shop(root, log=pytest.fail)
    err = caught.value
    assert (err.file, err.column) == (rule.file, rule.column)
    assert str(err).startswith(f"{rule.file}, column {rule.column!r}: ")
    assert rule.shows in str(err)


# -- files ------------------------------------------------------------------------
def test_valid_shop_loads_and_loses_nothing(tmp_path):
    tables = shop_tables()
    shop = load_shop(make_shop(tmp_path), log=pytest.fail)

    assert isinstance(shop, Shop)
    for name, df in tables.items():
        loaded = getattr(shop, name)
        assert list(loaded.columns) == list(df.columns)
        pd.testing.assert_frame_equal(loaded, df, check_dtype=False)
    products = shop.products
    assert products[C.DESCRIPTION].isna().any() and (products[C.DESCRIPTION] == "").any()
    assert products[C.IMAGE_PATH].isna().any()
    assert str(products[C.CREATED_AT].dtype) == "datetime64[ns, UTC]"
    assert str(shop.orders[C.RETURNED_AT].dtype) == "datetime64[ns, UTC]"
    assert shop.orders[C.RETURNED].dtype == bool
    assert shop.orders[C.SIZE].isna().any()
    assert all(shop.has(what) for what in ("text", "events", "orders", "images"))


def test_shop_with_only_products_loads(tmp_path):
    root = make_shop(tmp_path, with_events=False, with_orders=False, with_images=False)
    shop = load_shop(root)
    assert shop.events is None and shop.orders is None
    assert len(shop.products) == 20 and not shop.has("images")


def test_extra_string_columns_are_side_info_others_are_kept(tmp_path):
    def extras(tables):
        products = tables["products"]
        products["fabric"] = pd.Series(["cotton", None] * 10, dtype="string")  # null = unknown
        products["season"] = pd.Categorical(["summer", "winter"] * 10)
        products["weight_kg"] = np.linspace(0.1, 2.0, 20)
        products["on_sale"] = [True, False] * 10

    shop = load_shop(make_shop(tmp_path, mutate=extras))
    assert shop.side_info_columns == ["brand", "color", "fabric", "season"]
    assert shop.products["fabric"].tolist()[:2] == ["cotton", None]
    assert shop.products["stock"].dtype == np.int64
    assert shop.products["weight_kg"].dtype == np.float64 and shop.products["on_sale"].dtype == bool


def test_missing_products_file(tmp_path):
    root = make_shop(tmp_path)
    (root / C.PRODUCTS_FILE).unlink()
    with pytest.raises(ContractError, match=r"^products\.parquet: is missing") as caught:
        load_shop(root)
    assert caught.value.file == C.PRODUCTS_FILE and caught.value.column is None


def test_unreadable_file(tmp_path):
    root = make_shop(tmp_path)
    (root / C.EVENTS_FILE).write_text("session_id,product_id\n")
    with pytest.raises(ContractError, match=r"^events\.parquet: cannot be read as parquet"):
        load_shop(root)


def test_empty_catalogue_rejected(tmp_path):
    root = make_shop(tmp_path, mutate=lambda t: {"products": t["products"].iloc[:0]})
    with pytest.raises(ContractError, match="has no rows"):
        load_shop(root)


def test_shop_directory_must_exist(tmp_path):
    with pytest.raises(ContractError, match="does not exist"):
        load_shop(tmp_path / "nowhere")


# -- unknown products ---------------------------------------------------------------
def unknown_products(tables):
    tables["events"].loc[[3, 8], C.PRODUCT_ID] = "GONE"
    tables["orders"].loc[2, C.PRODUCT_ID] = "GONE"


def test_unknown_products_can_be_dropped_and_are_reported(tmp_path):
    root = make_shop(tmp_path, mutate=unknown_products)
    lines = []
    shop = load_shop(root, drop_unknown_products=True, log=lines.append)

    assert len(shop.events) == 100 - 2 and len(shop.orders) == 20 - 1
    assert shop.events.index.equals(pd.RangeIndex(98))
    assert "GONE" not in set(shop.events[C.PRODUCT_ID]) | set(shop.orders[C.PRODUCT_ID])
    assert lines == [
        "events.parquet: dropped 2 rows whose product_id is not in products.parquet "
        "(e.g. row 3: {'session_id': 'S000', 'product_id': 'GONE'})",
        "orders.parquet: dropped 1 rows whose product_id is not in products.parquet "
        "(e.g. row 2: {'order_id': 'O002', 'product_id': 'GONE'})",
    ]


def test_rows_about_to_be_dropped_still_obey_the_other_rules(tmp_path):
    def also_bad_type(tables):
        unknown_products(tables)
        tables["events"].loc[3, C.EVENT_TYPE] = "view"

    with pytest.raises(ContractError, match="event_type"):
        load_shop(make_shop(tmp_path, mutate=also_bad_type), drop_unknown_products=True)


# -- accepted representations, normalised ----------------------------------------------
def test_string_dtypes_are_normalised_to_python_str(tmp_path):
    def string_dtypes(tables):
        tables["products"][C.PRODUCT_ID] = tables["products"][C.PRODUCT_ID].astype("string")
        tables["products"][C.CATEGORY] = tables["products"][C.CATEGORY].astype("category")
        tables["events"][C.SESSION_ID] = tables["events"][C.SESSION_ID].astype(pd.ArrowDtype(pa.string()))
        tables["events"][C.PRODUCT_ID] = tables["events"][C.PRODUCT_ID].astype("string[pyarrow]")
        tables["orders"][C.SIZE] = tables["orders"][C.SIZE].astype("string")

    shop = load_shop(make_shop(tmp_path, mutate=string_dtypes))
    for df, column in [(shop.products, C.PRODUCT_ID), (shop.products, C.CATEGORY),
                       (shop.events, C.SESSION_ID), (shop.events, C.PRODUCT_ID), (shop.orders, C.SIZE)]:
        assert df[column].dtype == object
        assert {type(v) for v in df[column]} <= {str, type(None)}
    assert shop.orders[C.SIZE].isna().any()


def test_timestamps_are_converted_to_utc(tmp_path):
    def other_zones(tables):
        tables["products"][C.CREATED_AT] = tables["products"][C.CREATED_AT].dt.tz_convert("America/New_York")
        tables["events"][C.TS] = tables["events"][C.TS].dt.tz_convert("Asia/Tokyo").dt.as_unit("us")
        ordered = tables["orders"][C.ORDERED_AT].astype(pd.ArrowDtype(pa.timestamp("ms", tz="Europe/Berlin")))
        tables["orders"][C.ORDERED_AT] = ordered

    shop = load_shop(make_shop(tmp_path, mutate=other_zones))
    expected = shop_tables()
    for df, column, want in [(shop.products, C.CREATED_AT, expected["products"][C.CREATED_AT]),
                             (shop.events, C.TS, expected["events"][C.TS]),
                             (shop.orders, C.ORDERED_AT, expected["orders"][C.ORDERED_AT])]:
        assert str(df[column].dtype) == "datetime64[ns, UTC]"
        assert (df[column] == want).all()


def test_integer_prices_become_float(tmp_path):
    def int_prices(tables):
        tables["products"][C.PRICE] = np.arange(1, 21)
        tables["orders"][C.PRICE] = pd.array(np.arange(1, 21), dtype="Int32")

    shop = load_shop(make_shop(tmp_path, mutate=int_prices))
    assert shop.products[C.PRICE].dtype == np.float64 and shop.orders[C.PRICE].dtype == np.float64
    assert shop.products[C.PRICE].iloc[4] == 5.0


def test_image_suffix_is_case_insensitive(tmp_path):
    def jpeg(tables):
        from PIL import Image
        Image.new("RGB", (2, 2)).save(tmp_path / "shop" / "images" / "P000.JPEG", format="JPEG")
        tables["products"].loc[0, C.IMAGE_PATH] = "images/P000.JPEG"

    shop = load_shop(make_shop(tmp_path, mutate=jpeg))
    assert shop.image_file(shop.products[C.IMAGE_PATH].iloc[0]).is_file()


def test_a_written_index_is_read_back_as_a_column(tmp_path):
    root = make_shop(tmp_path)
    products = pd.read_parquet(root / C.PRODUCTS_FILE)
    products.set_index(C.PRODUCT_ID).to_parquet(root / C.PRODUCTS_FILE)
    events = pd.read_parquet(root / C.EVENTS_FILE)
    events.iloc[::2].to_parquet(root / C.EVENTS_FILE)  # leftover row labels 0, 2, 4, ...

    shop = load_shop(root)
    assert shop.products[C.PRODUCT_ID].tolist() == products[C.PRODUCT_ID].tolist()
    assert shop.events.index.equals(pd.RangeIndex(50)) and list(shop.events.columns) == list(events.columns)


def test_rows_keep_their_order(tmp_path):
    shuffle = np.random.default_rng(1).permutation
    root = make_shop(tmp_path, mutate=lambda t: {k: df.iloc[shuffle(len(df))].reset_index(drop=True)
                                                 for k, df in t.items()})
    written = pd.read_parquet(root / C.EVENTS_FILE)
    assert load_shop(root).events[C.TS].tolist() == written[C.TS].tolist()


# -- the error itself ---------------------------------------------------------------------
def test_error_carries_its_parts_and_survives_pickling(tmp_path):
    def bad_prices(tables):
        tables["products"].loc[[17, 18, 19], C.PRICE] = [-3.0, 0.0, -1.0]

    with pytest.raises(ContractError) as caught:
        load_shop(make_shop(tmp_path, mutate=bad_prices))
    err = caught.value
    assert isinstance(err, ValueError)
    assert (err.file, err.column, err.row, err.count) == (P, C.PRICE, 17, 3)
    assert err.example == {C.PRODUCT_ID: "P017", C.PRICE: -3.0}
    assert str(err) == ("products.parquet, column 'price': must be > 0 and finite — 3 bad rows, "
                        "e.g. row 17: {'product_id': 'P017', 'price': -3.0}")
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.example, again.row) == (str(err), err.example, err.row)
