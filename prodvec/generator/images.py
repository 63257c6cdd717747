"""Procedural product photos: silhouette by category, colour, pattern and the visual trait.

The image repeats what text says (category, colour, pattern) and adds the
one thing text never says: products with `visual_trait` carry a sheer,
glossy band (a 1-pixel light/dark checker across the garment) that shows on
every colour. An image embedding can therefore learn a return cause that no
text or click model sees.

All randomness (shade, pose, pattern variant, background) is drawn up front
with numpy, so the per-product loop only draws and encodes; PNGs are saved
without metadata and are byte-identical for the same seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from prodvec.generator import vocab as V
from prodvec.generator.catalog import CATEGORY_NAMES, Catalog

# Silhouettes in unit coordinates (x right, y down). Each is a list of
# ("poly", points) / ("ellipse", box) / ("rect", box) parts; "cut" parts are
# erased afterwards (openings, gaps). Groups share a family resemblance.
_LONG_SLEEVES = [(0.30, 0.18), (0.42, 0.13), (0.58, 0.13), (0.70, 0.18), (0.90, 0.72), (0.82, 0.76),
                 (0.70, 0.40), (0.70, 0.88), (0.30, 0.88), (0.30, 0.40), (0.18, 0.76), (0.10, 0.72)]
SHAPES: dict[str, list] = {
    "tshirts": [("poly", [(0.30, 0.18), (0.42, 0.14), (0.58, 0.14), (0.70, 0.18), (0.88, 0.34), (0.80, 0.44),
                          (0.70, 0.37), (0.70, 0.86), (0.30, 0.86), (0.30, 0.37), (0.20, 0.44), (0.12, 0.34)])],
    "shirts": [("poly", _LONG_SLEEVES), ("poly", [(0.42, 0.13), (0.50, 0.24), (0.58, 0.13), (0.62, 0.08), (0.38, 0.08)])],
    "tops": [("poly", [(0.34, 0.14), (0.41, 0.14), (0.50, 0.30), (0.59, 0.14), (0.66, 0.14), (0.67, 0.40),
                       (0.72, 0.86), (0.28, 0.86), (0.33, 0.40)])],
    "sweaters": [("poly", [(0.26, 0.18), (0.40, 0.12), (0.60, 0.12), (0.74, 0.18), (0.92, 0.78), (0.82, 0.82),
                           (0.72, 0.42), (0.74, 0.88), (0.26, 0.88), (0.28, 0.42), (0.18, 0.82), (0.08, 0.78)])],
    "jackets": [("poly", _LONG_SLEEVES), ("cut", [(0.49, 0.20), (0.51, 0.20), (0.51, 0.88), (0.49, 0.88)]),
                ("cut", [(0.43, 0.13), (0.50, 0.32), (0.57, 0.13)])],
    "hoodies": [("poly", _LONG_SLEEVES), ("ellipse", (0.36, 0.02, 0.64, 0.26)),
                ("cut", [(0.38, 0.62), (0.62, 0.62), (0.62, 0.64), (0.38, 0.64)])],
    "jeans": [("poly", [(0.32, 0.10), (0.68, 0.10), (0.70, 0.92), (0.54, 0.92), (0.50, 0.40), (0.46, 0.92),
                        (0.30, 0.92)])],
    "trousers": [("poly", [(0.34, 0.10), (0.66, 0.10), (0.76, 0.92), (0.56, 0.92), (0.50, 0.42), (0.44, 0.92),
                           (0.24, 0.92)])],
    "shorts": [("poly", [(0.30, 0.22), (0.70, 0.22), (0.76, 0.60), (0.54, 0.62), (0.50, 0.44), (0.46, 0.62),
                         (0.24, 0.60)])],
    "skirts": [("poly", [(0.36, 0.18), (0.64, 0.18), (0.80, 0.74), (0.20, 0.74)])],
    "leggings": [("poly", [(0.36, 0.08), (0.64, 0.08), (0.60, 0.94), (0.52, 0.94), (0.50, 0.36), (0.48, 0.94),
                           (0.40, 0.94)])],
    "sneakers": [("poly", [(0.14, 0.50), (0.40, 0.44), (0.56, 0.58), (0.86, 0.64), (0.88, 0.74), (0.12, 0.74)]),
                 ("rect", (0.12, 0.74, 0.88, 0.80))],
    "sandals": [("rect", (0.12, 0.70, 0.88, 0.76)), ("poly", [(0.30, 0.52), (0.36, 0.52), (0.46, 0.70), (0.40, 0.70)]),
                ("poly", [(0.52, 0.56), (0.72, 0.56), (0.72, 0.70), (0.52, 0.70)])],
    "boots": [("poly", [(0.28, 0.10), (0.54, 0.10), (0.56, 0.56), (0.86, 0.66), (0.88, 0.82), (0.24, 0.82)])],
    "heels": [("poly", [(0.14, 0.40), (0.30, 0.36), (0.60, 0.60), (0.88, 0.66), (0.86, 0.72), (0.56, 0.70),
                        (0.24, 0.56), (0.22, 0.86), (0.18, 0.86)])],
    "dresses": [("poly", [(0.38, 0.08), (0.43, 0.08), (0.50, 0.20), (0.57, 0.08), (0.62, 0.08), (0.62, 0.38),
                          (0.82, 0.92), (0.18, 0.92), (0.38, 0.38)])],
    "jumpsuits": [("poly", [(0.36, 0.08), (0.42, 0.08), (0.50, 0.20), (0.58, 0.08), (0.64, 0.08), (0.66, 0.46),
                            (0.72, 0.92), (0.54, 0.92), (0.50, 0.56), (0.46, 0.92), (0.28, 0.92), (0.34, 0.46)])],
    "bags": [("rect", (0.20, 0.38, 0.80, 0.86)), ("ellipse", (0.32, 0.14, 0.68, 0.54)),
             ("cut", [(0.38, 0.22), (0.62, 0.22), (0.62, 0.38), (0.38, 0.38)])],
    "watches": [("rect", (0.42, 0.06, 0.58, 0.94)), ("ellipse", (0.30, 0.32, 0.70, 0.68))],
    "caps": [("ellipse", (0.22, 0.28, 0.72, 0.78)), ("rect", (0.22, 0.53, 0.90, 0.62)),
             ("cut", [(0.0, 0.62), (1.0, 0.62), (1.0, 1.0), (0.0, 1.0)])],
    "belts": [("rect", (0.06, 0.44, 0.94, 0.56)), ("rect", (0.66, 0.38, 0.80, 0.62)),
              ("cut", [(0.69, 0.42), (0.77, 0.42), (0.77, 0.58), (0.69, 0.58)])],
    "scarves": [("poly", [(0.10, 0.20), (0.30, 0.14), (0.50, 0.30), (0.70, 0.20), (0.92, 0.34), (0.90, 0.48),
                          (0.70, 0.36), (0.50, 0.48), (0.30, 0.32), (0.12, 0.40)]),
                ("rect", (0.30, 0.40, 0.44, 0.90))],
    "sunglasses": [("ellipse", (0.10, 0.36, 0.46, 0.66)), ("ellipse", (0.54, 0.36, 0.90, 0.66)),
                   ("rect", (0.44, 0.40, 0.56, 0.45))],
    "wallets": [("rect", (0.16, 0.28, 0.84, 0.74)),
                ("cut", [(0.16, 0.46), (0.84, 0.46), (0.84, 0.48), (0.16, 0.48)])],
}
assert set(SHAPES) == set(CATEGORY_NAMES)
_SHAPE_LIST = [SHAPES[c] for c in CATEGORY_NAMES]
_COLOR_RGB = np.array([V.COLORS[c][0] for c in V.COLOR_NAMES], dtype=np.float64)
_VARIANTS = 4  # precomputed variants per pattern and per background
_POSES = 8  # precomputed jittered silhouettes per category (drawing them per image costs more than encoding)
_PATTERN_INDEX = {p: i for i, p in enumerate(V.PATTERNS)}


class _Stencils:
    """Masks that do not depend on the product: patterns, trait band, backgrounds."""

    def __init__(self, size: int, rng: np.random.Generator):
        yy, xx = np.mgrid[0:size, 0:size]
        self.patterns: list[list[Image.Image | None]] = []
        for p in V.PATTERNS:
            variants = []
            for v in range(_VARIANTS):
                step = max(3, size // 16 + v)
                if p == "solid":
                    variants.append(None)
                    continue
                if p == "striped":
                    m = (yy + v) % step < max(1, step // 3)
                elif p == "checked":
                    m = ((yy + v) % step == 0) | ((xx + v) % step == 0)
                elif p == "dotted":
                    m = ((yy + v) % step - step // 2) ** 2 + ((xx + v) % step - step // 2) ** 2 <= max(1, step // 4) ** 2
                else:  # printed: random blobs, smoothed into shapes
                    m = rng.random((size // 4 + 1, size // 4 + 1)) < 0.3
                    m = np.kron(m, np.ones((4, 4), dtype=bool))[:size, :size]
                variants.append(Image.fromarray((m * 255).astype(np.uint8), "L"))
            self.patterns.append(variants)
        # The trait: a diagonal band of 1-pixel checker, half lightened, half
        # darkened, so it reads as a sheen/sheer texture on any colour.
        checker = (yy + xx) % 2 == 0
        self.trait_light, self.trait_dark = [], []
        for v in range(_VARIANTS):
            offset = (-0.12 + 0.08 * v) * size  # near the centre, where every silhouette is
            band = np.abs((xx - yy) * 0.7071 - offset) < size * 0.18
            self.trait_light.append(Image.fromarray((band & checker).astype(np.uint8) * 170, "L"))
            self.trait_dark.append(Image.fromarray((band & ~checker).astype(np.uint8) * 110, "L"))
        # Silhouettes: a few poses (scale, shift) per category, drawn once.
        self.silhouettes = [
            [_silhouette(parts, size, rng.uniform(0.88, 1.04), rng.uniform(-0.04, 0.04, 2)) for _ in range(_POSES)]
            for parts in _SHAPE_LIST
        ]
        self.backgrounds = [
            Image.fromarray((rng.integers(240, 243, (size, size, 1)) + np.zeros((1, 1, 3), int)).astype(np.uint8), "RGB")
            for _ in range(_VARIANTS)
        ]


def draw_images(cat: Catalog, images_dir: Path, size: int, rng: np.random.Generator, progress: bool = True) -> int:
    """Write images/<product_id>.png for every product with an image; returns how many."""
    from tqdm import tqdm

    images_dir.mkdir(parents=True, exist_ok=True)
    stencils = _Stencils(size, rng)
    n = len(cat)
    # Per-product randomness, drawn for all products so the stream does not
    # depend on which ones have images.
    shade = rng.uniform(0.85, 1.12, n)
    rgb = np.clip(_COLOR_RGB[cat.color] * shade[:, None], 0, 255).astype(np.uint8)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    contrast = np.where(luminance[:, None] > 110, rgb * 0.55, rgb * 0.45 + 140).astype(np.uint8)
    rgb, contrast = [tuple(c) for c in rgb.tolist()], [tuple(c) for c in contrast.tolist()]
    pose = rng.integers(0, _POSES, n)
    pattern_variant = rng.integers(0, _VARIANTS, n)
    trait_variant = rng.integers(0, _VARIANTS, n)
    background = rng.integers(0, _VARIANTS, n)

    rows = np.flatnonzero(cat.has_image)
    for i in tqdm(rows, desc="images", unit="img", disable=not progress, mininterval=1.0):
        garment = Image.new("RGB", (size, size), rgb[i])
        stencil = stencils.patterns[cat.pattern[i]][pattern_variant[i]]
        if stencil is not None:
            garment.paste(contrast[i], mask=stencil)
        if cat.visual_trait[i]:
            garment.paste((255, 255, 255), mask=stencils.trait_light[trait_variant[i]])
            garment.paste((0, 0, 0), mask=stencils.trait_dark[trait_variant[i]])
        image = stencils.backgrounds[background[i]].copy()
        image.paste(garment, mask=stencils.silhouettes[cat.category[i]][pose[i]])
        # zlib level 3: ~2x faster than the default 6 for a few % more bytes.
        image.save(images_dir / f"{cat.ids[i]}.png", format="PNG", compress_level=3)
    return len(rows)


def _silhouette(parts: list, size: int, scale: float, shift: np.ndarray) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)

    def place(points):
        pts = (np.asarray(points, dtype=np.float64) - 0.5) * scale + 0.5 + shift
        return [tuple(p) for p in (pts * (size - 1)).round().tolist()]

    for kind, geometry in parts:
        if kind == "poly":
            draw.polygon(place(geometry), fill=255)
        elif kind == "cut":
            draw.polygon(place(geometry), fill=0)
        else:
            (x0, y0), (x1, y1) = place([geometry[:2], geometry[2:]])
            (draw.ellipse if kind == "ellipse" else draw.rectangle)([x0, y0, x1, y1], fill=255)
    return mask
