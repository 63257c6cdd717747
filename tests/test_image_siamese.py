"""image_siamese learns silhouettes, and its loader reads what shops really hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from prodvec.core import columns as C
from prodvec.core.producer import TrainContext
from prodvec.producers.images_io import ImageError, load_images
from prodvec.producers import make_producer, producer_class
from prodvec.core.shop.model import Shop
from tests.producer_data import known_answer_shop, same_category_share

FAST = producer_class("image_siamese").smoke_settings

MYNTRA = Path("/work/shared/data/myntra")


def test_image_siamese_learns_shape_not_colour(tmp_path):
    """Silhouette depends on category, colour is random: only a net that learned shape groups them.

    The held-out triplets anchor on products whose record lacks its category,
    so training never gave them a same-category positive.
    """
    shop, truth = known_answer_shop(root=tmp_path)
    emb = make_producer("image_siamese", {**FAST, "seed": 0}).train(
        shop, TrainContext(cutoff=shop.end, progress=False))
    assert len(emb) == len(shop.products)
    vectors, _ = emb.lookup(shop.products[C.PRODUCT_ID])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    unlabeled = np.flatnonzero(shop.products[C.CATEGORY].isna().to_numpy())
    rng = np.random.default_rng(1)
    anchors = rng.choice(unlabeled, 2000)
    others = np.arange(len(truth))
    positives = np.array([rng.choice(np.flatnonzero((truth == truth[a]) & (others != a))) for a in anchors])
    negatives = np.array([rng.choice(np.flatnonzero(truth != truth[a])) for a in anchors])
    accuracy = ((unit[anchors] * unit[positives]).sum(1) > (unit[anchors] * unit[negatives]).sum(1)).mean()
    share = same_category_share(vectors, truth)
    assert accuracy > 0.7, f"held-out triplet accuracy {accuracy:.2f}; chance is 0.5"
    assert share > 0.5, f"neighbours share category {share:.2f}; chance is 0.25"


def _shop(root: Path, images: dict[str, Image.Image | None], fmt: dict[str, str]) -> Shop:
    (root / C.IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    paths = []
    for pid, image in images.items():
        relative = f"{C.IMAGES_DIR}/{pid}.{fmt[pid]}" if pid in fmt else None
        if image is not None and relative is not None:
            image.save(root / relative)
        paths.append(relative)
    products = pd.DataFrame({C.PRODUCT_ID: list(images), C.IMAGE_PATH: paths})
    return Shop(root=root, products=products)


def test_loader_reads_jpeg_and_png_of_any_size_into_one_square_array(tmp_path):
    portrait = Image.new("RGB", (60, 80), (255, 255, 255))
    portrait.paste((200, 0, 0), (20, 20, 40, 60))  # a red garment on a white studio backdrop
    square = Image.new("RGB", (32, 32), (0, 0, 255))
    greyscale_wide = Image.new("L", (100, 50), 128)
    with_alpha = Image.new("RGBA", (64, 64), (0, 255, 0, 255))
    shop = _shop(tmp_path, {"A": portrait, "B": square, "C": greyscale_wide, "D": with_alpha, "E": None},
                 {"A": "jpg", "B": "png", "C": "jpeg", "D": "png"})
    bank = load_images(shop, side=64, progress=False)
    assert list(bank.ids) == ["A", "B", "C", "D"], "a product without an image is left out"
    assert bank.pixels.shape == (4, 64, 64, 3) and bank.pixels.dtype == np.uint8
    a = bank.pixels[0].astype(int)
    assert (np.abs(a[32, 2] - 255) < 10).all(), "a portrait is padded with its backdrop, not stretched or black"
    assert a[32, 32, 0] > 150 and a[32, 32, 2] < 60, "the garment stays in the middle"
    assert (bank.pixels[1] == [0, 0, 255]).all() and (bank.pixels[2] == 128).all()
    np.testing.assert_array_equal(bank.pixels[3], np.broadcast_to([0, 255, 0], (64, 64, 3)))
    # Past the in-memory budget the same pixels come from a memory map.
    mapped = load_images(shop, side=64, in_memory_bytes=1, progress=False)
    assert isinstance(mapped.pixels, np.memmap)
    np.testing.assert_array_equal(mapped.batch(np.array([3, 0])), bank.pixels[[3, 0]])
    mapped.close()


def test_unusable_images_degrade_to_no_image_and_are_named(tmp_path):
    good = Image.new("RGB", (16, 16), (10, 20, 30))
    shop = _shop(tmp_path, {"OK1": good, "GONE": good, "JUNK": good}, {"OK1": "png", "GONE": "png", "JUNK": "jpg"})
    (tmp_path / C.IMAGES_DIR / "GONE.png").unlink()
    (tmp_path / C.IMAGES_DIR / "JUNK.jpg").write_bytes(b"not a jpeg")
    bank = load_images(shop, side=32, progress=False)
    assert list(bank.ids) == ["OK1"] and bank.pixels.shape == (1, 32, 32, 3)
    assert (bank.pixels[0] == (10, 20, 30)).all(), "the good picture is kept, aligned with its id"
    message = "\n".join(bank.failures)
    assert len(bank.failures) == 2
    assert "product GONE" in message and "GONE.png" in message
    assert "product JUNK" in message and "JUNK.jpg" in message
    # Only when nothing at all can be read is it an error, naming the files.
    (tmp_path / C.IMAGES_DIR / "OK1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageError, match="3 of 3 product images") as error:
        load_images(shop, side=32, progress=False)
    assert "product GONE" in str(error.value)


@pytest.mark.skipif(not (MYNTRA / "images").is_dir(), reason="the Myntra sample is not on this machine")
def test_loader_reads_the_myntra_sample_photos():
    present = sorted(p.stem for p in (MYNTRA / "images").glob("*.jpg"))[:20]
    assert present, "the sample has photos named <id>.jpg"
    products = pd.DataFrame({C.PRODUCT_ID: present, C.IMAGE_PATH: [f"images/{i}.jpg" for i in present]})
    bank = load_images(Shop(root=MYNTRA, products=products), side=64, progress=False)
    assert bank.pixels.shape == (len(present), 64, 64, 3)
    assert bank.pixels.std(axis=(1, 2, 3)).min() > 5, "every photo has content, not a blank square"
