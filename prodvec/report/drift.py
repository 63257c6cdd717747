"""The report's drift panel: how far each retrain moved from the snapshot it replaced, per family over time.

The numbers are the validation gate's own (each snapshot's model card):
displacement after Procrustes alignment, kNN@10 Jaccard overlap and the
classifier two-sample ROC-AUC against the snapshot it replaced. With warm
start they come from the served home; without, from a home trained with
`prodvec run --no-warm-start` (`make drift-baseline` puts one at
HOME/validation/no_warm_start, which the report picks up when present).
Links to the Great Expectations Data Docs go in the same section.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from prodvec.core.snapshots import SnapshotStore
from prodvec.report.render import Section
from prodvec.validation.verdict import VALIDATION_DIR, data_docs_index

NO_WARM_START_HOME = "no_warm_start"
MEASURES = ("displacement", "knn_overlap", "classifier_auc")


def no_warm_start_home(home: Path) -> Path:
    return Path(home) / VALIDATION_DIR / NO_WARM_START_HOME


def drift_table(store: SnapshotStore, warm_start: bool) -> pd.DataFrame:
    """One row per validated snapshot with a drift reference: family, cutoff, the three measures, verdict."""
    rows = []
    for family in store.families():
        for ref in store.snapshots(family):
            validation = ref.card().get("validation") or {}
            metrics = validation.get("metrics") or {}
            if metrics.get("knn_overlap") is None:
                continue
            rows.append({"family": family, "version": ref.version, "cutoff": ref.cutoff.date(),
                         "warm_start": warm_start, **{m: metrics.get(m) for m in MEASURES},
                         "passed": bool(validation.get("success")),
                         "failed": ", ".join(c["name"] for c in validation.get("checks", [])
                                             if not c["success"] and c.get("severity") == "critical"
                                             and c["name"] in MEASURES)})
    return pd.DataFrame(rows)


def drift_plot(table: pd.DataFrame, thresholds: dict, path: Path) -> Path | None:
    """Three panels (displacement, kNN overlap, classifier AUC) over cutoffs; solid with warm start, dashed without."""
    if table.empty:
        return None
    from prodvec.report.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), dpi=100)
    colours = {f: plt.cm.tab10(i % 10) for i, f in enumerate(sorted(table["family"].unique()))}
    for ax, measure in zip(axes, MEASURES):
        for (family, warm), rows in table.groupby(["family", "warm_start"]):
            rows = rows.sort_values("cutoff")
            ax.plot(pd.to_datetime(rows["cutoff"]), rows[measure].astype(float), marker="o", markersize=3,
                    color=colours[family], linestyle="-" if warm else "--",
                    label=f"{family}" + ("" if warm else " (no warm start)"))
        for level, style in (("warn", ":"), ("fail", "-")):
            value = thresholds.get((measure, level))
            if value is not None:
                ax.axhline(value, color="0.5", linestyle=style, linewidth=0.8)
        ax.set_title({"displacement": "displacement after Procrustes (÷ spread)",
                      "knn_overlap": "kNN@10 Jaccard overlap", "classifier_auc": "classifier ROC-AUC"}[measure],
                     fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    axes[0].legend(fontsize=6, frameon=False)
    fig.suptitle("Drift of each retrain from the snapshot it replaced (grey: warn dotted, fail solid)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def drift_section(store: SnapshotStore, home: Path, plots_dir: Path, report_dir: Path) -> Section:
    """The report section: the plot, the table (with and without warm start), and where the Data Docs are."""
    from prodvec.validation.gate import GateConfig

    config = GateConfig()
    thresholds = {("displacement", "warn"): config.warn_displacement, ("displacement", "fail"): config.max_displacement,
                  ("knn_overlap", "warn"): config.warn_knn_overlap, ("knn_overlap", "fail"): config.min_knn_overlap,
                  ("classifier_auc", "warn"): config.warn_classifier_auc,
                  ("classifier_auc", "fail"): config.max_classifier_auc}
    tables = [drift_table(store, True)]
    cold = no_warm_start_home(home)
    if (cold / "snapshots").exists():
        tables.append(drift_table(SnapshotStore(cold), False))
    table = pd.concat(tables, ignore_index=True) if any(len(t) for t in tables) else pd.DataFrame()
    index = data_docs_index(home)
    link = os.path.relpath(index, report_dir) if index.exists() else None
    notes = [
        "Every snapshot is validated by a Great Expectations suite of embedding expectations before it may be "
        "served; drift is measured against the snapshot it replaces (the newest earlier one of its version that "
        "passed): displacement after orthogonal Procrustes alignment in units of the reference's spread "
        "(0 = a rotated copy), Jaccard overlap of each product's 10 nearest neighbours (1 = same neighbours), "
        "and the ROC-AUC of a classifier telling old from new aligned vectors (0.5 = indistinguishable). "
        "A snapshot over a fail level is never promoted.",
        "Great Expectations Data Docs (every validation, every check with its observed value and threshold): "
        + (f"[{link}]({link})" if link else "not written under this home."),
    ]
    if len(tables) == 1:
        notes.append("Without warm start: no home trained with `--no-warm-start` at "
                     f"{cold} (`make drift-baseline` trains one), so only warm-started retrains are shown.")
    section = Section("Drift between retrains", notes=notes)
    if not table.empty:
        shown = table.assign(snapshot=[f"{r.family} v{r.version} {r.cutoff}" + ("" if r.warm_start else " (no warm start)")
                                       for r in table.itertuples()]).set_index("snapshot")
        shown = shown[list(MEASURES) + ["passed", "failed"]]
        section.tables.append(("Drift of each retrain from the snapshot it replaced", shown,
                               pd.DataFrame(False, index=shown.index, columns=shown.columns)))
        label = table["family"] + table["warm_start"].map({True: "", False: " (no warm start)"})
        summary = table.assign(family=label).groupby("family")[list(MEASURES) + ["passed"]].mean()
        summary = summary.rename(columns={"passed": "share passed"})
        section.tables.append(("Mean over retrains", summary,
                               pd.DataFrame(False, index=summary.index, columns=summary.columns)))
        if drift_plot(table, thresholds, plots_dir / "drift.png"):
            section.images.append(("plots/drift.png", "Drift per family over time (solid: warm start; dashed: "
                                                      "trained from scratch)"))
    return section
