"""A small, valid shop on disk for tests, with a hook to break it on purpose.

    root = make_shop(tmp_path)                                   # full shop
    root = make_shop(tmp_path, with_events=False, with_orders=False)

    def negative_price(tables):
        tables["products"].loc[3, "price"] = -1.0

    root = make_shop(tmp_path, mutate=negative_price)

The data has a known structure other tests can check a model learned:
product i is in category CATEGORIES[i % 4], its image is a flat colour of that
category (plus a little per-product noise), and every session browses a single
category. Everything is seeded: the same arguments give the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from prodvec.core import columns as C

CATEGORIES = ("tshirts", "jeans", "dresses", "shoes")
CATEGORY_RGB = {"tshirts": (200, 40, 40), "jeans": (40, 60, 200), "dresses": (40, 180, 60), "shoes": (120, 120, 120)}
BRANDS = ("acme", "globex", "initech")
COLORS = ("red", "blue", "green", "black", "white")
SIZES = ("S", "M", "L", None)
START = pd.Timestamp("2024-01-01", tz="UTC")

# Keys of the tables dict handed to `mutate`, and the file each is written to.
FILES = {"products": C.PRODUCTS_FILE, "events": C.EVENTS_FILE, "orders": C.ORDERS_FILE}

Tables = dict[str, pd.DataFrame]


def make_shop(
    tmp_path: Path,
    n_products: int = 20,
    *,
    with_events: bool = True,
    with_orders: bool = True,
    with_images: bool = True,
    with_text: bool = True,
    mutate: Callable[[Tables], Tables | None] | None = None,
    name: str = "shop",
    seed: int = 0,
) -> Path:
    """Write a valid shop under `tmp_path / name` and return its directory.

    `mutate` gets the tables as {"products": df, "events": df, "orders": df}
    (only those asked for) before they are written; it may change them in
    place or return a new dict. Images are written for the products as they
    were *before* mutation, so pointing an image_path elsewhere breaks it.
    """
    tables = shop_tables(n_products, with_events=with_events, with_orders=with_orders,
                         with_images=with_images, with_text=with_text, seed=seed)
    root = Path(tmp_path) / name
    if with_images:
        write_images(root, tables["products"])
    if mutate is not None:
        tables = mutate(tables) or tables
    write_tables(root, tables)
    return root


def shop_tables(
    n_products: int = 20,
    *,
    with_events: bool = True,
    with_orders: bool = True,
    with_images: bool = True,
    with_text: bool = True,
    seed: int = 0,
) -> Tables:
    """The tables of a valid shop, in memory."""
    rng = np.random.default_rng(seed)
    products = _products(n_products, rng, with_images=with_images, with_text=with_text)
    tables = {"products": products}
    if with_events or with_orders:
        events = _events(products, rng)
        if with_events:
            tables["events"] = events
        if with_orders:
            tables["orders"] = _orders(products, events, rng)
    return tables


def write_tables(root: Path, tables: Tables) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for key, df in tables.items():
        df.to_parquet(root / FILES[key], index=False)


def write_images(root: Path, products: pd.DataFrame, size: int = 8) -> None:
    """A tiny PNG per product: its category's colour plus a little noise."""
    rng = np.random.default_rng(len(products))
    for path, category in zip(products[C.IMAGE_PATH], products[C.CATEGORY]):
        if pd.isna(path):
            continue
        base = np.array(CATEGORY_RGB[category], dtype=np.int16)
        pixels = np.clip(base + rng.integers(-20, 21, size=(size, size, 3)), 0, 255).astype(np.uint8)
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "RGB").save(target)


def _products(n: int, rng: np.random.Generator, *, with_images: bool, with_text: bool) -> pd.DataFrame:
    i = np.arange(n)
    category = [CATEGORIES[k % len(CATEGORIES)] for k in i]
    brand = [BRANDS[k % len(BRANDS)] for k in i]
    color = [COLORS[k % len(COLORS)] for k in i]
    df = pd.DataFrame({
        C.PRODUCT_ID: [f"P{k:03d}" for k in i],
        # Products keep arriving: one a day, so cutoffs see growing catalogues.
        C.CREATED_AT: START + pd.to_timedelta(i, unit="D"),
    })
    if with_text:
        df[C.TITLE] = [f"{c} {b} {cat} {k}" for k, c, b, cat in zip(i, color, brand, category)]
        # Some descriptions are empty or missing, as the contract allows.
        df[C.DESCRIPTION] = [None if k % 7 == 3 else "" if k % 7 == 5 else f"A {c} {cat} by {b}."
                             for k, c, b, cat in zip(i, color, brand, category)]
    df[C.CATEGORY] = category
    df[C.PRICE] = np.round(rng.uniform(5, 100, size=n), 2)
    if with_images:
        # Every fifth product has no image.
        df[C.IMAGE_PATH] = [None if k % 5 == 4 else f"{C.IMAGES_DIR}/{pid}.png" for k, pid in zip(i, df[C.PRODUCT_ID])]
    df["brand"] = brand  # side information
    df["color"] = color
    df["stock"] = rng.integers(0, 50, size=n)  # an extra non-string column, not side information
    return df


def _events(products: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Sessions that each browse one category, after the whole catalogue is listed."""
    by_category = products.groupby(C.CATEGORY, sort=True)[C.PRODUCT_ID].apply(list)
    start = products[C.CREATED_AT].max() + pd.Timedelta(days=1)
    rows = []
    for s in range(max(4, len(products))):
        items = by_category.iloc[s % len(by_category)]
        t = start + pd.Timedelta(hours=s)
        for step, pid in enumerate(rng.choice(items, size=5)):
            kind = C.CLICK if step < 3 else (C.ADD_TO_CART, C.PURCHASE)[step - 3]
            rows.append((f"S{s:03d}", f"U{s % 6:02d}", str(pid), kind, t + pd.Timedelta(minutes=step)))
    return pd.DataFrame(rows, columns=[C.SESSION_ID, C.USER_ID, C.PRODUCT_ID, C.EVENT_TYPE, C.TS])


def _orders(products: pd.DataFrame, events: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One order line per purchase event; every third line is returned a few days later."""
    bought = events[events[C.EVENT_TYPE] == C.PURCHASE].reset_index(drop=True)
    price = products.set_index(C.PRODUCT_ID)[C.PRICE]
    returned = np.arange(len(bought)) % 3 == 1
    ordered_at = bought[C.TS] + pd.Timedelta(minutes=1)
    return pd.DataFrame({
        C.ORDER_ID: [f"O{k:03d}" for k in range(len(bought))],
        C.USER_ID: bought[C.USER_ID],
        C.PRODUCT_ID: bought[C.PRODUCT_ID],
        C.ORDERED_AT: ordered_at,
        C.PRICE: price.reindex(bought[C.PRODUCT_ID]).to_numpy(),
        C.SIZE: [SIZES[k] for k in rng.integers(0, len(SIZES), size=len(bought))],
        C.RETURNED: returned,
        C.RETURNED_AT: ordered_at.where(returned) + pd.Timedelta(days=4),
    })
