"""Products: hidden style vectors and traits, the side information and text they show.

The catalogue is built so that each information source knows something the
others do not (behaviour._return_logits turns these into returns):

- the style vector drives category, brand, colour, fabric, pattern, neck and
  gender, so side information and text recover style;
- brand carries `fit_offset` (a third of brands run small): text can learn it;
- `quality` is hidden, only weakly tied to price and never written anywhere:
  only behaviour (quality seekers' clicks and purchases) reveals it;
- `visual_trait` is drawn independently of everything and only painted into
  the image.

All draws are vectorised over products; cost is linear in n_products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.dtypes import StringDType

from prodvec.core import columns as C
from prodvec.generator import vocab as V

STYLE_DIM = 8
# Side-info columns are blanked independently at this rate ("unknown").
NULL_RATE = 0.05
# Share of products already listed when the timeline starts.
INITIAL_SHARE = 0.6
TYPO_RATE = 0.03

CATEGORY_NAMES = tuple(V.CATEGORIES)
CATEGORY_GROUP = np.array([V.GROUPS.index(V.CATEGORIES[c][0]) for c in CATEGORY_NAMES])
CATEGORY_SHARE = np.array([V.CATEGORIES[c][1] for c in CATEGORY_NAMES])
CATEGORY_SHARE = CATEGORY_SHARE / CATEGORY_SHARE.sum()
CATEGORY_SIZED = np.isin(CATEGORY_GROUP, [V.GROUPS.index(g) for g in V.SIZED_GROUPS])
_CATEGORY_NECK = np.isin(CATEGORY_GROUP, [V.GROUPS.index(g) for g in V.NECK_GROUPS])
_STR = StringDType()


@dataclass(frozen=True)
class Catalog:
    """Every product array in product-id order; true values even where a column shows null."""

    ids: np.ndarray  # P000000.. in listing order
    created_s: np.ndarray  # seconds after start, int64
    category: np.ndarray  # index into CATEGORY_NAMES
    style: np.ndarray  # (n, STYLE_DIM) float32, hidden
    brand: np.ndarray
    color: np.ndarray
    fabric: np.ndarray
    pattern: np.ndarray
    neck: np.ndarray  # -1 where the category has no neckline
    gender: np.ndarray
    price: np.ndarray  # float64 list price
    price_band: np.ndarray
    quality: np.ndarray  # [0, 1], hidden
    visual_trait: np.ndarray  # bool, hidden (image only)
    popularity: np.ndarray  # lognormal weight, hidden
    shown: dict  # side-info column -> bool mask of rows that are not null
    title: np.ndarray
    description: np.ndarray  # StringDType with None for null
    has_image: np.ndarray
    # per-brand tables
    brand_fit_offset: np.ndarray
    brand_style: np.ndarray
    # per-category style centroids, used to place user tastes near real styles
    category_centroid: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def relative_price(self) -> np.ndarray:
        """log(price / category base): what budgets and price bands compare against."""
        base = np.array([V.BASE_PRICE[c] for c in CATEGORY_NAMES], dtype=np.float64)
        return np.log(self.price / base[self.category])


def gumbel_argmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row from unnormalised log-probabilities, without a loop."""
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)


def make_catalog(n: int, seconds: int, rng: np.random.Generator, image_share: float) -> Catalog:
    n_cat, n_brand = len(CATEGORY_NAMES), len(V.BRANDS)

    # Style space: group centroids far apart, leaves nearer, products scattered.
    group_centroid = rng.normal(0, 1.2, (len(V.GROUPS), STYLE_DIM))
    cat_centroid = group_centroid[CATEGORY_GROUP] + rng.normal(0, 0.6, (n_cat, STYLE_DIM))
    category = rng.choice(n_cat, size=n, p=CATEGORY_SHARE)
    style = cat_centroid[category] + rng.normal(0, 0.5, (n, STYLE_DIM))

    # Brands: a home category group each, a style near it, a Zipf-like share
    # (long tail), a price level and, for ~30% of them, clothes that run small.
    brand_group = rng.integers(0, len(V.GROUPS), n_brand)
    brand_style = group_centroid[brand_group] + rng.normal(0, 0.9, (n_brand, STYLE_DIM))
    brand_weight = 1.0 / np.arange(1, n_brand + 1) ** 0.9
    brand_weight = rng.permutation(brand_weight)
    brand_level = np.exp(rng.normal(0, 0.35, n_brand))
    # Only a brand at home in a sized group can run small (a bag has no size);
    # 0.36 of those 4/5 of brands makes ~30% of all brands.
    sized_home = np.isin(brand_group, [V.GROUPS.index(g) for g in V.SIZED_GROUPS])
    runs_small = sized_home & (rng.random(n_brand) < 0.36)
    brand_fit_offset = np.where(runs_small, rng.uniform(0.8, 1.2, n_brand), rng.normal(0, 0.08, n_brand))
    brand = _brand_of(style, brand_style, np.log(brand_weight), rng)

    # Side information follows style through random linear maps plus Gumbel
    # noise: correlated with style, never a deterministic function of it.
    color = gumbel_argmax(style @ rng.normal(0, 0.6, (STYLE_DIM, len(V.COLOR_NAMES))), rng)
    fabric = _fabric_of(style, category, rng)
    pattern_bias = np.array([1.2, 0, 0, -0.3, 0.2])  # solid is the most common
    pattern = gumbel_argmax(style @ rng.normal(0, 0.5, (STYLE_DIM, len(V.PATTERNS))) + pattern_bias, rng)
    neck = _neck_of(style, category, rng)
    gender = _gender_of(style, category, rng)

    base = np.array([V.BASE_PRICE[c] for c in CATEGORY_NAMES], dtype=np.float64)
    raw_price = base[category] * brand_level[brand] * np.exp(rng.normal(0, 0.25, n))
    price = np.floor(raw_price) + 0.99  # shop prices end in .99 and stay > 0
    rel = np.log(price / base[category]) + rng.normal(0, 0.08, n)
    price_band = np.digitize(rel, [-0.22, 0.22])

    # Quality: mostly product-specific noise with a small pull towards price,
    # so that price (and brand) predict it only weakly.
    rel_z = (rel - rel.mean()) / (rel.std() + 1e-9)
    quality = 1.0 / (1.0 + np.exp(-1.4 * (0.15 * rel_z + rng.normal(0, 1, n))))
    visual_trait = rng.random(n) < 0.25
    popularity = np.exp(rng.normal(0, 1.0, n))

    created_s = np.where(rng.random(n) < INITIAL_SHARE, 0, rng.integers(1, seconds, n))
    # Every category must have something on the shelf on day one.
    for c in range(n_cat):
        members = np.flatnonzero(category == c)
        if len(members):
            created_s[members[np.argmin(created_s[members])]] = 0

    # Ids follow listing order (ties broken at random), like a real shop's.
    order = np.lexsort((rng.random(n), created_s))
    width = max(6, len(str(n - 1)))
    ids = "P" + np.strings.zfill(np.arange(n).astype(_STR), width)

    arrays = dict(
        created_s=created_s, category=category, style=style, brand=brand, color=color, fabric=fabric,
        pattern=pattern, neck=neck, gender=gender, price=price, price_band=price_band, quality=quality,
        visual_trait=visual_trait, popularity=popularity,
    )
    arrays = {k: v[order] for k, v in arrays.items()}
    arrays["style"] = arrays["style"].astype(np.float32)
    shown = {name: rng.random(n) >= NULL_RATE for name in ("brand", "color", "fabric", "pattern", "neck", "gender", "price_band")}
    shown["neck"] &= arrays["neck"] >= 0

    title = titles(arrays, rng)
    description = describe(arrays, rng)
    has_image = rng.random(n) < image_share
    return Catalog(
        ids=ids, shown=shown, title=title, description=description, has_image=has_image,
        brand_fit_offset=brand_fit_offset, brand_style=brand_style.astype(np.float32),
        category_centroid=cat_centroid, **arrays,
    )


def _brand_of(style, brand_style, log_weight, rng, chunk: int = 65536) -> np.ndarray:
    """Brand by softmax(-distance^2 to brand style + log share); chunked to bound memory."""
    out = np.empty(len(style), dtype=np.int64)
    for lo in range(0, len(style), chunk):
        s = style[lo : lo + chunk]
        d2 = ((s[:, None, :] - brand_style[None, :, :]) ** 2).sum(-1)
        out[lo : lo + chunk] = gumbel_argmax(-d2 / 4.0 + log_weight, rng)
    return out


def _fabric_of(style, category, rng) -> np.ndarray:
    allowed = np.full((len(V.GROUPS), len(V.FABRICS)), -np.inf)
    for g, group in enumerate(V.GROUPS):
        allowed[g, [V.FABRICS.index(f) for f in V.FABRICS_BY_GROUP[group]]] = 0.0
    logits = style @ rng.normal(0, 0.6, (STYLE_DIM, len(V.FABRICS))) + allowed[CATEGORY_GROUP[category]]
    return gumbel_argmax(logits, rng)


def _neck_of(style, category, rng) -> np.ndarray:
    bias = np.zeros((len(CATEGORY_NAMES), len(V.NECKS)))
    bias[:, V.NECKS.index("hooded")] = -2.0
    bias[CATEGORY_NAMES.index("hoodies"), V.NECKS.index("hooded")] = 4.0
    bias[CATEGORY_NAMES.index("shirts"), V.NECKS.index("collar")] = 3.0
    bias[CATEGORY_NAMES.index("sweaters"), V.NECKS.index("turtleneck")] = 1.0
    neck = gumbel_argmax(style @ rng.normal(0, 0.5, (STYLE_DIM, len(V.NECKS))) + bias[category], rng)
    return np.where(_CATEGORY_NECK[category], neck, -1)


def _gender_of(style, category, rng) -> np.ndarray:
    bias = np.zeros((len(CATEGORY_NAMES), len(V.GENDERS)))
    for c in ("dresses", "skirts", "heels", "leggings", "tops", "jumpsuits"):
        bias[CATEGORY_NAMES.index(c), V.GENDERS.index("women")] = 3.0
    for c in ("watches", "caps", "sunglasses", "scarves", "bags", "sneakers"):
        bias[CATEGORY_NAMES.index(c), V.GENDERS.index("unisex")] = 1.0
    s0 = style[:, 0:1] - np.median(style[:, 0])
    logits = np.hstack([1.5 * s0, -1.5 * s0, np.zeros_like(s0)]) + bias[category]
    return gumbel_argmax(logits, rng)


# -- text ---------------------------------------------------------------------
# Titles and descriptions are assembled column-wise: words are picked by index
# into small vocab arrays and concatenated with numpy string ufuncs, so the
# cost stays linear without a Python loop per product.


def _pick(table: dict, keys: tuple, key_index: np.ndarray, rng, first_weight: float | None = None) -> np.ndarray:
    """One word per row from table[keys[key_index]]; '' where key_index < 0.

    `first_weight` makes the first (canonical) word that likely, the
    alternatives share the rest.
    """
    words = [w for k in keys for w in table[k]]
    counts = np.array([len(table[k]) for k in keys])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = np.maximum(key_index, 0)
    u = rng.random(len(key_index))
    if first_weight is None:
        offset = np.floor(u * counts[k]).astype(np.int64)
    else:
        rest = (u - first_weight) / (1 - first_weight)
        offset = np.where(u < first_weight, 0, 1 + np.floor(rest * (counts[k] - 1)).astype(np.int64))
        offset = np.minimum(offset, counts[k] - 1)
    out = np.array(words + [""], dtype=_STR)[starts[k] + offset]
    out[key_index < 0] = ""
    return out


def _typo(word: str, rng) -> str:
    """A plausible slip of the keyboard: swap, drop or double one inner letter."""
    if len(word) < 4:
        return word + word[-1]
    i = int(rng.integers(1, len(word) - 2))
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _with_typos(words: np.ndarray, hit: np.ndarray, rng) -> np.ndarray:
    """Replace the hit rows by a typo of their word (typos made once per distinct word)."""
    out = words.copy()
    if hit.any():
        uniq, inverse = np.unique(words[hit], return_inverse=True)
        typos = np.array([_typo(str(w), rng) if w else "" for w in uniq], dtype=_STR)
        out[hit] = typos[inverse]
    return out


def _squash(text: np.ndarray) -> np.ndarray:
    """Collapse the double spaces left by empty parts and trim dangling separators."""
    for _ in range(3):
        text = np.strings.replace(text, "  ", " ")
    text = np.strings.replace(text, " ,", ",")
    return np.strings.strip(np.strings.strip(text), " -|,")


def _masked(words: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, words, np.array("", dtype=_STR)).astype(_STR)


def titles(a: dict, rng) -> np.ndarray:
    n = len(a["category"])
    noun = _pick(V.NOUNS, CATEGORY_NAMES, a["category"], rng, first_weight=0.45)
    brand = np.array(V.BRANDS, dtype=_STR)[a["brand"]]
    color = _pick(
        {c: (c,) + V.COLORS[c][1] for c in V.COLOR_NAMES}, V.COLOR_NAMES, a["color"], rng, first_weight=0.8
    )
    pattern = _pick(V.PATTERN_WORDS, V.PATTERNS, a["pattern"], rng)
    neck = _pick(V.NECK_WORDS, V.NECKS, a["neck"], rng)
    gender = _pick(V.GENDER_WORDS, V.GENDERS, a["gender"], rng)
    fabric = _masked(np.array(V.FABRICS, dtype=_STR)[a["fabric"]], rng.random(n) < 0.6)

    # A typo lands in the noun, the brand or the colour of ~3% of titles.
    typo = rng.random(n) < TYPO_RATE
    where = rng.integers(0, 3, n)
    noun = _with_typos(noun, typo & (where == 0), rng)
    brand = _with_typos(brand, typo & (where == 1), rng)
    color = _with_typos(color, typo & (where == 2), rng)

    sp = " "
    templates = (
        (0.22, lambda: brand + sp + gender + sp + pattern + sp + noun + " " + color),
        (0.20, lambda: brand + sp + color + sp + fabric + sp + noun),
        (0.14, lambda: noun + " in " + color + " by " + brand),
        (0.10, lambda: gender + sp + fabric + sp + noun + " - " + color),  # no brand
        (0.10, lambda: brand + " | " + pattern + sp + noun + sp + neck),  # no colour
        (0.10, lambda: color + sp + pattern + sp + noun),  # no brand
        (0.14, lambda: brand + sp + noun + sp + neck + ", " + color + sp + fabric),
    )
    weights = np.array([w for w, _ in templates])
    choice = rng.choice(len(templates), size=n, p=weights / weights.sum())
    out = np.full(n, "", dtype=_STR)
    for t, (_, build) in enumerate(templates):
        rows = choice == t
        out[rows] = build()[rows]
    out = _squash(out)
    case = rng.random(n)
    out = np.where(case < 0.2, np.strings.title(out), np.where(case < 0.32, np.strings.lower(out), out))
    return out.astype(_STR)


def describe(a: dict, rng) -> np.ndarray:
    """Longer marketing text: true about category, colour, fabric; silent on quality, fit, look."""
    n = len(a["category"])
    noun = _pick(V.NOUNS, CATEGORY_NAMES, a["category"], rng, first_weight=0.6)
    color = np.array(V.COLOR_NAMES, dtype=_STR)[a["color"]]
    pattern = _pick(V.PATTERN_WORDS, V.PATTERNS, a["pattern"], rng)
    fabric = np.array(V.FABRICS, dtype=_STR)[a["fabric"]]
    thing = _squash(pattern + " " + noun)
    thing = np.strings.upper(np.strings.slice(thing, 0, 1)) + np.strings.slice(thing, 1, None)
    first = thing + " in " + color + ", made from " + fabric + "."

    # Brand blurbs: all brand x template x occasion sentences are few, so they
    # are formatted once and indexed.
    blurbs = [t.format(brand=b, occasion=o) for b in V.BRANDS for t in V.BLURBS for o in V.OCCASIONS]
    blurbs = np.array([("An " + b[2:]) if b[:2] == "A " and b[2] in "AEIOU" else b for b in blurbs], dtype=_STR)
    tmpl = rng.integers(0, len(V.BLURBS), len(V.BRANDS))[a["brand"]]  # one voice per brand
    occasion = rng.integers(0, len(V.OCCASIONS), n)
    blurb = blurbs[(a["brand"] * len(V.BLURBS) + tmpl) * len(V.OCCASIONS) + occasion]
    blurb = _masked(blurb, rng.random(n) < 0.7)

    neck = np.array([V.NECK_SENTENCES[k] for k in V.NECKS] + [""], dtype=_STR)[a["neck"]]  # -1 -> ""
    fit = np.array(V.FIT_FILLER, dtype=_STR)[rng.integers(0, len(V.FIT_FILLER), n)]
    fit = _masked(fit, CATEGORY_SIZED[a["category"]])
    care = np.array([V.CARE[f] for f in V.FABRICS], dtype=_STR)[a["fabric"]]
    care = _masked(care, rng.random(n) < 0.5)
    hype = np.array(V.HYPE, dtype=_STR)[rng.integers(0, len(V.HYPE), n)]

    out = _squash(first + " " + blurb + " " + neck + " " + fit + " " + care + " " + hype)
    # ~5% have no description at all, ~5% an empty one.
    u = rng.random(n)
    out[u < 0.10] = ""
    result = out.astype(StringDType(na_object=None))
    result[u < 0.05] = None
    return result


# -- tables -------------------------------------------------------------------


def _labels(names, index, mask) -> pa.Array:
    """Index -> string column, null where masked (unknown) or index < 0."""
    values = pa.array(list(names), pa.string())
    valid = mask & (index >= 0)
    return values.take(pa.array(np.where(valid, index, 0), mask=~valid))


def products_table(cat: Catalog, start_ns: int) -> pa.Table:
    """products.parquet exactly as the contract wants it (nothing hidden leaks)."""
    n = len(cat)
    image_path = (C.IMAGES_DIR + "/" + cat.ids + ".png").astype(StringDType(na_object=None))
    image_path[~cat.has_image] = None
    return pa.table({
        C.PRODUCT_ID: pa.array(cat.ids, pa.string()),
        C.CREATED_AT: pa.array(start_ns + cat.created_s * 1_000_000_000, pa.timestamp("ns", tz="UTC")),
        C.TITLE: pa.array(cat.title, pa.string()),
        C.DESCRIPTION: pa.array(cat.description, pa.string()),
        C.CATEGORY: _labels(CATEGORY_NAMES, cat.category, np.ones(n, bool)),
        C.PRICE: pa.array(cat.price, pa.float64()),
        C.IMAGE_PATH: pa.array(image_path, pa.string()),
        "brand": _labels(V.BRANDS, cat.brand, cat.shown["brand"]),
        "color": _labels(V.COLOR_NAMES, cat.color, cat.shown["color"]),
        "fabric": _labels(V.FABRICS, cat.fabric, cat.shown["fabric"]),
        "pattern": _labels(V.PATTERNS, cat.pattern, cat.shown["pattern"]),
        "neck": _labels(V.NECKS, cat.neck, cat.shown["neck"]),
        "gender": _labels(V.GENDERS, cat.gender, cat.shown["gender"]),
        "price_band": _labels(V.PRICE_BANDS, cat.price_band, cat.shown["price_band"]),
    })


def truth_table(cat: Catalog) -> pa.Table:
    """What the generator knows and the shop does not say; for evaluation only."""
    return pa.table({
        C.PRODUCT_ID: pa.array(cat.ids, pa.string()),
        "style": float_lists(cat.style),
        "quality": pa.array(cat.quality, pa.float64()),
        "visual_trait": pa.array(cat.visual_trait, pa.bool_()),
        "fit_offset": pa.array(cat.brand_fit_offset[cat.brand], pa.float64()),
        "brand_runs_small": pa.array(cat.brand_fit_offset[cat.brand] > 0.5, pa.bool_()),
        "popularity": pa.array(cat.popularity, pa.float64()),
        "true_brand": _labels(V.BRANDS, cat.brand, np.ones(len(cat), bool)),
        "true_color": _labels(V.COLOR_NAMES, cat.color, np.ones(len(cat), bool)),
        "true_pattern": _labels(V.PATTERNS, cat.pattern, np.ones(len(cat), bool)),
    })


def float_lists(matrix: np.ndarray) -> pa.Array:
    """(n, d) float matrix -> list<float32> column without a Python loop."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1)))
