"""The report's pictures, as PNG files beside it (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.consumers.evaluation import BASELINES, EvalContext, TaskResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def embedding_map(ctx: EvalContext, family: str, path: Path, sample: int = 1500) -> Path | None:
    """A 2-D t-SNE map of one family's newest snapshot, one colour per category."""
    from sklearn.manifold import TSNE

    entity = ctx.catalog_at(ctx.newest_snapshot)
    lookup = ctx.embeddings(entity, with_random=False)[family]
    products = ctx.shop.products.set_index(C.PRODUCT_ID)
    ids = entity[C.PRODUCT_ID].to_numpy()[lookup.found]
    vectors = lookup.normalised()[lookup.found]
    if len(ids) < 10:
        return None
    rng = np.random.default_rng([ctx.seed, 21])
    pick = rng.choice(len(ids), min(sample, len(ids)), replace=False)
    points = TSNE(n_components=2, init="pca", perplexity=30, random_state=ctx.seed).fit_transform(vectors[pick])
    labels = (products[C.CATEGORY].reindex(ids[pick]).fillna("unknown").to_numpy()
              if C.CATEGORY in products else np.full(len(pick), "all"))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=100)
    # 40 distinct colours: two qualitative maps back to back, so neighbouring categories differ.
    palette = [plt.get_cmap(name)(i) for name in ("tab20", "tab20b") for i in range(20)]
    for i, label in enumerate(sorted(set(labels))):
        mask = labels == label
        ax.scatter(points[mask, 0], points[mask, 1], s=6, color=palette[i % len(palette)], label=label, alpha=0.8)
    ax.set_title(f"{family}: t-SNE of {len(pick)} products, coloured by category")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3, fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def spectrum(spectra: pd.DataFrame, path: Path) -> Path | None:
    """Normalised singular values (σ_i / σ_max) per family, log scale: a collapsed space drops fast."""
    if spectra is None or spectra.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for family, row in spectra.iterrows():
        values = row.dropna().to_numpy(float)
        style = dict(color="0.6", linestyle="--") if family in BASELINES else {}
        ax.plot(np.arange(1, len(values) + 1), values, label=family, linewidth=1.4, **style)
    ax.set_yscale("log")
    ax.set_xlabel("component")
    ax.set_ylabel("σ_i / σ_max")
    ax.set_title("Singular-value spectrum of the newest snapshot")
    ax.legend(fontsize=7, ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def metric_bars(result: TaskResult, families: set[str], path: Path) -> Path | None:
    """The task's headline metric per family; rows that are not `families` (baselines) in grey."""
    values = result.table[result.headline].dropna()
    if values.empty:
        return None
    lower = result.headline in result.lower_is_better
    values = values.sort_values(ascending=not lower)
    best = result.best(result.headline)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(values) + 1.2), dpi=100)
    colours = ["0.7" if f not in families else ("#1f4e9c" if f == best else "#6f9fd8")
               for f in values.index]
    ax.barh(values.index, values.to_numpy(), color=colours)
    for y, v in enumerate(values.to_numpy()):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.set_xlabel(result.headline + (" (lower is better)" if lower else ""))
    ax.set_title(result.title, fontsize=10)
    # Relative metrics can be negative: the axis spans zero and every bar with room for its label.
    low, high = min(0.0, values.min()), max(0.0, values.max())
    pad = 0.15 * max(high - low, 1e-9)
    ax.set_xlim(low - (pad if low < 0 else 0.0), high + pad)
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

