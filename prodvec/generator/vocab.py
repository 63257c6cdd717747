"""Fixed vocabularies of the synthetic shop: categories, side-info values, words.

Everything here is constant data, independent of the seed, so that two shops
of different seeds speak the same language and only the draws differ.
"""

from __future__ import annotations

# -- categories ---------------------------------------------------------------
# leaf -> (group, share of the catalogue). Shares are uneven on purpose: real
# catalogues are dominated by a few categories (t-shirts, dresses, sneakers).
CATEGORIES: dict[str, tuple[str, float]] = {
    "tshirts": ("topwear", 0.09),
    "shirts": ("topwear", 0.06),
    "tops": ("topwear", 0.06),
    "sweaters": ("topwear", 0.05),
    "jackets": ("topwear", 0.04),
    "hoodies": ("topwear", 0.04),
    "jeans": ("bottomwear", 0.06),
    "trousers": ("bottomwear", 0.05),
    "shorts": ("bottomwear", 0.04),
    "skirts": ("bottomwear", 0.04),
    "leggings": ("bottomwear", 0.03),
    "sneakers": ("footwear", 0.06),
    "sandals": ("footwear", 0.03),
    "boots": ("footwear", 0.03),
    "heels": ("footwear", 0.03),
    "dresses": ("dresses", 0.08),
    "jumpsuits": ("dresses", 0.03),
    "bags": ("accessories", 0.04),
    "watches": ("accessories", 0.03),
    "caps": ("accessories", 0.02),
    "belts": ("accessories", 0.02),
    "scarves": ("accessories", 0.02),
    "sunglasses": ("accessories", 0.02),
    "wallets": ("accessories", 0.02),
}
GROUPS = ("topwear", "bottomwear", "footwear", "dresses", "accessories")
# Groups whose products come in sizes (a fit problem can only happen there).
SIZED_GROUPS = ("topwear", "bottomwear", "footwear", "dresses")
# Groups for which a neckline means something; elsewhere `neck` is null.
NECK_GROUPS = ("topwear", "dresses")

# Typical list price per category in EUR; brands and noise scale it.
BASE_PRICE = {
    "tshirts": 18, "shirts": 35, "tops": 22, "sweaters": 45, "jackets": 85, "hoodies": 40,
    "jeans": 55, "trousers": 45, "shorts": 25, "skirts": 35, "leggings": 22,
    "sneakers": 70, "sandals": 35, "boots": 95, "heels": 65,
    "dresses": 50, "jumpsuits": 55,
    "bags": 60, "watches": 110, "caps": 18, "belts": 25, "scarves": 22, "sunglasses": 45, "wallets": 30,
}

# What shoppers call things. Titles pick one synonym at random, so a text
# model has to learn that "tee" and "t-shirt" are the same thing.
NOUNS = {
    "tshirts": ("t-shirt", "tee", "tshirt", "t shirt", "tee shirt"),
    "shirts": ("shirt", "button-down shirt", "oxford shirt", "button up"),
    "tops": ("top", "blouse", "tank top", "cami top"),
    "sweaters": ("sweater", "jumper", "pullover", "knit sweater"),
    "jackets": ("jacket", "coat", "bomber jacket", "jkt"),
    "hoodies": ("hoodie", "hooded sweatshirt", "hoody", "zip hoodie"),
    "jeans": ("jeans", "denim jeans", "denims", "5-pocket jeans"),
    "trousers": ("trousers", "pants", "chinos", "slacks"),
    "shorts": ("shorts", "bermuda shorts", "short pants"),
    "skirts": ("skirt", "midi skirt", "mini skirt", "a-line skirt"),
    "leggings": ("leggings", "tights", "yoga pants"),
    "sneakers": ("sneakers", "trainers", "running shoes", "kicks"),
    "sandals": ("sandals", "sliders", "flip flops", "strappy sandals"),
    "boots": ("boots", "ankle boots", "chelsea boots", "combat boots"),
    "heels": ("heels", "pumps", "stilettos", "high heels"),
    "dresses": ("dress", "maxi dress", "midi dress", "sundress", "wrap dress"),
    "jumpsuits": ("jumpsuit", "playsuit", "overall", "romper"),
    "bags": ("bag", "tote bag", "shoulder bag", "handbag", "backpack"),
    "watches": ("watch", "wristwatch", "analog watch", "chronograph"),
    "caps": ("cap", "baseball cap", "snapback", "hat"),
    "belts": ("belt", "leather belt", "waist belt"),
    "scarves": ("scarf", "shawl", "wrap scarf", "muffler"),
    "sunglasses": ("sunglasses", "shades", "sunnies", "aviators"),
    "wallets": ("wallet", "purse", "card holder", "billfold"),
}

# -- side information ---------------------------------------------------------
# name -> RGB used to paint the image, and the abbreviations sellers type.
COLORS = {
    "black": ((30, 30, 34), ("blk",)),
    "white": ((236, 236, 232), ("wht",)),
    "grey": ((128, 128, 132), ("gray", "gry")),
    "navy": ((28, 40, 92), ("nvy", "navy blue")),
    "blue": ((50, 100, 200), ("blu",)),
    "red": ((196, 36, 40), ("rd",)),
    "pink": ((232, 130, 170), ("rose",)),
    "green": ((44, 140, 70), ("grn",)),
    "olive": ((110, 112, 50), ("khaki green",)),
    "beige": ((214, 196, 160), ("sand", "nude")),
    "brown": ((120, 76, 42), ("brwn", "tan")),
    "yellow": ((236, 200, 40), ("ylw", "mustard")),
    "orange": ((236, 120, 30), ("orng",)),
    "purple": ((120, 60, 150), ("violet", "lilac")),
}
COLOR_NAMES = tuple(COLORS)

FABRICS = ("cotton", "linen", "wool", "polyester", "silk", "denim", "leather", "suede", "canvas", "knit", "metal", "mesh")
# Which fabrics make sense for which group; the others are masked out.
FABRICS_BY_GROUP = {
    "topwear": ("cotton", "linen", "wool", "polyester", "silk", "knit", "denim", "leather"),
    "bottomwear": ("cotton", "linen", "wool", "polyester", "denim", "leather", "knit"),
    "footwear": ("leather", "suede", "canvas", "mesh"),
    "dresses": ("cotton", "linen", "polyester", "silk", "knit"),
    "accessories": ("leather", "canvas", "metal", "wool", "polyester", "silk"),
}

PATTERNS = ("solid", "striped", "checked", "dotted", "printed")
# How a pattern shows up in a title; solid is usually left unsaid.
PATTERN_WORDS = {
    "solid": ("", "plain", "solid"),
    "striped": ("striped", "stripe", "breton"),
    "checked": ("checked", "plaid", "check", "gingham"),
    "dotted": ("polka dot", "dotted", "spotted"),
    "printed": ("printed", "graphic", "floral print", "print"),
}

NECKS = ("crew", "v-neck", "collar", "hooded", "turtleneck", "scoop")
NECK_WORDS = {
    "crew": ("crew neck", "crewneck", "round neck"),
    "v-neck": ("v-neck", "v neck", "vneck"),
    "collar": ("collared", "with collar", "spread collar"),
    "hooded": ("hooded", "with hood"),
    "turtleneck": ("turtleneck", "roll neck", "high neck"),
    "scoop": ("scoop neck", "scoop-neck"),
}

NECK_SENTENCES = {
    "crew": "Features a crew neckline.",
    "v-neck": "Features a V-neckline.",
    "collar": "Finished with a classic collar.",
    "hooded": "Comes with a drawstring hood.",
    "turtleneck": "Features a high roll neck.",
    "scoop": "Features a scoop neckline.",
}

GENDERS = ("women", "men", "unisex")
GENDER_WORDS = {"women": ("women's", "womens", "ladies"), "men": ("men's", "mens"), "unisex": ("unisex", "")}

PRICE_BANDS = ("budget", "mid", "premium")

# Letter sizes for clothes; footwear uses EU numbers at the same index.
SIZES = ("XS", "S", "M", "L", "XL", "XXL")
SHOE_SIZES = ("36", "38", "40", "42", "44", "46")
SIZE_SHARES = (0.08, 0.20, 0.30, 0.24, 0.12, 0.06)

# -- brands -------------------------------------------------------------------
# 60 made-up names from fixed syllables; the seed decides their style, price
# level, popularity and fit, never their spelling.
_BRAND_HEADS = ("Nor", "Vel", "Ark", "Lum", "Sol", "Bra", "Kin", "Ost", "Mar", "Tel", "Fen", "Quo")
_BRAND_TAILS = ("ova", "ique", "den", "ora", "ex")
BRANDS = tuple(h + t for h in _BRAND_HEADS for t in _BRAND_TAILS)

# -- description sentences ----------------------------------------------------
# Marketing filler: deliberately says nothing true about quality, fit or look.
OCCASIONS = ("everyday wear", "the office", "weekends", "summer days", "city life", "travel", "evenings out")
BLURBS = (
    "{brand} designs {occasion} pieces with a modern twist.",
    "From the {brand} collection for {occasion}.",
    "{brand} is known for pieces made for {occasion}.",
    "A {brand} staple, made for {occasion}.",
)
FIT_FILLER = ("Regular fit.", "Model wears size M.", "Fits true to size.", "Relaxed fit.", "")
CARE = {
    "cotton": "Machine wash at 30 degrees.",
    "linen": "Wash gently, iron while damp.",
    "wool": "Hand wash cold, dry flat.",
    "polyester": "Machine wash cold.",
    "silk": "Dry clean only.",
    "denim": "Wash inside out.",
    "leather": "Wipe clean with a damp cloth.",
    "suede": "Brush to clean, keep dry.",
    "canvas": "Spot clean.",
    "knit": "Hand wash, do not tumble dry.",
    "metal": "Keep away from water.",
    "mesh": "Spot clean with mild soap.",
}
HYPE = ("A must-have this season.", "Customers love it.", "New arrival.", "Limited stock.", "Great value.", "")
