"""Importers: public e-commerce data sets (and your own exports) turned into a shop directory.

Each format is one module exposing

    def import_shop(source: Path, shop_dir: Path, *, overwrite: bool = False, **options) -> Path

which writes a shop that passes the contract loader (`prodvec.core.shop.load_shop`)
and returns `shop_dir`. The shared reading, error and writing helpers are in
`prodvec.importers.io`. Modules are imported only when their format is used,
so listing the formats stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# format name (as typed in `prodvec import FORMAT ...`) -> module
IMPORTERS: dict[str, str] = {
    "myntra": "prodvec.importers.myntra",
    "online-retail": "prodvec.importers.online_retail",
    "session-clicks": "prodvec.importers.session_clicks",
}


def importer(name: str) -> ModuleType:
    """The module of format `name`; ValueError listing the formats for an unknown one."""
    if name not in IMPORTERS:
        raise ValueError(f"unknown import format {name!r}; expected one of {', '.join(IMPORTERS)}")
    return importlib.import_module(IMPORTERS[name])


def describe(name: str) -> str:
    """The first line of the format's module docstring (what the source looks like)."""
    doc = importer(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
