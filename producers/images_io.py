"""Product images as one uint8 array of square pictures, decoded once per training run.

PNG and JPEG of any size are accepted: a picture that is not square is
padded (not stretched, so shapes keep their proportions) with its own
background colour, then resized to the fixed side. Pictures already of that
side are copied as they are, so pixel-level detail (a 1-pixel texture) survives.

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


class ImageError(ValueError):
    """An image could not be read; the message names the product ids and files."""


@dataclass
class ImageBank:
    """`pixels[i]` (side × side × 3, uint8) is the picture of product `ids[i]`."""

    ids: np.ndarray
    pixels: np.ndarray
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


def load_images(shop: Shop, side: int = 64, *, in_memory_bytes: int = 512 << 20,
                progress: bool = True) -> ImageBank:
    """Decode the picture of every product that has one (products without are left out).

    Every unreadable file is collected first and reported in one error that
    names the product ids and paths, rather than failing on the first.
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
    bar = tqdm(total=len(ids), desc="images", unit="img", disable=not progress, leave=False, mininterval=1.0)
    for start in range(0, len(ids), CHUNK):
        stop = min(start + CHUNK, len(ids))
        chunk = np.zeros((stop - start, side, side, 3), dtype=np.uint8)
        for k, i in enumerate(range(start, stop)):
            path = shop.image_file(paths[i])
            try:
                chunk[k] = read_image(path, side)
            except (OSError, ValueError) as error:  # missing, truncated, not an image (PIL raises OSError subclasses)
                failures.append(f"product {ids[i]}: {path}: {type(error).__name__}: {error}")
        pixels[start:stop] = chunk
        bar.update(stop - start)
    bar.close()
    if failures:
        if tmp is not None:
            del pixels
            tmp.cleanup()
        shown = "\n  ".join(failures[:5])
        more = f"\n  ... and {len(failures) - 5} more" if len(failures) > 5 else ""
        raise ImageError(f"{len(failures)} of {len(ids)} product images could not be read:\n  {shown}{more}")
    if tmp is not None:
        pixels.flush()
    return ImageBank(ids, pixels, tmp)
