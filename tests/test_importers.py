"""Importers: known answers on hand-written sources, then the real public samples when present.

The real samples live outside the repository, in `../shared/data` (see its
README); tests that need them skip with the reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from prodvec.core import columns as C
from prodvec.cli import main
from prodvec.importers import IMPORTERS, importer, io, myntra, online_retail
from prodvec.core.shop import ContractError, load_shop

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real public samples not found at {DATA} "
                                                          "(they are kept outside the repository)")

STYLES_HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"


def write_jpeg(path: Path, rgb=(200, 40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 8), rgb).save(path, "JPEG")


def myntra_source(tmp_path: Path, rows: str, images=()) -> Path:
    source = tmp_path / "myntra"
    source.mkdir()
    (source / "styles.csv").write_text(STYLES_HEADER + rows)
    for product_id in images:
        write_jpeg(source / "images" / f"{product_id}.jpg")
    return source


def retail_source(tmp_path: Path, lines: list[tuple]) -> Path:
    header = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
    path = tmp_path / "online_retail.csv"
    pd.DataFrame(lines, columns=header).to_csv(path, index=False)
    return path


class Lines(list):
    def __call__(self, message: str) -> None:
        self.append(message)


# -- the registry and the shared io module -------------------------------------------
def test_registry_names_the_three_formats_and_each_module_documents_its_source():
    assert IMPORTERS == {"myntra": "prodvec.importers.myntra", "online-retail": "prodvec.importers.online_retail",
                         "session-clicks": "prodvec.importers.session_clicks"}
    for name in ("myntra", "online-retail"):
        module = importer(name)
        assert callable(module.import_shop) and len(module.__doc__.strip()) > 100
    with pytest.raises(ValueError, match="myntra, online-retail, session-clicks"):
        importer("amazon")


def test_write_shop_refuses_a_non_empty_directory_and_overwrite_keeps_other_files(tmp_path):
    products = pd.DataFrame({C.PRODUCT_ID: ["a", "b"], C.CREATED_AT: pd.Timestamp("2024-01-01", tz="UTC"),
                             C.TITLE: ["red shirt", "blue jeans"]})
    shop = tmp_path / "shop"
    io.write_shop(shop, products, log=Lines())
    with pytest.raises(FileExistsError, match="not empty"):
        io.write_shop(shop, products, log=Lines())
    (shop / "notes.txt").write_text("mine")
    io.write_shop(shop, products.iloc[:1], overwrite=True, log=Lines())
    assert (shop / "notes.txt").read_text() == "mine"
    assert len(load_shop(shop, log=Lines()).products) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["shop"], "no staging directory is left behind"


def test_write_shop_leaves_nothing_when_the_contract_rejects_the_shop(tmp_path):
    products = pd.DataFrame({C.PRODUCT_ID: ["a", "a"], C.CREATED_AT: pd.Timestamp("2024-01-01", tz="UTC")})
    with pytest.raises(ContractError, match="must be unique"):
        io.write_shop(tmp_path / "shop", products, log=Lines())
    assert list(tmp_path.iterdir()) == []


def test_local_times_become_utc_with_summer_time_and_ids_lose_the_float_suffix():
    naive = pd.Series(pd.to_datetime(["2010-12-01 08:26", "2011-06-01 08:26", "2011-10-30 01:30"]))
    utc = io.local_to_utc(naive, "Europe/London")
    assert list(utc) == [pd.Timestamp("2010-12-01 08:26", tz="UTC"), pd.Timestamp("2011-06-01 07:26", tz="UTC"),
                         pd.Timestamp("2011-10-30 00:30", tz="UTC")]  # ambiguous hour: the summer-time reading
    assert io.id_strings(pd.Series([17850.0, np.nan, 12.5])).tolist() == ["17850", None, "12.5"]
    assert io.id_strings(pd.Series([" a ", "", None])).tolist() == ["a", None, None]


# -- myntra ----------------------------------------------------------------------------
MYNTRA_ROWS = (
    "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
    "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,NA,Peter England Men Party Blue Jeans\n"
    "59263,Women,Accessories,Watches,Watches,Silver,Winter,,Casual,Titan Women Silver Watch\n"
    "42878,Women,Accessories,Bags,Handbags,Black,Summer,2012,Casual,NA\n"
    "3413,Men,Apparel,Topwear,Tshirts,White,Summer,2011,Casual,Myntra Men's Yes, its all about me White T-shirt\n"
)


def test_myntra_catalogue_with_known_answers(tmp_path):
    source = myntra_source(tmp_path, MYNTRA_ROWS, images=["15970", "3413", "99999"])
    log = Lines()
    shop_dir = myntra.import_shop(source, tmp_path / "shop", log=log)
    shop = load_shop(shop_dir, log=Lines())
    p = shop.products.set_index(C.PRODUCT_ID)

    assert shop.events is None and shop.orders is None
    assert list(p.index) == ["15970", "39386", "59263", "3413"], "the row without a name is dropped"
    assert p.loc["15970", C.TITLE] == "Turtle Check Men Navy Blue Shirt" and p.loc["15970", C.CATEGORY] == "Shirts"
    assert p.loc["15970", C.CREATED_AT] == pd.Timestamp("2011-01-01", tz="UTC")
    assert p.loc["59263", C.CREATED_AT] == pd.Timestamp("2012-01-01", tz="UTC"), "no year: the latest year"
    assert p.loc["39386", "usage"] is None, "'NA' means unknown"
    assert p.loc["3413", C.TITLE] == "Myntra Men's Yes, its all about me White T-shirt", "unquoted comma re-joined"
    assert set(shop.side_info_columns) == {"gender", "masterCategory", "subCategory", "baseColour", "season", "usage"}
    assert p[C.IMAGE_PATH].to_dict() == {"15970": "images/15970.jpg", "39386": None, "59263": None,
                                         "3413": "images/3413.jpg"}
    assert (shop_dir / "images" / "15970.jpg").is_file() and not (shop_dir / "images" / "99999.jpg").exists()
    text = "\n".join(log)
    assert "no product name: dropped 1 row (e.g. row 3: {'id': '42878'" in text
    assert "1 rows without a year are listed as of 2012" in text
    assert "1 photos of ids not in the catalogue" in text
    assert "1 lines had more fields than the header" in text


@pytest.mark.parametrize("row, message", [
    ("15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Another Shirt\n",
     "styles.csv, column 'id': must be unique — 2 bad rows, e.g. row 0: {'id': '15970'}"),
    ("777,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,twenty,Casual,Shirt\n",
     "styles.csv, column 'year': must be a whole year like 2012 — 1 bad row, e.g. row 5: {'id': '777', 'year': 'twenty'}"),
])
def test_myntra_bad_rows_stop_the_import_with_file_column_and_row(tmp_path, row, message):
    source = myntra_source(tmp_path, MYNTRA_ROWS + row)
    with pytest.raises(ContractError) as error:
        myntra.import_shop(source, tmp_path / "shop", log=Lines())
    assert str(error.value) == message
    assert not (tmp_path / "shop").exists()


def test_myntra_missing_column_is_named(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "styles.csv").write_text("id,year\n1,2012\n")
    with pytest.raises(ContractError, match="styles.csv, column 'productDisplayName': required column is missing"):
        myntra.import_shop(source, tmp_path / "shop", log=Lines())


# -- online retail ------------------------------------------------------------------------
RETAIL = [
    # invoice, stock, description, qty, time (UK local), price, customer, country
    ("536365", "85123A", "WHITE HEART", 6, "2010-12-01 08:26:00", 1.0, "17850.0", "United Kingdom"),
    ("536365", "71053", "LANTERN", 2, "2010-12-01 08:26:00", 3.0, "17850.0", "United Kingdom"),
    ("536365", "POST", "POSTAGE", 1, "2010-12-01 08:26:00", 18.0, "17850.0", "United Kingdom"),
    ("536366", "85123A", "white heart?", 1, "2010-12-02 09:00:00", 2.0, "", "United Kingdom"),  # guest
    ("536367", "71053", "LANTERN BIG", 1, "2010-12-03 10:00:00", 0.0, "17850.0", "United Kingdom"),  # no price
    ("536368", "71053", "check", -5, "2010-12-03 11:00:00", 0.0, "0.0", "United Kingdom"),  # write-off
    ("541000", "85123A", "WHITE HEART", 2, "2011-06-01 10:00:00", 10.0, "17850.0", "France"),  # summer time
    ("C541001", "85123A", "WHITE HEART", -6, "2011-06-02 12:00:00", 1.0, "17850.0", "United Kingdom"),
    ("C541002", "85123A", "WHITE HEART", -2, "2011-06-03 12:00:00", 10.0, "17850.0", "France"),
    ("C541003", "85123A", "WHITE HEART", -1, "2011-06-04 12:00:00", 10.0, "17850.0", "France"),  # nothing left
    ("C541004", "22633", "MUG", -1, "2011-06-05 12:00:00", 1.0, "12000.0", "Germany"),  # cancelled first
    ("541005", "22633", "MUG", 3, "2011-06-06 12:00:00", 1.5, "12000.0", "Germany"),
    ("C541006", "22633", "MUG", -3, "2011-06-07 12:00:00", 1.5, "12000.0", "Germany"),
    ("541007", "84029G", "TEA SET", 1, "2011-06-08 12:00:00", 5.0, "12000.0", "Germany"),
]


def test_online_retail_with_known_answers(tmp_path):
    log = Lines()
    shop_dir = online_retail.import_shop(retail_source(tmp_path, RETAIL), tmp_path / "shop", log=log)
    shop = load_shop(shop_dir, log=Lines())
    p = shop.products.set_index(C.PRODUCT_ID)

    assert sorted(p.index) == ["22633", "71053", "84029G", "85123A"], "POST is a charge, not a product"
    assert p.loc["85123A", C.TITLE] == "WHITE HEART", "the most common description"
    assert p.loc["71053", C.TITLE] == "LANTERN", "descriptions of unpriced lines do not count"
    assert p.loc["85123A", C.PRICE] == 2.0, "median of 1, 2 and 10"
    assert p.loc["85123A", C.CREATED_AT] == pd.Timestamp("2010-12-01 08:26", tz="UTC"), "first sale; GMT in winter"
    assert "country" not in p.columns, "country is per invoice, never per product"

    events = shop.events
    assert (events[C.EVENT_TYPE] == C.PURCHASE).all() and len(events) == 6
    guest = events[events[C.SESSION_ID] == "536366"]
    assert guest[C.USER_ID].tolist() == ["guest-536366"], "a guest invoice is its own anonymous buyer"

    o = shop.orders.set_index(C.ORDER_ID)
    assert "536366" not in o.index, "no customer, no order line"
    assert o.loc["541000", C.ORDERED_AT] == pd.Timestamp("2011-06-01 09:00", tz="UTC"), "BST is UTC+1"
    returned = o[o[C.RETURNED]]
    # The first cancellation of (17850, 85123A) returns the earliest order line, the second the next one,
    # the third finds nothing left; (12000, 22633) cancelled before ordering, so only the later one counts.
    assert returned[C.RETURNED_AT].to_dict() == {
        "536365": pd.Timestamp("2011-06-02 11:00", tz="UTC"),
        "541000": pd.Timestamp("2011-06-03 11:00", tz="UTC"),
        "541005": pd.Timestamp("2011-06-07 11:00", tz="UTC"),
    }
    assert returned[C.PRODUCT_ID].tolist() == ["85123A", "85123A", "22633"]
    assert not o.loc[o[C.PRODUCT_ID] == "71053", C.RETURNED].any()
    text = "\n".join(log)
    assert "2 of 5 cancellation lines matched no earlier order line" in text
    assert "not products: dropped 1 row (e.g. row 2: {'InvoiceNo': '536365', 'StockCode': 'POST'" in text
    assert "sales without a customer (kept as a guest's events, left out of orders): dropped 1 row" in text


def reference_returns(orders: pd.DataFrame, cancellations: pd.DataFrame) -> pd.Series:
    """The rule read literally, one cancellation at a time (a loop: only for checking)."""
    out = pd.Series(pd.NaT, index=orders.index, dtype="datetime64[ns, UTC]")
    taken: set = set()
    for _, cancel in cancellations.sort_values("ts", kind="stable").iterrows():
        same = orders[(orders["CustomerID"] == cancel["CustomerID"]) & (orders["StockCode"] == cancel["StockCode"])
                      & (orders["ts"] <= cancel["ts"]) & ~orders.index.isin(taken)]
        if len(same):
            first = same.sort_values("ts", kind="stable").index[0]
            taken.add(first)
            out[first] = cancel["ts"]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_return_matching_equals_the_rule_read_literally(seed):
    rng = np.random.default_rng(seed)
    stamps = pd.Timestamp("2011-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 30, 400), unit="D")
    rows = pd.DataFrame({"CustomerID": rng.choice(["u1", "u2", "u3"], 400), "StockCode": rng.choice(["a", "b"], 400),
                         "ts": stamps, "cancel": rng.random(400) < 0.4})
    orders = rows[~rows["cancel"]].sort_values("ts", kind="stable")
    cancellations = rows[rows["cancel"]]
    got = online_retail.match_returns(orders, cancellations)
    want = reference_returns(orders, cancellations)
    assert got.notna().sum() > 10
    pd.testing.assert_series_equal(got, want, check_names=False)


def test_online_retail_unparseable_time_is_reported_with_its_line(tmp_path):
    lines = RETAIL[:2] + [("536370", "B", "LANTERN", 1, "yesterday", 3.0, "17850.0", "United Kingdom")]
    with pytest.raises(ContractError) as error:
        online_retail.import_shop(retail_source(tmp_path, lines), tmp_path / "shop", log=Lines())
    assert str(error.value) == ("online_retail.csv, column 'InvoiceDate': must be a date and time — 1 bad row, "
                                "e.g. row 2: {'InvoiceNo': '536370', 'StockCode': 'B', 'InvoiceDate': 'yesterday'}")


# -- the command line ---------------------------------------------------------------------
def test_cli_import_lists_formats_and_prints_one_summary_line(tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(main, ["import", "--help"]).output
    assert all(name in help_text for name in IMPORTERS)
    source = retail_source(tmp_path, RETAIL)
    result = runner.invoke(main, ["import", "online-retail", str(source), str(tmp_path / "shop")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (f"import online-retail: 4 products, 6 events, 5 order lines "
                                              f"(3 returned), 0 images -> {tmp_path / 'shop'}")
    again = runner.invoke(main, ["import", "online-retail", str(source), str(tmp_path / "shop")])
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert runner.invoke(main, ["import", "online-retail", str(source), str(tmp_path / "shop"),
                                "--overwrite"]).exit_code == 0


# -- the real public samples ------------------------------------------------------------
@needs_data
def test_real_myntra_sample_imports_into_a_valid_catalogue(tmp_path):
    log = Lines()
    shop = load_shop(myntra.import_shop(DATA / "myntra", tmp_path / "shop", log=log), log=Lines())
    styles = pd.read_csv(DATA / "myntra" / "styles.csv", dtype=str, usecols=["id"])
    n_images = len(list((DATA / "myntra" / "images").glob("*.jpg")))
    assert len(styles) - 10 <= len(shop.products) <= len(styles), "at most a handful of rows dropped"
    assert shop.products[C.IMAGE_PATH].notna().sum() == n_images > 0
    assert shop.products[C.CATEGORY].nunique() > 100
    assert shop.products[C.CREATED_AT].dt.year.between(2000, 2025).all()
    assert shop.events is None and shop.orders is None
    assert {"gender", "baseColour", "season", "usage"} <= set(shop.side_info_columns)


@needs_data
def test_real_online_retail_sample_imports_with_every_cancellation_accounted_for(tmp_path):
    source = DATA / "online_retail" / "online_retail.csv"
    log = Lines()
    shop = load_shop(online_retail.import_shop(source, tmp_path / "shop", log=log), log=Lines())
    raw = pd.read_csv(source, dtype={"InvoiceNo": str, "StockCode": str})
    assert raw["InvoiceNo"].str.startswith("C").groupby(raw["InvoiceNo"]).first().sum() == 44
    assert 3000 < len(shop.products) <= raw["StockCode"].nunique()
    assert 2000 < len(shop.orders) < len(shop.events) < len(raw)
    assert shop.events[C.SESSION_ID].nunique() > 1000, "one session per invoice that sold something"
    # This sample is about 1% of the original file's lines, drawn line by line: no cancellation
    # kept the line it cancels. The importer must find exactly what the literal rule finds.
    lines = online_retail.read_lines(source)
    cancellations = lines[lines["InvoiceNo"].str.startswith("C") & lines["CustomerID"].notna()]
    bought = lines[~lines["InvoiceNo"].str.startswith("C") & (lines["Quantity"] > 0) & (lines["UnitPrice"] > 0)
                   & lines["CustomerID"].notna()]
    expected = int(reference_returns(bought.reset_index(drop=True), cancellations).notna().sum())
    assert int(shop.orders[C.RETURNED].sum()) == expected
    assert any("cancellation lines matched no earlier order line" in line for line in log)
    assert shop.orders[C.ORDERED_AT].min() == pd.Timestamp("2010-12-01 08:26", tz="UTC")


# -- a catalogue-only shop through the whole pipeline --------------------------------------
def small_catalogue_source(tmp_path: Path, n: int = 600) -> Path:
    """The first `n` Myntra rows that have a photo, or a hand-made catalogue of that form without the data."""
    source = tmp_path / "myntra_small"
    (source / "images").mkdir(parents=True)
    if DATA.is_dir():
        styles = pd.read_csv(DATA / "myntra" / "styles.csv", dtype=str, keep_default_na=False)
        photos = {name.removesuffix(".jpg") for name in os.listdir(DATA / "myntra" / "images")}
        styles = styles[styles["id"].isin(photos)].head(n)
        for product_id in styles["id"]:
            (source / "images" / f"{product_id}.jpg").write_bytes(
                (DATA / "myntra" / "images" / f"{product_id}.jpg").read_bytes())
    else:
        # As varied as a real catalogue's first rows: each column cycles with its own period, so the
        # rows are all different and the text has enough distinct tokens for text_dae's 64 dimensions. (With
        # 60 distinct rows repeated ten times the vectors used ~10 dimensions, and the gate rightly refused
        # them as rank-deficient.)
        kinds = [("Tshirts", "Topwear"), ("Jeans", "Bottomwear"), ("Watches", "Watches"), ("Sandals", "Flip Flops")]
        colours = {"Red": (200, 40, 40), "Blue": (40, 60, 200), "Black": (20, 20, 20), "White": (240, 240, 240),
                   "Green": (40, 160, 60), "Grey": (128, 128, 128), "Yellow": (230, 210, 40)}
        brands = ["Nike", "Puma", "Titan", "Roadster", "Fastrack", "Wrogn", "Adidas", "Fossil", "Crocs"]
        models = [f"{word} {cut}" for word in ("Solid", "Striped", "Printed", "Slim", "Classic", "Sports", "Casual",
                                                 "Analog", "Chrono", "Comfort", "Urban", "Retro", "Graphic")
                  for cut in ("Fit", "Style", "Edition")][:37]
        rows = []
        for i in range(n):
            (kind, sub), (colour, rgb) = kinds[i % 4], list(colours.items())[i % 7]
            gender, brand, model = ["Men", "Women"][i % 2], brands[i % 9], models[i % 37]
            rows.append({"id": str(1000 + i), "gender": gender, "masterCategory": "Apparel",
                         "subCategory": sub, "articleType": kind, "baseColour": colour,
                         "season": ["Summer", "Winter", "Fall", "Spring"][i % 5 % 4], "year": str(2011 + i % 3),
                         "usage": ["Casual", "Sports", "Formal"][i % 11 % 3],
                         "productDisplayName": f"{brand} {gender} {model} {colour} {kind}"})
            write_jpeg(source / "images" / f"{1000 + i}.jpg", rgb)
        styles = pd.DataFrame(rows)
    styles.to_csv(source / "styles.csv", index=False)
    return source


@pytest.mark.integration
def test_pipeline_runs_on_a_catalogue_only_shop_and_says_what_it_skipped(tmp_path):
    runner = CliRunner()
    shop, home = tmp_path / "shop", tmp_path / "home"
    imported = runner.invoke(main, ["import", "myntra", str(small_catalogue_source(tmp_path)), str(shop)])
    assert imported.exit_code == 0, imported.output
    ran = runner.invoke(main, ["run", "--shop", str(shop), "--home", str(home), "--quiet",
                               "--family", "text_dae", "--family", "clicks_bpr", "--family", "unified",
                               "--set", "text_dae.epochs=10", "--set", "unified.modalities=text_dae,clicks_bpr",
                               "--report-dir", str(tmp_path / "report")])
    assert ran.exit_code == 0, ran.output
    out = ran.output
    assert out.count("cutoffs: ") == 1 and len(out.split("cutoffs: ")[1].splitlines()[0].split(", ")) == 1, \
        "a catalogue is trained once, at its end"
    assert "clicks_bpr: skipped: needs events, which this shop does not have" in out
    assert "return model: skipped: needs orders" in out
    assert "feast apply: 2 feature views: product_text_dae_v1, product_unified_v1 (" in out
    assert (tmp_path / "report" / "report.md").is_file(), "the evaluation report runs on a partial shop too"

    from prodvec.core import feast_ops

    product = pd.read_parquet(shop / "products.parquet")[C.PRODUCT_ID].iloc[0]
    row = feast_ops.open_store(home).get_online_features(
        features=["product_unified_v1:embedding"], entity_rows=[{C.PRODUCT_ID: product}]).to_dict()
    assert len(row["embedding"][0]) == 64 and np.isfinite(row["embedding"][0]).all()


def test_online_retail_customer_ids_are_strings_and_zero_means_unknown(tmp_path):
    lines = [(str(i), "85123A", "WHITE HEART", 1, "2011-01-03 10:00:00", 1.0, customer, "United Kingdom")
             for i, customer in enumerate(["17850.0", "ABC7", "0.0", ""])]
    customers = online_retail.read_lines(retail_source(tmp_path, lines))["CustomerID"]
    assert customers.tolist() == ["17850", "ABC7", None, None]


# -- the gate on partial shops ---------------------------------------------------------------
def test_gate_asks_a_photo_family_to_cover_the_products_with_photos_not_the_whole_catalogue(tmp_path):
    from prodvec.core.embeddings import Embeddings
    from prodvec.producers import make_producer
    from prodvec.validation.verdict import validate_snapshot
    from prodvec.core.snapshots import SnapshotStore
    from tests.shop_factory import make_shop

    def few_photos(tables):  # like the Myntra sample: 7% of the catalogue has a photo
        tables["products"].loc[tables["products"].index % 14 != 0, C.IMAGE_PATH] = None

    shop = load_shop(make_shop(tmp_path, n_products=1400, with_events=False, with_orders=False, mutate=few_photos),
                     log=Lines())
    producer = make_producer("image_siamese")
    has_photo = shop.products[C.IMAGE_PATH].notna().to_numpy()
    assert (producer.coverable(shop) == has_photo).all() and 50 < has_photo.sum() < 0.1 * len(has_photo)
    assert make_producer("text_dae").coverable(shop).all()

    store = SnapshotStore(tmp_path / "home")
    with_photo = shop.products.loc[shop.products[C.IMAGE_PATH].notna(), C.PRODUCT_ID].to_numpy()
    vectors = np.random.default_rng(0).normal(size=(len(with_photo), producer.config.dim))
    cutoff = shop.end
    ref = store.write("image_siamese", 1, cutoff, Embeddings(with_photo, vectors), {"producer": "image_siamese"})
    assert validate_snapshot(store, ref, shop, producer)["success"], "every product with a photo has a vector"

    half = Embeddings(with_photo[: len(with_photo) // 3], vectors[: len(with_photo) // 3])
    ref = store.write("image_siamese", 1, cutoff, half, {"producer": "image_siamese"}, replace=True)
    result = validate_snapshot(store, ref, shop, producer)
    assert not result["success"] and "coverage" in result["summary"], "a third of them is still too few"
