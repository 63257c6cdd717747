"""The default shop: a seeded, deterministic synthetic e-commerce site with known answers.

    from prodvec.generator import generate_shop, GeneratorConfig
    summary = generate_shop(Path("shop"), Path("truth"), GeneratorConfig(n_products=4000, seed=0))

writes a shop directory that satisfies the input contract (products, events,
orders, images) and, in a separate truth directory, what the generator knows
and the shop does not say: style vectors, quality, the visual trait, brand
fit, user tastes and each order line's true return probability.

The three sources carry different return causes on purpose (brand fit in
text, quality in behaviour, the visual trait in images, style mismatch in
user history), so a fused embedding can beat every single-source one.
Everything scales linearly with `n_products`; the same config and seed give
byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodvec.core import columns as C
from prodvec.generator import behaviour, catalog, images
from prodvec.core.shop.model import to_utc
from prodvec.core.shop.truth import META_FILE, ORDERS_TRUTH_FILE, PRODUCTS_TRUTH_FILE, USERS_TRUTH_FILE

__all__ = ["GeneratorConfig", "generate_shop"]

_SHOP_OUTPUTS = (C.PRODUCTS_FILE, C.EVENTS_FILE, C.ORDERS_FILE, C.IMAGES_DIR)
_TRUTH_OUTPUTS = (PRODUCTS_TRUTH_FILE, ORDERS_TRUTH_FILE, USERS_TRUTH_FILE, META_FILE)


@dataclass(frozen=True)
class GeneratorConfig:
    """`n_products` is the one size knob: users, sessions, events and orders scale with it."""

    n_products: int = 4000
    seed: int = 0
    start: str = "2025-01-01T00:00:00Z"
    days: int = 182
    image_size: int = 64
    image_share: float = 0.95  # share of products that get an image

    def __post_init__(self):
        if self.n_products < 100:
            raise ValueError(f"n_products must be at least 100 (one per category and then some), got {self.n_products}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {self.image_size}")
        if not 0.0 <= self.image_share <= 1.0:
            raise ValueError(f"image_share must lie in [0, 1], got {self.image_share}")
        to_utc(self.start)  # rejects a start without a time zone


def generate_shop(
    shop_dir: Path,
    truth_dir: Path,
    config: GeneratorConfig = GeneratorConfig(),
    progress: bool = True,
    *,
    overwrite: bool = False,
) -> dict:
    """Generate a shop into `shop_dir` and its ground truth into `truth_dir`; return counts."""
    shop_dir, truth_dir = Path(shop_dir), Path(truth_dir)
    _check_dirs(shop_dir, truth_dir, overwrite)
    start = to_utc(config.start)
    start_ns, seconds = start.value, config.days * 86400

    # One independent random stream per stage, so a change in one stage (or
    # in the image size) does not reshuffle the others.
    cat = catalog.make_catalog(config.n_products, seconds, np.random.default_rng([config.seed, 1]), config.image_share)
    users = behaviour.make_users(
        max(1, round(behaviour.USERS_PER_PRODUCT * config.n_products)), cat, np.random.default_rng([config.seed, 2])
    )
    n_sessions = round(behaviour.SESSIONS_PER_PRODUCT * config.n_products)
    sim = behaviour.Behaviour(cat, users, n_sessions, seconds, start_ns, config.seed)

    _write(catalog.products_table(cat, start_ns), shop_dir / C.PRODUCTS_FILE)
    _write(catalog.truth_table(cat), truth_dir / PRODUCTS_TRUTH_FILE)
    _write(behaviour.users_truth_table(users), truth_dir / USERS_TRUTH_FILE)

    counts = _simulate(sim, shop_dir, truth_dir, progress)
    n_images = images.draw_images(
        cat, shop_dir / C.IMAGES_DIR, config.image_size, np.random.default_rng([config.seed, 5]), progress
    )

    end = start + pd.Timedelta(seconds=seconds)
    summary = {
        "products": len(cat),
        "users": len(users),
        "sessions": n_sessions,
        **counts,
        "images": n_images,
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    meta = {
        "generator": __name__,
        "config": asdict(config),
        "seed": config.seed,
        "counts": summary,
        "style_dim": catalog.STYLE_DIM,
        "min_return_days": behaviour.MIN_RETURN_DAYS,
        "max_return_days": behaviour.MAX_RETURN_DAYS,
        "return_model": {
            "base": behaviour.RETURN_BASE, "fit": behaviour.W_FIT, "quality": behaviour.W_QUALITY,
            "style": behaviour.W_STYLE, "visual": behaviour.W_VISUAL, "noise_sd": behaviour.NOISE_SD,
        },
        "brands_running_small": sorted(
            str(b) for b, off in zip(catalog.V.BRANDS, cat.brand_fit_offset) if off > 0.5
        ),
    }
    tmp = truth_dir / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, truth_dir / META_FILE)
    return summary


def _simulate(sim: behaviour.Behaviour, shop_dir: Path, truth_dir: Path, progress: bool) -> dict:
    """Stream the session chunks into events, orders and order truth, one row group per chunk."""
    from tqdm import tqdm

    targets = {
        "events": shop_dir / C.EVENTS_FILE,
        "orders": shop_dir / C.ORDERS_FILE,
        "truth": truth_dir / ORDERS_TRUTH_FILE,
    }
    writers: dict[str, pq.ParquetWriter] = {}
    n_events = n_lines = n_returns = 0
    n_chunks = -(-len(sim.session_user) // behaviour.CHUNK_SESSIONS)
    try:
        for tables in tqdm(sim.chunks(), total=n_chunks, desc="sessions", unit="chunk", disable=not progress):
            for name, table in zip(targets, tables):
                if name not in writers:
                    writers[name] = pq.ParquetWriter(_tmp(targets[name]), table.schema)
                writers[name].write_table(table)
            events, orders, _ = tables
            n_events += len(events)
            n_lines += len(orders)
            n_returns += int(orders[C.RETURNED].to_numpy().sum())
    finally:
        for writer in writers.values():
            writer.close()
    for path in targets.values():
        os.replace(_tmp(path), path)
    return {
        "events": n_events,
        "orders": n_lines,
        "order_ids": sim.n_orders,
        "returns": n_returns,
        "return_rate": round(n_returns / max(1, n_lines), 4),
    }


def _check_dirs(shop_dir: Path, truth_dir: Path, overwrite: bool) -> None:
    shop, truth = shop_dir.resolve(), truth_dir.resolve()
    if truth == shop or shop in truth.parents:
        raise ValueError(f"truth_dir {truth_dir} must lie outside shop_dir {shop_dir}: the truth would leak into the shop")
    folders = ((shop_dir, _SHOP_OUTPUTS), (truth_dir, _TRUTH_OUTPUTS))
    for folder, _ in folders:
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise FileExistsError(f"{folder} exists and is not empty; pass overwrite=True to replace it")
    for folder, outputs in folders:
        if folder.exists():
            # Only what we write is removed, never a user's other files.
            for name in outputs:
                path = folder / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        folder.mkdir(parents=True, exist_ok=True)


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _write(table: pa.Table, path: Path) -> None:
    """Write to a temporary name first, so a crash never leaves a half file under the real name."""
    pq.write_table(table, _tmp(path))
    os.replace(_tmp(path), path)
