"""Fixtures shared across test modules (imports stay inside them: collecting the fast tests loads no Feast)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# What `prodvec` (the CLI) sets at start-up, set for the test process too: torch's
# OpenMP threads must not spin on the shared cores, and no model hub is asked.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

if TYPE_CHECKING:
    from prodvec.pipeline import Schedule
    from prodvec.core.shop.model import Shop


@dataclass(frozen=True)
class ServedHome:
    """A generated shop (truth beside it, as the CLI writes it) whose backbone families are trained and served."""

    shop: Shop
    shop_dir: Path
    home: Path
    schedule: Schedule


@pytest.fixture(scope="session")
def served_home(tmp_path_factory) -> ServedHome:
    """`run_pipeline` once per test session on a 300-product generated shop (about 20 s).

    Session-scoped so that every module reading a real Feast store with
    trained families shares one; tests must not write into it. Three
    retrains (days 56, 112, 168 of the 182-day shop) instead of the default
    six: each snapshot costs a validation, and two still serve after the
    evaluation cutoff (day 112).
    """
    from prodvec.pipeline import Schedule, run_pipeline
    from prodvec.core.shop import load_shop
    from prodvec.generator import GeneratorConfig, generate_shop

    root = tmp_path_factory.mktemp("served")
    shop_dir, home = root / "shop", root / "home"
    generate_shop(shop_dir, root / "shop_truth", GeneratorConfig(n_products=300, seed=3), progress=False)
    shop = load_shop(shop_dir)
    schedule = Schedule(first_days=56, every_days=56)
    run_pipeline(shop, home, schedule=schedule, overrides={"text_dae": {"epochs": 10}}, progress=False,
                 log=lambda *_: None)
    return ServedHome(shop=shop, shop_dir=shop_dir, home=home, schedule=schedule)
