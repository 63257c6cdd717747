"""Where a generated shop's ground truth lies: beside the shop, never inside it.

The generator writes it; evaluations read it where it exists (a real shop has
none). Both sides use these names, so neither has to import the other.
"""

from __future__ import annotations

from pathlib import Path

TRUTH_SUFFIX = "_truth"
PRODUCTS_TRUTH_FILE = "products_truth.parquet"
ORDERS_TRUTH_FILE = "orders_truth.parquet"
USERS_TRUTH_FILE = "users_truth.parquet"
META_FILE = "meta.json"


def truth_dir(shop_root: str | Path) -> Path:
    """`<shop>_truth/` beside the shop directory."""
    root = Path(shop_root)
    return root.with_name(root.name + TRUTH_SUFFIX)
