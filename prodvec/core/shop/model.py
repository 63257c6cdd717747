"""The in-memory shop: validated tables plus the point-in-time view producers train on."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from prodvec.core import columns as C

# Names a producer or consumer can list in `requires`.
TEXT, EVENTS, ORDERS, IMAGES = "text", "events", "orders", "images"
INPUTS = (TEXT, EVENTS, ORDERS, IMAGES)


@dataclass(frozen=True)
class Shop:
    """A shop directory after the contract loader accepted it.

    Timestamps are tz-aware UTC; ids are strings. `events` and `orders` are
    None when the shop has no such file.
    """

    root: Path
    products: pd.DataFrame
    events: pd.DataFrame | None = None
    orders: pd.DataFrame | None = None

    @property
    def side_info_columns(self) -> list[str]:
        """Every string column of products that is not part of the fixed schema.

        Picked up automatically so that a shop with `material` or `season`
        gets them used without code changes.
        """
        cols = []
        for name in self.products.columns:
            if name in C.PRODUCT_CORE_COLUMNS:
                continue
            # infer_dtype, not the dtype: an object column may hold lists (tags), which are not side info.
            if pd.api.types.infer_dtype(self.products[name], skipna=True) in ("string", "empty"):
                cols.append(name)
        return cols

    @property
    def label_columns(self) -> list[str]:
        """The category (where present) and every side-information column: what a product is labelled with."""
        return ([C.CATEGORY] if C.CATEGORY in self.products.columns else []) + self.side_info_columns

    def has(self, what: str) -> bool:
        """Whether the shop carries an input a producer can require."""
        if what == TEXT:
            return C.TITLE in self.products.columns
        if what == EVENTS:
            return self.events is not None and len(self.events) > 0
        if what == ORDERS:
            return self.orders is not None and len(self.orders) > 0
        if what == IMAGES:
            return C.IMAGE_PATH in self.products.columns and self.products[C.IMAGE_PATH].notna().any()
        raise ValueError(f"unknown input {what!r}; expected one of {INPUTS}")

    def missing(self, requires: tuple[str, ...] | frozenset[str]) -> list[str]:
        return [r for r in sorted(requires) if not self.has(r)]

    def image_file(self, relative: str) -> Path:
        return self.root / relative

    def until(self, cutoff: pd.Timestamp) -> Shop:
        """What was known at `cutoff`: products listed, events seen, orders placed.

        A return is only known once it happened, so orders returned after the
        cutoff read as not (yet) returned.
        """
        cutoff = to_utc(cutoff)
        products = self.products[self.products[C.CREATED_AT] <= cutoff]
        events = None
        if self.events is not None:
            events = self.events[self.events[C.TS] <= cutoff]
        orders = None
        if self.orders is not None:
            orders = self.orders[self.orders[C.ORDERED_AT] <= cutoff].copy()
            later = orders[C.RETURNED] & (orders[C.RETURNED_AT] > cutoff)
            orders.loc[later, C.RETURNED] = False
            orders.loc[later, C.RETURNED_AT] = pd.NaT
        return replace(self, products=products, events=events, orders=orders)

    @property
    def end(self) -> pd.Timestamp:
        """The latest timestamp anywhere in the shop (the default cutoff)."""
        stamps = [self.products[C.CREATED_AT].max()]
        if self.events is not None and len(self.events):
            stamps.append(self.events[C.TS].max())
        if self.orders is not None and len(self.orders):
            stamps.append(self.orders[C.ORDERED_AT].max())
        return max(stamps)


def to_utc(ts) -> pd.Timestamp:
    """Parse a cutoff given by a user; naive times are rejected like in the contract."""
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp {ts!r} has no time zone; write it as e.g. 2025-03-01T00:00:00Z")
    return stamp.tz_convert("UTC")
