"""Product images as one uint8 array of square pictures, decoded once per training run.

PNG and JPEG of any size are accepted: a picture that is not square is
padded (not stretched, so shapes keep their proportions) with its own
background colour, then resized to the fixed side. Pictures already of that
side are copied as they are, so pixel-level detail (a 1-pixel texture) survives.

An image that cannot be used (missing, truncated, not an image, larger than
`MAX_PIXELS`: a decompression-bomb guard checked before decoding) never stops
training: its product is treated as having no image, and the bank counts and
names the failures. `check_images` runs the same test for `prodvec check`.

Memory is bounded on large catalogues: up to `in_memory_bytes` the array lives
in RAM, beyond that in a uint8 memory map in a temporary directory, and
decoding streams through it in chunks. Training then reads random batches
from that array; nothing ever holds the catalogue as float32.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from prodvec.core import columns as C
from prodvec.core.shop.model import Shop

CHUNK = 512
# Larger than any product photo (a 6000×6000 studio shot is 36 MP); decoding more
# costs over 120 MB per picture, and PIL's own bomb check only stops at 179 MP.
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """An image could not be read; the message names the product ids and files."""


@dataclass
class ImageBank:
    """`pixels[i]` (side × side × 3, uint8) is the picture of product `ids[i]`."""

    ids: np.ndarray
    pixels: np.ndarray
    # "product P: path: reason" of every picture left out because it could not be used.
    failures: list[str] = field(default_factory=list)
    # Keeps the memory map's directory alive as long as the bank.
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def side(self) -> int:
        return self.pixels.shape[1]

    def batch(self, rows: np.ndarray) -> np.ndarray:
        """The pictures of `rows`, read in ascending order (cheap on a memory map), in the order asked."""
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.pixels.shape[1:]), dtype=np.uint8)
        out[order] = self.pixels[rows[order]]
        return out

    def close(self) -> None:
        if self._tmp is not None:
            del self.pixels
            self._tmp.cleanup()
            self._tmp = None


def read_image(path: Path, side: int) -> np.ndarray:
    """One picture as side × side × 3 uint8: padded to a square with its border colour, then resized."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        _check_size(opened.size)
        image = opened.convert("RGB")
    if image.size != (side, side):
        width, height = image.size
        if width != height:
            # The median border pixel is the photo's backdrop (white in a studio shot).
            pixels = np.asarray(image)
            border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
            backdrop = tuple(int(v) for v in np.median(border, axis=0))
            image = ImageOps.pad(image, (max(width, height),) * 2, color=backdrop)
        image = image.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{width}x{height} pixels is over the {MAX_PIXELS:,} pixel limit "
                         "(decompression-bomb guard)")


def image_problem(path: Path) -> str | None:
    """Why a file is not a usable picture (one line), or None: opened, size-checked, fully decoded."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            _check_size(opened.size)
            opened.load()
    except Image.DecompressionBombError as error:  # PIL's own guard fires in open() beyond 179 MP
        return f"ImageError: {error} (decompression-bomb guard)"
    except Exception as error:  # noqa: BLE001 - untrusted bytes: PIL raises many kinds (OSError, SyntaxError, bomb ...)
        return f"{type(error).__name__}: {error}"
    return None


def check_images(shop: Shop) -> tuple[int, list[str]]:
    """(image files checked, one line per unusable one) for `prodvec check`."""
    if C.IMAGE_PATH not in shop.products:
        return 0, []
    paths = shop.products[C.IMAGE_PATH].dropna().unique()
    bad = []
    for relative in paths:
        problem = image_problem(shop.image_file(relative))
        if problem:
            bad.append(f"{relative}: {problem}")
    return len(paths), bad


def load_images(shop: Shop, side: int = 64, *, in_memory_bytes: int = 512 << 20,
                progress: bool = True) -> ImageBank:
    """Decode the picture of every product that has one (products without are left out).

    A picture that cannot be used is left out too, as if the product had
    none; `bank.failures` names each (product, path, reason). Only when no
    picture at all can be read is it an `ImageError`, naming the first ones.
    """
    products = shop.products
    if C.IMAGE_PATH not in products:
        return ImageBank(np.array([], dtype=str), np.zeros((0, side, side, 3), np.uint8))
    with_image = products[products[C.IMAGE_PATH].notna()]
    ids = with_image[C.PRODUCT_ID].to_numpy().astype(str)
    paths = with_image[C.IMAGE_PATH].to_numpy()
    shape = (len(ids), side, side, 3)
    tmp = None
    if np.prod(shape) > in_memory_bytes:
        tmp = tempfile.TemporaryDirectory(prefix="prodvec-images-")
        pixels = np.lib.format.open_memmap(Path(tmp.name) / "pixels.npy", mode="w+", dtype=np.uint8, shape=shape)
    else:
        pixels = np.empty(shape, dtype=np.uint8)
    failures = []
    good = np.ones(len(ids), dtype=bool)
    written = 0  # good pictures are packed to the front, so the bank is a prefix of `pixels`
    bar = tqdm(total=len(ids), desc="images", unit="img", disable=not progress, leave=False, mininterval=1.0)
    for start in range(0, len(ids), CHUNK):
        stop = min(start + CHUNK, len(ids))
        chunk = np.zeros((stop - start, side, side, 3), dtype=np.uint8)
        k = 0
        for i in range(start, stop):
            path = shop.image_file(paths[i])
            try:
                chunk[k] = read_image(path, side)
                k += 1
            except Exception as error:  # noqa: BLE001 - untrusted bytes: missing, truncated, not an image, a bomb
                good[i] = False
                failures.append(f"product {ids[i]}: {path}: {type(error).__name__}: {error}")
        pixels[written:written + k] = chunk[:k]
        written += k
        bar.update(stop - start)
    bar.close()
    if failures and written == 0:
        if tmp is not None:
            del pixels
            tmp.cleanup()
        shown = "\n  ".join(failures[:5])
        more = f"\n  ... and {len(failures) - 5} more" if len(failures) > 5 else ""
        raise ImageError(f"{len(failures)} of {len(ids)} product images could not be read:\n  {shown}{more}")
    if tmp is not None:
        pixels.flush()
    return ImageBank(ids[good], pixels[:written], failures=failures, _tmp=tmp)
