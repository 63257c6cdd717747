"""The synthetic default shop: contract-shaped, deterministic, and with each return cause at work."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from prodvec.core import columns as C
from prodvec.generator import GeneratorConfig, generate_shop

N = 600
SIDE_INFO = ("brand", "color", "fabric", "pattern", "neck", "gender", "price_band")


def _generate(root: Path, **config) -> tuple[Path, Path, dict]:
    shop, truth = root / "shop", root / "truth"
    summary = generate_shop(shop, truth, GeneratorConfig(n_products=config.pop("n_products", N), **config), progress=False)
    return shop, truth, summary


def _digest(*folders: Path) -> dict[str, str]:
    return {
        f"{folder.name}/{path.relative_to(folder)}": hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    shop, truth, summary = _generate(tmp_path_factory.mktemp("gen"))
    return shop, truth, summary


@pytest.fixture(scope="module")
def tables(generated):
    shop, truth, _ = generated
    read = pd.read_parquet
    return {
        "products": read(shop / C.PRODUCTS_FILE),
        "events": read(shop / C.EVENTS_FILE),
        "orders": read(shop / C.ORDERS_FILE),
        "products_truth": read(truth / "products_truth.parquet"),
        "orders_truth": read(truth / "orders_truth.parquet"),
        "users_truth": read(truth / "users_truth.parquet"),
        "meta": json.loads((truth / "meta.json").read_text()),
    }


# -- determinism and scale ------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(generated, tmp_path):
    shop, truth, _ = generated
    again = _generate(tmp_path / "again")
    other = _generate(tmp_path / "other", seed=1)
    reference = _digest(shop, truth)
    assert len(reference) > 0.9 * N  # parquet files, truth files and the images
    assert _digest(again[0], again[1]) == reference
    changed = _digest(other[0], other[1])
    for name in ("shop/" + C.PRODUCTS_FILE, "shop/" + C.EVENTS_FILE, "shop/" + C.ORDERS_FILE, "shop/images/P000000.png"):
        assert changed[name] != reference[name], name


def test_counts_grow_linearly_with_n_products(generated, tmp_path):
    _, _, small = generated
    _, _, big = _generate(tmp_path / "big", n_products=2 * N)
    for key in ("users", "sessions", "events", "orders", "returns"):
        assert 1.5 <= big[key] / small[key] <= 2.5, (key, small[key], big[key])
    # Roughly the default shop's density: ~100 events and ~8.5 order lines per product.
    assert 70 <= small["events"] / N <= 130
    assert 5 <= small["orders"] / N <= 12
    assert 0.2 <= small["return_rate"] <= 0.32


# -- the contract -------------------------------------------------------------


def test_products_match_the_contract(tables):
    products = tables["products"]
    assert products[C.PRODUCT_ID].is_unique and (products[C.PRODUCT_ID].str.len() > 0).all()
    assert products[C.PRODUCT_ID].is_monotonic_increasing  # zero-padded, so sortable
    assert str(products[C.CREATED_AT].dtype) == "datetime64[ns, UTC]"
    assert products[C.PRICE].dtype == np.float64 and (products[C.PRICE] > 0).all()
    assert (products[C.TITLE].str.strip().str.len() > 0).all()
    assert products[C.CATEGORY].notna().all() and products[C.CATEGORY].nunique() >= 20
    for column in (C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.CATEGORY, C.IMAGE_PATH, *SIDE_INFO):
        assert products[column].dtype == object, column
    empty_text = products[C.DESCRIPTION].isna() | (products[C.DESCRIPTION] == "")
    assert 0.04 <= empty_text.mean() <= 0.18


def test_side_information_is_present_with_some_unknowns(tables):
    products = tables["products"]
    for column in SIDE_INFO:
        assert column in products.columns
    for column in ("brand", "color", "fabric", "pattern", "gender", "price_band"):
        assert 0.01 <= products[column].isna().mean() <= 0.12, column
    assert products["brand"].nunique() >= 40
    assert set(products["pattern"].dropna()) == {"solid", "striped", "checked", "dotted", "printed"}
    # A neckline only exists for tops and dresses.
    no_neck = products[C.CATEGORY].isin(["jeans", "sneakers", "bags", "watches", "belts"])
    assert products.loc[no_neck, "neck"].isna().all()
    assert products.loc[products[C.CATEGORY] == "tshirts", "neck"].notna().mean() > 0.8


def test_events_and_orders_match_the_contract(tables):
    products, events, orders = tables["products"], tables["events"], tables["orders"]
    known = set(products[C.PRODUCT_ID])
    assert events[C.PRODUCT_ID].isin(known).all() and orders[C.PRODUCT_ID].isin(known).all()
    assert set(events[C.EVENT_TYPE]) == set(C.EVENT_TYPES)
    assert str(events[C.TS].dtype) == "datetime64[ns, UTC]"
    assert (events[C.SESSION_ID].str.len() > 0).all() and (events[C.USER_ID].str.len() > 0).all()
    # Events of a session come in time order, and nobody sees a product before it is listed.
    assert (events.groupby(C.SESSION_ID)[C.TS].diff().dropna() >= pd.Timedelta(0)).all()
    listed = events[C.PRODUCT_ID].map(products.set_index(C.PRODUCT_ID)[C.CREATED_AT])
    assert (events[C.TS] >= listed).all()

    assert str(orders[C.ORDERED_AT].dtype) == "datetime64[ns, UTC]"
    assert str(orders[C.RETURNED_AT].dtype) == "datetime64[ns, UTC]"
    assert orders[C.RETURNED].dtype == bool
    assert orders[C.PRICE].dtype == np.float64 and (orders[C.PRICE] > 0).all()
    assert (orders[C.RETURNED_AT].notna() == orders[C.RETURNED]).all()
    returned = orders[orders[C.RETURNED]]
    delay = returned[C.RETURNED_AT] - returned[C.ORDERED_AT]
    assert (delay > pd.Timedelta(0)).all()
    assert (delay <= pd.Timedelta(days=tables["meta"]["max_return_days"])).all()
    # One order line per purchase event, several lines per order sometimes.
    assert len(orders) == (events[C.EVENT_TYPE] == C.PURCHASE).sum()
    assert orders[C.ORDER_ID].nunique() < len(orders)
    assert not orders.duplicated([C.ORDER_ID, C.PRODUCT_ID]).any()


def test_new_products_have_few_interactions(tables):
    products, events = tables["products"], tables["events"]
    per_product = events[C.PRODUCT_ID].value_counts().reindex(products[C.PRODUCT_ID], fill_value=0)
    end = products[C.CREATED_AT].min() + pd.Timedelta(days=tables["meta"]["config"]["days"])
    late = (products[C.CREATED_AT] > end - pd.Timedelta(days=14)).to_numpy()
    assert 0.02 < late.mean() < 0.1
    assert per_product[late].mean() < 0.25 * per_product[~late].mean()
    assert (products[C.CREATED_AT] == products[C.CREATED_AT].min()).mean() == pytest.approx(0.6, abs=0.06)


# -- the science: each return cause shows ---------------------------------------


@pytest.fixture(scope="module")
def lines(tables):
    return (
        tables["orders"]
        .merge(tables["products_truth"], on=C.PRODUCT_ID)
        .merge(tables["users_truth"][[C.USER_ID, "quality_seeking"]], on=C.USER_ID)
    )


def test_brands_that_run_small_come_back_more(lines, tables):
    rate = lines.groupby("brand_runs_small")[C.RETURNED].mean()
    assert rate[True] > rate[False] + 0.07
    # ... through the ordered size: sizing up for such a brand avoids most of it.
    users = tables["users_truth"].set_index(C.USER_ID)["size"]
    small = lines[lines["brand_runs_small"] & lines[C.SIZE].isin(["XS", "S", "M", "L", "XL", "XXL"])]
    own_size = small[C.SIZE].to_numpy() == small[C.USER_ID].map(users).to_numpy()
    assert small.loc[own_size, C.RETURNED].mean() > small.loc[~own_size, C.RETURNED].mean() + 0.1


def test_visual_trait_comes_back_more(lines):
    rate = lines.groupby("visual_trait")[C.RETURNED].mean()
    assert rate[True] > rate[False] + 0.1


def test_low_quality_comes_back_more_and_quality_seekers_buy_better(lines):
    low = lines["quality"] < lines["quality"].quantile(1 / 3)
    high = lines["quality"] > lines["quality"].quantile(2 / 3)
    assert lines.loc[low, C.RETURNED].mean() > lines.loc[high, C.RETURNED].mean() + 0.1
    bought = lines.groupby("quality_seeking")["quality"].mean()
    assert bought[True] > bought[False] + 0.15


def test_true_return_probability_ranks_returns_and_causes_are_comparable(tables):
    from sklearn.metrics import roc_auc_score

    truth = tables["orders_truth"]
    assert len(truth) == len(tables["orders"])
    y = truth[C.RETURNED]
    assert 0.72 <= roc_auc_score(y, truth["return_probability"]) <= 0.86
    for cause in ("fit", "quality", "style", "visual"):
        assert 0.53 <= roc_auc_score(y, truth[f"{cause}_logit"]) <= 0.75, cause


def test_hidden_quality_is_only_weakly_tied_to_price(tables):
    both = tables["products"].merge(tables["products_truth"], on=C.PRODUCT_ID)
    assert abs(np.corrcoef(both["quality"], both[C.PRICE])[0, 1]) < 0.3
    assert 0.15 < both["visual_trait"].mean() < 0.35


# -- truth stays out of the shop ---------------------------------------------------


def test_truth_is_kept_outside_the_shop(generated, tables, tmp_path):
    shop, truth, _ = generated
    assert shop not in truth.parents and truth != shop
    assert {p.name for p in shop.iterdir()} == {C.PRODUCTS_FILE, C.EVENTS_FILE, C.ORDERS_FILE, C.IMAGES_DIR}
    hidden = {"style", "quality", "visual_trait", "fit_offset", "popularity", "return_probability", "taste"}
    for name in ("products", "events", "orders"):
        assert not hidden & set(tables[name].columns), name
    with pytest.raises(ValueError, match="outside"):
        generate_shop(tmp_path / "s", tmp_path / "s" / "truth", GeneratorConfig(n_products=N), progress=False)


def test_refuses_a_non_empty_shop_dir_unless_told_to_overwrite(tmp_path):
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_shop(shop, tmp_path / "truth", GeneratorConfig(n_products=200, image_share=0.0), progress=False)
    generate_shop(shop, tmp_path / "truth", GeneratorConfig(n_products=200, image_share=0.0), progress=False, overwrite=True)
    assert (shop / "notes.txt").read_text() == "mine"  # only our own outputs are replaced
    assert (shop / C.PRODUCTS_FILE).exists()


# -- images ---------------------------------------------------------------------


def _sheen(path: Path) -> float:
    """Mean absolute difference between horizontal neighbours: the trait's 1-pixel checker shows here."""
    a = np.asarray(Image.open(path), dtype=np.int16)
    return float(np.abs(a[:, 1:] - a[:, :-1]).mean())


def test_images_are_valid_and_show_the_visual_trait(generated, tables):
    shop, _, summary = generated
    products = tables["products"].merge(tables["products_truth"], on=C.PRODUCT_ID)
    with_image = products[products[C.IMAGE_PATH].notna()]
    assert summary["images"] == len(with_image) == len(list((shop / C.IMAGES_DIR).iterdir()))
    assert 0.9 < len(with_image) / len(products) < 0.99
    for path in with_image[C.IMAGE_PATH].head(50):
        with Image.open(shop / path) as image:
            assert image.format == "PNG" and image.size == (64, 64) and image.mode == "RGB"
    sheen = with_image[C.IMAGE_PATH].map(lambda p: _sheen(shop / p))
    trait = with_image["visual_trait"].to_numpy()
    assert sheen[trait].mean() > 1.5 * sheen[~trait].mean()


# -- the contract loader ------------------------------------------------------------


def test_generated_shop_passes_the_contract_loader_whole_and_without_its_truth(generated, tables):
    from prodvec.core.shop.loader import load_shop

    shop_dir, _, summary = generated
    shop = load_shop(shop_dir)
    assert len(shop.products) == summary["products"]
    assert len(shop.events) == summary["events"] and len(shop.orders) == summary["orders"]
    assert set(shop.products[C.PRODUCT_ID]) == set(tables["products"][C.PRODUCT_ID])
    assert set(shop.events[C.PRODUCT_ID]) <= set(shop.products[C.PRODUCT_ID])
    assert str(shop.events[C.TS].dt.tz) == "UTC" and shop.end == shop.events[C.TS].max()
    # What only the generator knows stays beside the shop: no truth column reaches the producers.
    truth_only = set(tables["products_truth"].columns) - set(tables["products"].columns)
    assert truth_only and not truth_only & set(shop.products.columns)
    assert C.CATEGORY in shop.label_columns and len(shop.side_info_columns) >= 2
