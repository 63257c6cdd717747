"""What the data sets of the real-data report share: its settings, a data set's outcome, importing a sample,
a fresh pipeline home, best marks, reading served embeddings through Feast."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from prodvec.report.render import Section, best_flags

# The folder beside the repository: shared/data (this file is prodvec/report/real/common.py).
DEFAULT_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
MYNTRA, YOOCHOOSE, RETAIL = "myntra", "yoochoose", "online_retail"


@dataclass(frozen=True)
class RealConfig:
    """Sizes and settings of one real-data run; the defaults are the full report (well under 15 min, 2 cores)."""

    seed: int = 0
    # Myntra: the products with a photo (None: all 3,000 of the sample) and a sample of those without one,
    # which the text families and the classifiers learn from too; cost grows linearly with both.
    myntra_photos: int | None = None
    myntra_without_photo: int = 2000
    test_share: float = 0.2
    myntra_overrides: dict = field(default_factory=dict)  # family -> settings; {}: each producer's defaults
    rf_trees: int = 50
    small_train: int = 200
    neighbour_queries: int = 4
    neighbours: int = 8
    # YooChoose: sessions kept on each side of the split (None: all), settings laid over SESSION_OVERRIDES.
    train_sessions: int | None = None
    test_sessions: int | None = None
    session_overrides: dict = field(default_factory=dict)
    # Online Retail: retrain every 16 weeks from two weeks in; the return model splits at day 112.
    retail_first_days: int = 14
    retail_every_days: int = 112
    retail_eval_days: int = 112
    retail_overrides: dict = field(default_factory=lambda: {"text_dae": {"epochs": 20}})


@dataclass
class DatasetOutcome:
    """One data set's part of the report: sections, claim sentences, numbers for results.json."""

    name: str
    sections: list[Section] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str | None = None


def import_sample(fmt: str, source: Path, shop_dir: Path, log):
    """The sample imported by `prodvec import` format `fmt` into `shop_dir`, loaded as a shop."""
    from prodvec.core.shop import load_shop
    from prodvec.importers import importer
    from prodvec.importers.io import summarize

    importer(fmt).import_shop(source, shop_dir, overwrite=True, log=log)
    n = summarize(shop_dir)
    log(f"import {fmt}: {n['products']} products, {n['events']} events, {n['orders']} order lines "
        f"({n['returned']} returned), {n['images']} images -> {shop_dir}")
    return load_shop(shop_dir, log=log)


def fresh_home(home: Path) -> Path:
    """An empty pipeline home (a rerun of the report starts from nothing, not from the last run's snapshots)."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return home


def flags(table: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Best marks on the score columns only (not on sizes or dimensions)."""
    scored = [c for c in table.columns if c in metrics]
    return best_flags(table[scored]).reindex(columns=table.columns, fill_value=False)


def served_context(shop, home: Path, eval_cutoff: pd.Timestamp, seed: int):
    """An evaluation context over what `home` serves, read through its Feast store."""
    from prodvec.consumers.evaluation import EvalContext
    from prodvec.core import feast_ops
    from prodvec.core.snapshots import SnapshotStore, latest_views
    from prodvec.report.build import served_cutoffs

    store = SnapshotStore(home)
    return EvalContext(shop, feast_ops.open_store(home), latest_views(store), eval_cutoff, seed=seed,
                       snapshot_times=served_cutoffs(store))


def pipeline_lines(result) -> list[str]:
    """One line per trained snapshot (rows, seconds, gate summary) and the pipeline's total time."""
    lines = [f"{run.ref.id}: {run.ref.card()['rows']:,} rows in {run.seconds:.0f}s; "
             f"{run.validation['summary'] if run.validation else 'not validated'}" for run in result.runs if run.ref]
    return lines + [f"Pipeline (train, validate, promote, Feast apply + materialize): {result.seconds:.0f}s."]
