"""`prodvec real-report`: the whole pipeline on the public samples in ../shared/data (issue 6).

    prodvec real-report --data ../shared/data --out reports/real      # or: make real-report

One function per data set. Each imports its sample into a shop under
`work/` (the `prodvec import` importers), runs the real pipeline or the
consumer the data supports, and returns report sections; a data set whose
folder is absent is skipped with one line. The report is rendered by the
evaluation report's renderer (`prodvec.report.render`), so it reads like
`prodvec report`.

- **Myntra** (catalogue with photos, no events): a sample of the catalogue
  (every product with a photo plus some without) goes through
  `run_pipeline` with the content families and `unified` over them; every
  embedding is read back through Feast. Attribute prediction (articleType,
  baseColour, gender, season, usage) against TF-IDF of titles under
  logistic regression and random forest, relative to TF-IDF-LR
  (`mrnet_comparison.compare_on_tasks`, the MRNet paper's protocol).
  The products are all listed in a few yearly batches, so the split is a
  seeded random 80/20 split, not a time split; the held-out products'
  attribute columns are hidden from the producers (they see the title and
  the photo only), otherwise `text_dae` (which reads the attributes as
  input), `mrnet` and `image_siamese` (which learn from them) would be
  scored on labels they were given.
- **YooChoose**: `next_click.evaluate_next_click` on the split the
  benchmark publishes (Recall@20, MRR@20).
- **Online Retail**: `run_pipeline` with the backbone families and the
  cancellation (return) model through Feast, its data size stated beside
  the number, or why there is none.

Sizes are capped by `RealConfig` (the tests run the same code on a few
hundred products).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.neighbours import top_k_cosine
from prodvec.report.render import Section, best_flags, to_html, to_markdown

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MYNTRA, YOOCHOOSE, RETAIL = "myntra", "yoochoose", "online_retail"
RETAIL_FILE = "online_retail.csv"

# Myntra's own column names -> the shop column that holds them (articleType is the shop's category).
MYNTRA_ATTRIBUTES = {"articleType": C.CATEGORY, "baseColour": "baseColour", "gender": "gender",
                     "season": "season", "usage": "usage"}
CONTENT_FAMILIES = ("text_dae", "mrnet", "text_minilm", "image_siamese")
IMAGE_FAMILY, FUSION = "image_siamese", "unified"
NEXT_CLICK_FAMILIES = ("prod2vec", "clicks_bpr", "sasrec")
RETAIL_FAMILIES = ("text_dae", "clicks_bpr", "unified")
# The claims of issue 6.
WITHIN, DIM_SHARE = 0.05, 0.03  # MRNet: within 5% of TF-IDF-LR macro-F1 at under 3% of its dimension
CLEARLY = 2.0  # "clearly above chance": at least twice the macro-F1 of random vectors on the same products
# Published size of the YooChoose (RecSys Challenge 2015) split of GRU4Rec (Hidasi et al. 2016).
PUBLISHED_RSC15 = "7,966,257 training sessions (31.6M clicks) on 37,483 items, 15,324 test sessions"


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


@dataclass
class RealReport:
    markdown: Path
    html: Path
    outcomes: dict[str, DatasetOutcome]
    seconds: float

    @property
    def claims(self) -> list[str]:
        return [claim for outcome in self.outcomes.values() for claim in outcome.claims]


# -- pure helpers ---------------------------------------------------------------------------------


def catalogue_sample(products: pd.DataFrame, with_photo: int | None, without_photo: int, seed: int) -> pd.DataFrame:
    """Products with a photo (all, or `with_photo` of them) plus `without_photo` without, in catalogue order."""
    photo = products[C.IMAGE_PATH].notna() if C.IMAGE_PATH in products else pd.Series(False, index=products.index)
    pictured, plain = products[photo], products[~photo]
    if with_photo is not None and len(pictured) > with_photo:
        pictured = pictured.sample(with_photo, random_state=seed)
    plain = plain.sample(min(without_photo, len(plain)), random_state=seed)
    return pd.concat([pictured, plain]).sort_index().reset_index(drop=True)


def held_out(n: int, share: float, seed: int) -> np.ndarray:
    """A seeded random mask of round(share * n) of n rows."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng([seed, 13]).choice(n, size=round(share * n), replace=False)] = True
    return mask


def hide_labels(products: pd.DataFrame, rows: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """A copy of `products` with `columns` unknown (null) on `rows`: what producers may see of held-out products."""
    out = products.copy()
    for column in columns:
        out[column] = out[column].astype(object)
        out.loc[rows, column] = None
    return out


def nearest(vectors: np.ndarray, queries: np.ndarray, k: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """Rows of the `k` most cosine-similar rows to each query row, most similar first, the query itself excluded.

    `candidates` (a boolean mask over rows) limits where neighbours may come from.
    """
    pool = np.flatnonzero(np.ones(len(vectors), bool) if candidates is None else np.asarray(candidates, bool))
    # The same neighbour search `prodvec similar` serves, over the candidate rows only.
    exclude = pd.Series(np.arange(len(pool)), index=pool).reindex(queries).fillna(-1).to_numpy(np.int64)
    top = top_k_cosine(vectors[queries], vectors[pool], min(k, vectors.shape[0] - 1), exclude=exclude)
    return np.where(top >= 0, pool[np.maximum(top, 0)], -1)


def neighbour_agreement(neighbours: np.ndarray, queries: np.ndarray, labels: pd.DataFrame) -> pd.Series:
    """Per label column: share of neighbours that share the query's (known) label."""
    out = {}
    for column in labels.columns:
        values = labels[column].to_numpy(dtype=object)
        known = pd.notna(values[queries])
        same = values[neighbours[known]] == values[queries[known]][:, None]
        out[column] = float(same.mean()) if same.size else np.nan
    return pd.Series(out)


def mrnet_claim(scores: pd.DataFrame, task: str, dims: dict[str, int], vocabulary: int) -> tuple[bool, str]:
    """Is some dense family within WITHIN of TF-IDF-LR macro-F1 on `task` at under DIM_SHARE of its dimension?

    `scores` is `compare_on_tasks` output; each family counts with its better classifier (LR or RF).
    """
    from prodvec.consumers.mrnet_comparison import FULL, TFIDF

    rows = scores[(scores["task"] == task) & (scores["setting"] == FULL) & scores["features"].isin(list(dims))]
    reference = scores[(scores["task"] == task) & (scores["setting"] == FULL) & (scores["features"] == TFIDF)
                       & (scores["model"] == "lr")]
    if rows.empty or reference.empty:
        return False, f"Claim (MRNet) not checked: no {task} scores."
    ref = float(reference["macro_f1"].iloc[0])
    best = rows.loc[rows.groupby("features")["macro_f1"].idxmax()].sort_values("macro_f1", ascending=False)
    limit = DIM_SHARE * vocabulary
    parts, met = [], []
    for _, row in best.iterrows():
        family, dim = row["features"], dims[row["features"]]
        if row["macro_f1"] >= (1 - WITHIN) * ref and dim < limit:
            met.append(family)
        parts.append(f"{family} ({dim} dims, {dim / vocabulary:.1%} of it; {row['model'].upper()}) "
                     f"{row['macro_f1']:.3f} ({row['macro_f1'] / ref - 1:+.1%})")
    verdict = f"HOLDS (met by {', '.join(met)})" if met else "DOES NOT HOLD"
    if met and "mrnet" in dims and "mrnet" not in met:
        verdict += ", though not by the mrnet family itself"
    return bool(met), (f"Claim (MRNet): at least one dense family within {WITHIN:.0%} of TF-IDF-LR macro-F1 on "
                       f"{task} at under {DIM_SHARE:.0%} of its dimension — {verdict}. TF-IDF-LR macro-F1 {ref:.3f} on "
                       f"a vocabulary of {vocabulary:,} title words ({DIM_SHARE:.0%} = {limit:.0f} dims); each "
                       "family with its better classifier: " + "; ".join(parts) + ".")


def chance_claim(family_f1: float, random_f1: float, accuracy: float, majority: float, attribute: str,
                 family: str) -> tuple[bool, str]:
    """Is `family` clearly above chance: CLEARLY x random's macro-F1 and above the majority-class accuracy?"""
    holds = bool(family_f1 >= CLEARLY * random_f1 and accuracy > majority)
    verdict = "HOLDS" if holds else "DOES NOT HOLD"
    return holds, (f"Claim: the image family clearly above chance on {attribute} (macro-F1 at least {CLEARLY:g}x "
                   f"that of random vectors, accuracy above the majority class) — {verdict}: {family} macro-F1 "
                   f"{family_f1:.3f} vs random {random_f1:.3f} ({family_f1 / max(random_f1, 1e-12):.1f}x), "
                   f"accuracy {accuracy:.3f} vs majority-class share {majority:.3f}.")


def sample_sessions(shop, split: pd.Timestamp, train: int | None, test: int | None, seed: int):
    """The shop with `train` random sessions wholly before `split` and `test` starting at or after it (None: all)."""
    events = shop.events
    first = events.groupby(C.SESSION_ID, observed=True)[C.TS].agg(["min", "max"])
    rng = np.random.default_rng([seed, 17])

    def pick(ids: pd.Index, n: int | None) -> pd.Index:
        return ids if n is None or n >= len(ids) else pd.Index(rng.choice(ids.to_numpy(), size=n, replace=False))

    keep = pick(first.index[first["max"] < split], train).append(pick(first.index[first["min"] >= split], test))
    return replace(shop, events=events[events[C.SESSION_ID].isin(keep)].reset_index(drop=True))


# -- pictures ------------------------------------------------------------------------------------


def neighbour_grid(shop_root: Path, rows: list[list[str]], captions: list[list[str]], title: str, path: Path) -> Path:
    """A PNG grid: each row a query photo (framed) and its neighbours' photos, a caption under each."""
    from PIL import Image

    from prodvec.report.plots import _pyplot

    plt = _pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.15 * n_cols, 1.75 * n_rows), dpi=110, squeeze=False)
    for i, (paths, texts) in enumerate(zip(rows, captions)):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(paths):
                ax.axis("off")
                continue
            with Image.open(shop_root / paths[j]) as image:
                ax.imshow(np.asarray(image.convert("RGB")))
            ax.set_xlabel(texts[j], fontsize=5.5)
            colour, width = ("#c0392b", 2.5) if j == 0 else ("#bbbbbb", 0.5)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(width)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# -- the data sets ---------------------------------------------------------------------------------


def _import(fmt: str, source: Path, shop_dir: Path, log):
    from prodvec.importers import importer
    from prodvec.importers.io import summarize
    from prodvec.core.shop import load_shop

    importer(fmt).import_shop(source, shop_dir, overwrite=True, log=log)
    n = summarize(shop_dir)
    log(f"import {fmt}: {n['products']} products, {n['events']} events, {n['orders']} order lines "
        f"({n['returned']} returned), {n['images']} images -> {shop_dir}")
    return load_shop(shop_dir, log=log)


def _fresh(home: Path) -> Path:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return home


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """No best marks (a table of sizes, not of competing scores)."""
    return pd.DataFrame(False, index=table.index, columns=table.columns)


def _flags(table: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Best marks on the score columns only (not on sizes or dimensions)."""
    scored = [c for c in table.columns if c in metrics]
    return best_flags(table[scored]).reindex(columns=table.columns, fill_value=False)


def _context(shop, home: Path, eval_cutoff: pd.Timestamp, seed: int):
    from prodvec.core import feast_ops
    from prodvec.consumers.evaluation import EvalContext
    from prodvec.core.snapshots import latest_views
    from prodvec.report.build import served_cutoffs
    from prodvec.core.snapshots import SnapshotStore

    store = SnapshotStore(home)
    return EvalContext(shop, feast_ops.open_store(home), latest_views(store), eval_cutoff, seed=seed,
                       snapshot_times=served_cutoffs(store))


def myntra(source: Path, work: Path, plots: Path, config: RealConfig, log=print) -> DatasetOutcome:
    """Catalogue sample -> content families + unified -> Feast -> attributes vs TF-IDF, neighbour pictures."""
    from prodvec.consumers.evaluation import RANDOM
    from prodvec.consumers.mrnet_comparison import (FULL, TFIDF, MRNetComparisonConfig, compare_on_tasks,
                                                    per_task_tables, summarise, title_tfidf)
    from prodvec.pipeline import run_pipeline

    shop = _import("myntra", source, work / "myntra", log)
    products = catalogue_sample(shop.products, config.myntra_photos, config.myntra_without_photo, config.seed)
    test = held_out(len(products), config.test_share, config.seed)
    hidden = [C.CATEGORY, *shop.side_info_columns]
    seen = replace(shop, products=hide_labels(products, test, hidden))
    overrides = {**config.myntra_overrides, FUSION: {"modalities": ",".join(CONTENT_FAMILIES),
                                                     **config.myntra_overrides.get(FUSION, {})}}
    home = _fresh(work / "myntra_home")
    pipeline = run_pipeline(seen, home, families=(*CONTENT_FAMILIES, FUSION), overrides=overrides, progress=False,
                            log=log)
    ctx = _context(seen, home, seen.end, config.seed)
    served = [f for f in (*CONTENT_FAMILIES, FUSION) if f in ctx.views]
    entity = pd.DataFrame({C.PRODUCT_ID: products[C.PRODUCT_ID].to_numpy(), C.EVENT_TIMESTAMP: ctx.newest_snapshot})
    lookups = ctx.embeddings(entity)  # through Feast, plus the `random` chance rows
    families = [*served, RANDOM]
    labels = pd.DataFrame({name: products[column] for name, column in MYNTRA_ATTRIBUTES.items()})
    photo = products[C.IMAGE_PATH].notna().to_numpy()

    # Attribute prediction, relative to TF-IDF-LR (the MRNet paper's table).
    comparison = MRNetComparisonConfig(rf_trees=config.rf_trees, small_train=config.small_train, seed=config.seed)
    features = {f: (lookups[f].matrix[~test], lookups[f].matrix[test]) for f in families}
    covered = {f: lookups[f].found[test] for f in served}
    started = time.perf_counter()
    scores = compare_on_tasks(products.loc[~test, C.TITLE], products.loc[test, C.TITLE], labels[~test], labels[test],
                              features, comparison, covered)
    fit_seconds = time.perf_counter() - started
    order = [*families, "tfidf_lr", "tfidf_rf"]
    table = summarise(scores, order)
    vocabulary = title_tfidf(products.loc[~test, C.TITLE], products.loc[test, C.TITLE])[0].shape[1]
    dims = {f: lookups[f].matrix.shape[1] for f in families}
    table["dim"] = pd.Series({**dims, "tfidf_lr": vocabulary, "tfidf_rf": vocabulary}).reindex(table.index)
    table["test_coverage"] = pd.Series({f: float(lookups[f].found[test].mean()) for f in families})
    tables = per_task_tables(scores, order)
    holds_mrnet, mrnet_sentence = mrnet_claim(scores, "articleType", {f: dims[f] for f in served}, vocabulary)

    # The image claim on the products that have a photo (the others have no image vector at all).
    image = None
    if IMAGE_FAMILY in served:
        train_p, test_p = ~test & photo, test & photo
        colour = compare_on_tasks(products.loc[train_p, C.TITLE], products.loc[test_p, C.TITLE],
                                  labels.loc[train_p, ["baseColour"]], labels.loc[test_p, ["baseColour"]],
                                  {f: (lookups[f].matrix[train_p], lookups[f].matrix[test_p])
                                   for f in (IMAGE_FAMILY, RANDOM)}, comparison)
        image = colour[(colour["setting"] == FULL)].assign(
            row=lambda d: d["features"].where(d["features"] != TFIDF, "tfidf") + "_" + d["model"])
        image = image.set_index("row")[["macro_f1", "accuracy", "classes", "train", "test"]].astype(
            {"classes": "Int64", "train": "Int64", "test": "Int64"})
        counts = labels.loc[train_p, "baseColour"].value_counts()
        learnable = counts.index[counts >= comparison.min_class_train]
        truth = labels.loc[test_p, "baseColour"]
        majority = float(truth[truth.isin(learnable)].value_counts(normalize=True).max())
        holds_image, image_sentence = chance_claim(image.at[f"{IMAGE_FAMILY}_lr", "macro_f1"],
                                                   image.at[f"{RANDOM}_lr", "macro_f1"],
                                                   image.at[f"{IMAGE_FAMILY}_lr", "accuracy"], majority,
                                                   "baseColour", IMAGE_FAMILY)
        image.index.name = "features_model"
    else:
        holds_image, image_sentence = False, (f"Claim: the image family clearly above chance on baseColour — NOT "
                                              f"CHECKED: {IMAGE_FAMILY} is not served (see the pipeline lines).")

    # Nearest neighbours among the products with a photo, queries from the held-out ones.
    agreement, pictures = _neighbours(seen.root, products, labels, lookups, served, photo, test, plots, config)

    weights = _fusion_weights(home)
    n_test, n_train = int(test.sum()), int((~test).sum())
    notes = [
        f"Catalogue: {len(shop.products):,} products imported; sampled {len(products):,}: {int(photo.sum()):,} "
        f"with a photo and {int((~photo).sum()):,} without (seed {config.seed}). All are listed in yearly batches "
        f"({products[C.CREATED_AT].dt.year.min()}–{products[C.CREATED_AT].dt.year.max()}), so the split is not by "
        f"listing time: a seeded random {1 - config.test_share:.0%}/{config.test_share:.0%} split, {n_train:,} "
        f"training and {n_test:,} held-out products.",
        "The producers trained on the whole sample with the held-out products' category and side-information "
        f"columns ({', '.join(hidden)}) hidden: for those they saw the title and the photo only. The classifiers "
        "learn from the training products' labels; no number below uses a held-out label in training.",
        f"Families ({', '.join(served)}) trained once through `run_pipeline` (a catalogue without events is one "
        f"snapshot, at {ctx.newest_snapshot.date()}), passed the validation gate and were read back through Feast "
        f"({', '.join(ctx.views[f] for f in served)}); `random` is Gaussian vectors of {dims[RANDOM]} dims (chance).",
        f"unified: weights {weights}, chosen by its own validation search, which scores k-NN agreement of side "
        "information on the products whose labels the producers saw. text_dae reads those labels as input (and "
        "mrnet learns them as targets), so there their neighbours agree by construction and the search favours "
        "them; on held-out products they have the title alone, which is why text_dae, and a unified leaning on "
        "it, trail here.",
        "Headline rel_tfidf_lr: macro-F1 / macro-F1 of TF-IDF-LR on the same attribute and products - 1 "
        "(0 = as good), averaged over the five attributes; family rows are a logistic regression on the "
        "standardised vector, their random forest in macro_f1_rf / rel_tfidf_lr_rf; dim for TF-IDF is its "
        f"vocabulary (title words of the training products). Random forests: {config.rf_trees} trees; "
        f"small_train_rel: {config.small_train} training products; unseen_rel: the quarter of held-out products "
        f"whose title is least like any training title. {len(scores)} scores in {fit_seconds:.0f}s.",
        f"Producer settings: {config.myntra_overrides or 'each producer’s defaults'} (unified over "
        f"{', '.join(CONTENT_FAMILIES)}).",
        "mrnet and image_siamese learn from these attributes on the training products (mrnet: every column as a "
        "task; image_siamese: articleType and baseColour pick its positive pairs), unlike the MRNet paper's unseen "
        "tasks; text_dae reads them as input (and reconstructs them); text_minilm never sees a label.",
    ]
    section = Section("Myntra: attribute prediction vs TF-IDF of titles", notes=[mrnet_sentence, *notes])
    section.tables.append(("Mean over articleType, baseColour, gender, season, usage (relative to TF-IDF-LR)",
                           table, _flags(table, [c for c in table.columns if c not in ("dim", "test_coverage")])))
    for caption in ("macro-F1 per task (all test products)",
                    "relative change of macro-F1 vs TF-IDF-LR, per task (families: LR)",
                    "relative change vs TF-IDF-LR, per task, random forest on every feature"):
        per_task = tables[caption].T.rename_axis("family")  # a row per family: the best marks compare families
        section.tables.append((caption, per_task, best_flags(per_task)))
    colour = Section("Myntra: the image family on baseColour", notes=[image_sentence,
                     "Scored on the products with a photo only (training and held-out), the same classifiers; "
                     "image_siamese's mates share category and colour, so it learned colour from training labels."])
    if image is not None:
        colour.tables.append(("baseColour, held-out products with a photo", image,
                              _flags(image, ["macro_f1", "accuracy"])))
    pictures_section = Section("Myntra: nearest neighbours", notes=[
        f"Share of the {config.neighbours} nearest neighbours (cosine, among all {int(photo.sum()):,} sampled "
        f"products with a photo) that share the query's label, averaged over the {int((test & photo).sum())} "
        "held-out products with a photo as queries.",
        "Pictures: query (red frame) and its nearest neighbours, captions articleType / baseColour."],
        tables=[("Neighbour agreement", agreement, best_flags(agreement))] if agreement is not None else [],
        images=pictures)
    data = _catalogue_table(shop, products, test, photo)
    sizes = Section("Myntra: data", tables=[("Products", data, _plain(data))], notes=_pipeline_lines(pipeline))
    return DatasetOutcome(MYNTRA, [section, colour, pictures_section, sizes], [mrnet_sentence, image_sentence],
                          numbers={"mrnet_claim": holds_mrnet, "image_claim": holds_image, "vocabulary": vocabulary,
                                   "summary": _records(table),
                                   "image_basecolour": _records(image) if image is not None else None,
                                   "neighbour_agreement": _records(agreement) if agreement is not None else None,
                                   "weights": weights})


def _neighbours(root, products, labels, lookups, served, photo, test, plots: Path, config: RealConfig):
    """(agreement table, report images) for the image family and the fusion."""
    from prodvec.consumers.evaluation import RANDOM

    shown = [f for f in (IMAGE_FAMILY, FUSION) if f in served]
    if not shown or not (test & photo).any():
        return None, []
    queries = np.flatnonzero(test & photo)
    rows = {}
    for family in [*shown, RANDOM]:
        pool = photo & lookups[family].found
        near = nearest(lookups[family].matrix, queries, config.neighbours, candidates=pool)
        rows[family] = neighbour_agreement(near, queries, labels[["articleType", "baseColour", "gender"]])
    agreement = pd.DataFrame(rows).T.add_prefix("same_").add_suffix(f"@{config.neighbours}")
    agreement.index.name = "family"

    # A few queries of different article types, drawn with the seed.
    rng = np.random.default_rng([config.seed, 19])
    picked, types = [], set()
    for q in rng.permutation(queries):
        if labels.at[q, "articleType"] not in types:
            picked.append(q)
            types.add(labels.at[q, "articleType"])
        if len(picked) == config.neighbour_queries:
            break
    images = []
    for family in shown:
        near = nearest(lookups[family].matrix, np.asarray(picked), config.neighbours,
                       candidates=photo & lookups[family].found)
        grid = [[products.at[r, C.IMAGE_PATH] for r in [q, *n]] for q, n in zip(picked, near)]
        captions = [[f"{labels.at[r, 'articleType']}\n{labels.at[r, 'baseColour']}" for r in [q, *n]]
                    for q, n in zip(picked, near)]
        path = plots / f"myntra_neighbours_{family}.png"
        neighbour_grid(root, grid, captions, f"{family}: query (red) and its {config.neighbours} nearest", path)
        images.append((f"plots/{path.name}", f"{family}: {len(picked)} held-out query photos and their "
                       f"{config.neighbours} nearest products with a photo"))
    return agreement, images


def _catalogue_table(shop, products: pd.DataFrame, test: np.ndarray, photo: np.ndarray) -> pd.DataFrame:
    rows = {"imported": [len(shop.products), int(shop.products[C.IMAGE_PATH].notna().sum()), np.nan, np.nan],
            "sampled": [len(products), int(photo.sum()), int((~test).sum()), int(test.sum())]}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["products", "with_photo", "train", "held_out"])
    table["articleTypes"] = [shop.products[C.CATEGORY].nunique(), products[C.CATEGORY].nunique()]
    table.index.name = "catalogue"
    return table.astype("Int64")


def _fusion_weights(home: Path) -> dict:
    from prodvec.core.snapshots import SnapshotStore

    card = SnapshotStore(home).served_card(FUSION) or {}
    return card.get("fusion", {}).get("weights", {})


def _pipeline_lines(result) -> list[str]:
    lines = [f"{run.ref.id}: {run.ref.card()['rows']:,} rows in {run.seconds:.0f}s; "
             f"{run.validation['summary'] if run.validation else 'not validated'}" for run in result.runs if run.ref]
    return lines + [f"Pipeline (train, validate, promote, Feast apply + materialize): {result.seconds:.0f}s."]


def yoochoose(source: Path, work: Path, config: RealConfig, log=print) -> DatasetOutcome:
    """Click log -> next-click Recall@20 / MRR@20 on the published split, beside most-popular."""
    from prodvec.consumers.next_click import POPULARITY, evaluate_next_click
    from prodvec.importers.session_clicks import read_split

    shop = _import("session-clicks", source, work / "yoochoose", log)
    split = read_split(work / "yoochoose")
    if split is None:
        raise ValueError(f"{source}: expected a *train_full* and a *test* file (the published split)")
    shop = sample_sessions(shop, split, config.train_sessions, config.test_sessions, config.seed)
    events = shop.events
    train = events[events[C.TS] < split]
    table = evaluate_next_click(shop, split, NEXT_CLICK_FAMILIES, overrides=config.session_overrides, log=log)
    recall = table["recall@20"]
    better = [f for f in ("sasrec", "prod2vec") if f in recall and recall[f] > recall[POPULARITY]]
    verdict = "HOLDS" if better else "DOES NOT HOLD"
    claim = (f"Claim (YooChoose): SASRec or prod2vec above most-popular on Recall@20 — {verdict}: "
             + ", ".join(f"{f} {recall[f]:.3f}" for f in ("sasrec", "prod2vec") if f in recall)
             + f" vs {POPULARITY} {recall[POPULARITY]:.3f}.")
    test_sessions = events.loc[events[C.TS] >= split, C.SESSION_ID].nunique()
    size = (f"Sample: {len(train):,} training clicks in {train[C.SESSION_ID].nunique():,} sessions on "
            f"{train[C.PRODUCT_ID].nunique():,} items, {test_sessions:,} test sessions "
            f"({int(table['n_predictions'].iloc[0]):,} predictions) — far smaller than the published split "
            f"({PUBLISHED_RSC15}), so set the numbers beside published ones as a check of the protocol, "
            "not as a like-for-like comparison: fewer items to rank makes Recall@20 easier.")
    shown = table.drop(columns=["method"]).astype({"n_predictions": "Int64"})
    section = Section("YooChoose: next click (session-based recommendation)",
                      notes=[claim, size, *table.attrs.get("notes", []),
                             "prod2vec and clicks_bpr score by item-to-item cosine from the last click; sasrec by its "
                             "own sequence model; trained in memory at the split (settings: next_click.SESSION_OVERRIDES)."],
                      tables=[("Recall@20 and MRR@20 over every next click of the test sessions", shown,
                               _flags(shown, ["recall@20", "mrr@20"]))])
    return DatasetOutcome(YOOCHOOSE, [section], [claim, size],
                          numbers={"claim": bool(better), "table": _records(shown),
                                   "train_clicks": len(train), "test_sessions": int(test_sessions)})


def online_retail(source: Path, work: Path, config: RealConfig, log=print) -> DatasetOutcome:
    """Invoices -> backbone families through the pipeline -> cancellation (return) AUC through Feast."""
    from prodvec.consumers.returns import ReturnTask, split_orders
    from prodvec.pipeline import Schedule, results_table, run_pipeline
    from prodvec.core.snapshots import SnapshotStore

    shop = _import("online-retail", source, work / "retail", log)
    schedule = Schedule(config.retail_first_days, config.retail_every_days, config.retail_eval_days)
    home = _fresh(work / "retail_home")
    result = run_pipeline(shop, home, families=RETAIL_FAMILIES, schedule=schedule,
                          overrides=config.retail_overrides, progress=False, log=log)
    cutoffs = schedule.cutoffs(shop)
    task = ReturnTask(eval_cutoff=schedule.eval_cutoff(shop), train_from=cutoffs[0] if cutoffs else None)
    train, test = split_orders(shop, task)
    orders = shop.orders
    size = (f"{len(orders):,} order lines in {orders[C.ORDER_ID].nunique():,} orders of "
            f"{orders[C.USER_ID].nunique():,} customers, {int(orders[C.RETURNED].sum())} returned; around the "
            f"evaluation cutoff {task.eval_cutoff.date()}: {len(train):,} training lines "
            f"({int(train[C.RETURNED].sum())} returned) and {len(test):,} test lines "
            f"({int(test[C.RETURNED].sum())} returned)")
    returns = result.returns
    if returns is not None:
        auc = returns.set_index("family")[["return_auc", "return_pr_auc", "train_orders", "test_orders",
                                           "test_rows_with_embedding"]]
        best = auc["return_auc"].idxmax()
        claim = (f"Online Retail: cancellation (return) AUC {auc.at[best, 'return_auc']:.3f} ({best}) vs "
                 f"{auc.at['no_embedding', 'return_auc']:.3f} without embeddings, through Feast, on {size}.")
        tables = [("Cancellation (return) prediction, held-out orders", auc,
                   _flags(auc, ["return_auc", "return_pr_auc"]))]
    else:
        why = (" The import matched no cancellation to an order line it kept (see its log): the published "
               "sample is about 1% of the UCI file, drawn line by line, so a cancellation rarely keeps its order; "
               "the full file has them." if not orders[C.RETURNED].any() else "")
        claim = (f"Online Retail: no cancellation (return) AUC — the data is too small for a held-out split with "
                 f"both classes: {size}. The return model needs returned and kept lines on both sides of the "
                 "split." + why)
        tables = []
    snapshots = results_table(SnapshotStore(home), None).set_index("family")
    tables.append(("Families trained and served (validation metrics of the newest snapshot)", snapshots,
                   _plain(snapshots)))
    section = Section("Online Retail: cancellations as returns", notes=[
        claim,
        f"Retrained every {schedule.every_days} days from day {schedule.first_days} ("
        + ", ".join(str(c.date()) for c in cutoffs) + "); the return model learns from orders placed before "
        f"{task.eval_cutoff.date()} minus its {task.label_days}-day window and is scored on later ones, every "
        "order reading each embedding as served at its own time (Feast).",
        *_pipeline_lines(result)], tables=tables)
    return DatasetOutcome(RETAIL, [section], [claim],
                          numbers={"auc": _records(returns.set_index("family")) if returns is not None else None,
                                   "order_lines": len(orders), "orders": int(orders[C.ORDER_ID].nunique()),
                                   "returned": int(orders[C.RETURNED].sum())})


def _records(table: pd.DataFrame | None):
    if table is None:
        return None
    return json.loads(table.replace({np.nan: None}).to_json(orient="index"))


# -- the report --------------------------------------------------------------------------------------


def build_real_report(data: str | Path = DEFAULT_DATA, out_dir: str | Path = "reports/real",
                      work: str | Path = "workspace/real", config: RealConfig = RealConfig(),
                      log=print) -> RealReport:
    """Run every data set found under `data`, write `out_dir`/report.md and report.html (swapped in whole)."""
    started = time.perf_counter()
    data, out_dir, work = Path(data), Path(out_dir), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would keep the report from colleagues on a shared machine
    try:
        (staging / "plots").mkdir()
        runs = {
            MYNTRA: (data / "myntra", lambda src: myntra(src, work, staging / "plots", config, log)),
            YOOCHOOSE: (data / "yoochoose", lambda src: yoochoose(src, work, config, log)),
            RETAIL: (data / "online_retail", lambda src: online_retail(src / RETAIL_FILE, work, config, log)),
        }
        outcomes = {}
        for name, (source, run) in runs.items():
            if not source.is_dir():
                outcomes[name] = DatasetOutcome(name, skipped=f"{source} not found")
                log(f"real-report: {name}: skipped: {source} not found")
                continue
            log(f"real-report: {name} from {source}")
            begun = time.perf_counter()
            outcomes[name] = run(source)
            outcomes[name].seconds = time.perf_counter() - begun
            log(f"real-report: {name} done in {outcomes[name].seconds:.0f}s")
        seconds = time.perf_counter() - started
        sections = [_summary(outcomes, data, seconds, config)]
        sections += [s for outcome in outcomes.values() for s in outcome.sections]
        title = "Product embeddings on real data (Myntra, YooChoose, Online Retail)"
        (staging / "report.md").write_text(to_markdown(title, sections))
        (staging / "report.html").write_text(to_html(title, sections))
        payload = {name: {"seconds": round(o.seconds, 1), "skipped": o.skipped, "claims": o.claims, **o.numbers}
                   for name, o in outcomes.items()}
        (staging / "results.json").write_text(json.dumps({"seconds": round(seconds, 1), "data": str(data),
                                                          "datasets": payload}, indent=2,
                                                          default=lambda o: o.item() if hasattr(o, "item") else str(o)))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RealReport(out_dir / "report.md", out_dir / "report.html", outcomes, seconds)


def _summary(outcomes: dict[str, DatasetOutcome], data: Path, seconds: float, config: RealConfig) -> Section:
    claims = [claim for o in outcomes.values() for claim in o.claims]
    skipped = [f"{name}: skipped — {o.skipped}" for name, o in outcomes.items() if o.skipped]
    table = pd.DataFrame({"status": ["skipped" if o.skipped else "ran" for o in outcomes.values()],
                          "seconds": [round(o.seconds) for o in outcomes.values()]},
                         index=pd.Index(list(outcomes), name="dataset"))
    notes = [*claims, *skipped,
             f"Data: {data} (public samples, see its README). Whole run {seconds:.0f}s "
             f"({seconds / 60:.1f} min); seed {config.seed}. Reproduce with `make real-report` "
             "(`prodvec real-report --data ../shared/data --out reports/real`)."]
    return Section("Summary", notes=notes, tables=[("Data sets", table, _plain(table))])
