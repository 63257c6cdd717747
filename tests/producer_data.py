"""Tiny shops with a known right answer, built in memory, for producer tests.

Four categories; every user is loyal to one of them and browses it in
sessions of five clicks; titles name the category with one of two synonyms
that never appear together; each category has its own silhouette in the
images (colours are random, so only the shape tells). A producer that
learned anything puts products of one category together, even when they
share no token or no user.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from prodvec.core import columns as C
from prodvec.core.shop.model import Shop

CATEGORIES = ("tshirts", "jeans", "dresses", "shoes")
# Two words per category that never appear together in one title.
SYNONYMS = {"tshirts": ("tee", "tshirt"), "jeans": ("denim", "jeans"), "dresses": ("frock", "dress"),
            "shoes": ("sneaker", "trainer")}
FILLER = ("red", "blue", "green", "black", "white", "grey", "slim", "classic", "cotton", "new")
# One polygon per category, in a 32x32 frame.
SHAPES = {
    "tshirts": [(4, 6), (12, 3), (20, 3), (28, 6), (24, 12), (22, 10), (22, 29), (10, 29), (10, 10), (8, 12)],
    "jeans": [(9, 3), (23, 3), (25, 29), (18, 29), (16, 12), (14, 29), (7, 29)],
    "dresses": [(12, 3), (20, 3), (21, 12), (28, 29), (4, 29), (11, 12)],
    "shoes": [(3, 18), (14, 16), (20, 20), (29, 22), (29, 27), (3, 27)],
}
START = pd.Timestamp("2025-01-01", tz="UTC")
IMAGE_SIZE = 32


def _write_images(root: Path, product_ids: np.ndarray, category: np.ndarray, rng: np.random.Generator) -> list:
    paths = []
    for pid, cat in zip(product_ids, category):
        colour = tuple(int(v) for v in rng.integers(40, 230, 3))
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (245, 245, 245))
        jitter = rng.integers(-2, 3, 2)
        ImageDraw.Draw(image).polygon([(x + jitter[0], y + jitter[1]) for x, y in SHAPES[cat]], fill=colour)
        pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (IMAGE_SIZE, IMAGE_SIZE, 3))
        relative = f"{C.IMAGES_DIR}/{pid}.png"
        (root / C.IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / relative)
        paths.append(relative)
    return paths


def known_answer_shop(n_products: int = 400, n_users: int = 160, clicks_per_user: int = 25, seed: int = 0,
                      unlabeled_share: float = 0.25, root: Path | None = None) -> tuple[Shop, np.ndarray]:
    """(shop, true category per product row). Pass `root` to also write product images there."""
    rng = np.random.default_rng(seed)
    category = np.array(CATEGORIES)[np.arange(n_products) % len(CATEGORIES)]
    synonym = rng.integers(0, 2, n_products)
    words = [" ".join(rng.choice(FILLER, 2, replace=False)) for _ in range(n_products)]
    titles = [f"{SYNONYMS[c][s]} {w}" for c, s, w in zip(category, synonym, words)]
    # Some records lack their category: only the title (or the clicks) can place them.
    known = np.where(rng.random(n_products) < unlabeled_share, None, category)
    product_ids = np.array([f"P{i:04d}" for i in range(n_products)])
    products = pd.DataFrame({
        C.PRODUCT_ID: product_ids,
        C.CREATED_AT: START + pd.to_timedelta(rng.integers(0, 10, n_products), unit="D"),
        C.TITLE: titles,
        C.DESCRIPTION: [f"A {w} {SYNONYMS[c][s]} for every day." for c, s, w in zip(category, synonym, words)],
        C.CATEGORY: known,
        C.PRICE: rng.uniform(10, 50, n_products).round(2),
        "synonym": synonym.astype(str),  # a side-information column with no category signal
    })
    if root is not None:
        products[C.IMAGE_PATH] = _write_images(Path(root), product_ids, category, rng)
    favourite = np.arange(n_users) % len(CATEGORIES)
    by_category = [products.loc[category == c, C.PRODUCT_ID].to_numpy() for c in CATEGORIES]
    # A quarter of each category is never clicked: cold products only content can place.
    clicked = [ids[: int(len(ids) * 0.75)] for ids in by_category]
    rows = []
    for u in range(n_users):
        picks = rng.choice(clicked[favourite[u]], clicks_per_user)
        offsets = np.sort(rng.integers(0, 20 * 86400, clicks_per_user))
        times = START + pd.Timedelta(days=12) + pd.to_timedelta(offsets, unit="s")
        for k, (pid, ts) in enumerate(zip(picks, times)):
            kind = C.PURCHASE if k % 5 == 4 else C.CLICK
            rows.append((f"S{u:03d}-{k // 5}", f"U{u:03d}", pid, kind, ts))
    events = pd.DataFrame(rows, columns=[C.SESSION_ID, C.USER_ID, C.PRODUCT_ID, C.EVENT_TYPE, C.TS])
    # The true categories are returned beside the shop, never inside it.
    return Shop(root=Path(root) if root is not None else Path("."), products=products, events=events), category


def same_category_share(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Share of each row's k nearest neighbours (cosine) with the row's label."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argsort(-sims, axis=1)[:, :k]
    return float((labels[neighbours] == labels[:, None]).mean())


def assert_placed_by_category(vectors: np.ndarray, truth: np.ndarray, cold: np.ndarray) -> None:
    """Categories apart in `vectors`, also among the `cold` products (nobody clicked them: content placed them)."""
    assert cold.sum() > 50, "too few cold products to say anything about them"
    assert same_category_share(vectors, truth) > 0.7
    assert same_category_share(vectors[cold], truth[cold]) > 0.5, "products nobody clicked are placed by content"


def quiet(message: str) -> None:
    """A `log` that drops the producers' progress lines."""


# Modality snapshots the fusion tests fuse, with settings that train in seconds.
FUSED_MODALITIES = {"text_dae": {"epochs": 60, "dim": 16, "hidden": 64},
                    "clicks_bpr": {"epochs": 60, "dim": 16, "lr": 0.05}}


def fused_modality_store(home: Path):
    """(store, shop, truth): the known-answer shop with validated text_dae and clicks_bpr snapshots at its end."""
    from prodvec.jobs import produce
    from prodvec.core.snapshots import SnapshotStore

    shop, truth = known_answer_shop()
    store = SnapshotStore(home)
    for family, settings in FUSED_MODALITIES.items():
        produce(shop, family, [shop.end], store, overrides=settings, progress=False, log=quiet)
    return store, shop, truth


def produce_validated(store, shop: Shop, family: str, overrides: dict, cutoff: pd.Timestamp | None = None):
    """(run, embeddings) of one snapshot of `family` at `cutoff` (default: the shop's end) that passed the gate."""
    from prodvec.jobs import produce

    run = produce(shop, family, [shop.end if cutoff is None else cutoff], store, overrides=overrides, progress=False,
                  log=quiet)[0]
    assert run.validation["success"], run.validation["summary"]
    return run, store.read(run.ref)


@pytest.fixture(scope="module")
def prepared_modalities(tmp_path_factory):
    """(home, shop, truth) of `fused_modality_store`, trained once per test module and never changed."""
    home = tmp_path_factory.mktemp("modalities")
    _, shop, truth = fused_modality_store(home)
    return home, shop, truth


@pytest.fixture
def store_and_shop(prepared_modalities, tmp_path):
    """(store, shop, truth) on a private copy of the prepared modality snapshots: whatever a test writes
    (fusion snapshots, frozen weights) is never seen by another, so tests pass in any order."""
    from prodvec.core.snapshots import SnapshotStore

    home, shop, truth = prepared_modalities
    return SnapshotStore(shutil.copytree(home, tmp_path / "home")), shop, truth
