"""`prodvec report`: score every served family on every consumer task and write report.md/.html.

Everything is read back through Feast (`get_historical_features`) from the
home a pipeline run filled; nothing is retrained here. The report directory
is written beside and swapped in whole, so a failed run leaves the previous
report intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prodvec.core import columns as C
from prodvec.core import feast_ops
from prodvec.consumers.evaluation import EvalContext
from prodvec.core.snapshots import latest_views
from prodvec.pipeline import Schedule, results_table
from prodvec.report import plots
from prodvec.report.drift import drift_section
from prodvec.report.output import records, staged, write_json, write_pages
from prodvec.report.render import Section, best_flags, no_flags
from prodvec.report.tasks import TaskOutcome, run_tasks
from prodvec.core.shop.model import Shop
from prodvec.core.snapshots import SnapshotStore, parse_tag

# The unified claim: within this fraction of the best single family on each of the paper's tasks.
WITHIN = 0.05


@dataclass
class ReportResult:
    markdown: Path
    html: Path
    main_table: pd.DataFrame
    claims: list[str]
    outcomes: list[TaskOutcome]


def served_cutoffs(store: SnapshotStore) -> tuple[pd.Timestamp, ...]:
    times = {parse_tag(tag) for family, version, _ in store.served_versions()
             for tag in store.promoted(family, version)}
    return tuple(sorted(times))


def claim_holds(gaps: list[float]) -> bool:
    """The paper's claim from a fusion's gaps to the best single family on each task (relative, positive =
    behind): within WITHIN on every task and ahead on at least one."""
    return bool(gaps) and all(g <= WITHIN for g in gaps) and any(g < 0 for g in gaps)


def fusion_claims(outcomes: list[TaskOutcome], families: list[str]) -> list[str]:
    """Plain sentences on "one embedding does them all": each fusion against the best single family."""
    from prodvec.producers import is_fusion

    fusions = [f for f in families if is_fusion(f)]
    singles = [f for f in families if not is_fusion(f)]
    paper = [o for o in outcomes if o.task.paper and o.result is not None]
    if not fusions or not singles or not paper:
        return ["No fused family and single family to compare on the paper's tasks."]
    sentences = []
    for fusion in fusions:
        gaps, parts = [], []
        for outcome in paper:
            result, metric = outcome.result, outcome.result.headline
            column = result.table[metric]
            single = column.reindex(singles).dropna()
            if fusion not in column or pd.isna(column.get(fusion)) or single.empty:
                continue
            lower = metric in result.lower_is_better
            best_family = single.idxmin() if lower else single.idxmax()
            value, best = float(column[fusion]), float(single[best_family])
            gap = (best - value) / abs(best) if not lower else (value - best) / abs(best)
            gaps.append(gap)
            parts.append(f"{outcome.task.name} {metric} {value:.3f} vs best single {best_family} {best:.3f} "
                         f"({-gap:+.1%})")
        if not parts:
            continue
        verdict = "holds" if claim_holds(gaps) else "does not hold"
        sentences.append(f"{fusion}: the claim (within {WITHIN:.0%} of the best single family on every paper task, "
                         f"better than all on at least one) {verdict}: " + "; ".join(parts) + ".")
    return sentences


def _meta(ctx: EvalContext, store: SnapshotStore, home: Path, outcomes: list[TaskOutcome]) -> list[str]:
    shop = ctx.shop
    lines = [f"Shop: {shop.root} — {len(shop.products)} products listed "
             f"{shop.products[C.CREATED_AT].min().date()} … {shop.products[C.CREATED_AT].max().date()}"
             + (f"; {len(shop.events)} events" if shop.events is not None else "; no events")
             + (f"; {len(shop.orders)} order lines" if shop.orders is not None else "; no orders") + ".",
             f"Evaluation cutoff {ctx.eval_cutoff.date()}: models learn from before it, every number is scored "
             f"on data after it (held out by time); shop data ends {shop.end.date()}.",
             "Snapshot cutoffs: " + ", ".join(str(t.date()) for t in ctx.snapshot_times) + ".",
             f"Served feature views (read through Feast, point-in-time, from {home / 'feast'}): "
             + ", ".join(ctx.views.values()) + ".",
             f"Seeds: evaluation {ctx.seed}; producers " + ", ".join(
                 f"{family} {_producer_seed(store, family)}" for family in ctx.views) + ".",
             "Task run times: " + ", ".join(f"{o.task.name} {o.seconds:.0f}s" for o in outcomes) + "."]
    return lines


def _producer_seed(store: SnapshotStore, family: str):
    card = store.served_card(family) or {}
    return card.get("parameters", {}).get("seed", "?")


def main_table(outcomes: list[TaskOutcome]) -> pd.DataFrame:
    """family × headline metric of each task (rows: every family and baseline any task scored)."""
    columns = {}
    for outcome in outcomes:
        if outcome.result is not None:
            result = outcome.result
            columns[f"{outcome.task.name} {result.headline}"] = result.table[result.headline]
    table = pd.DataFrame(columns)
    table.index.name = "family"
    return table


def build_report(shop: Shop, home: str | Path, out_dir: str | Path, *, online: str = "sqlite",
                 schedule: Schedule = Schedule(), seed: int = 0, tasks: tuple[str, ...] | None = None,
                 map_family: str | None = None, known: dict | None = None, log=print) -> ReportResult:
    """`known`: results already computed on this home, keyed by task parameters (`EvalContext.known`)."""
    home, out_dir = Path(home), Path(out_dir)
    store = SnapshotStore(home)
    views = latest_views(store)
    if not views:
        raise ValueError(f"no served snapshot under {home}: run `prodvec run` (or produce + promote) first")
    ctx = EvalContext(shop, feast_ops.open_store(home, online), views, schedule.eval_cutoff(shop), seed=seed,
                      snapshot_times=served_cutoffs(store), known=dict(known or {}))
    outcomes = run_tasks(ctx, tasks, log=log)
    families = list(views)
    claims = fusion_claims(outcomes, families)

    with staged(out_dir) as staging:
        sections = _sections(ctx, store, home, outcomes, families, claims, staging, map_family, log)
        write_pages(staging, f"Product embeddings: evaluation report ({shop.root.name})", sections)
        table = main_table(outcomes)
        _write_numbers(staging, outcomes, table, claims)
    return ReportResult(out_dir / "report.md", out_dir / "report.html", table, claims, outcomes)


def _sections(ctx, store, home, outcomes, families, claims, staging: Path, map_family, log) -> list[Section]:
    from prodvec.producers import is_fusion

    table = main_table(outcomes)
    summary = Section("Summary", notes=claims + [
        "Rows: every served embedding family, `random` (Gaussian vectors of the same dimension, chance level) "
        "and each task's no-embedding baseline; ★ marks the best value in each column."])
    summary.tables.append(("Headline metric per task (higher is better)", table, best_flags(table)))
    skipped = [f"{o.task.name}: skipped — {o.skipped}" for o in outcomes if o.skipped]
    summary.notes += skipped
    sections = [summary]

    images = []
    fused = [f for f in families if is_fusion(f)]
    chosen = map_family or (fused[0] if fused else families[0])
    try:
        if plots.embedding_map(ctx, chosen, staging / "plots" / "map.png"):
            images.append(("plots/map.png", f"2-D map (t-SNE) of {chosen}, coloured by category"))
    except ValueError as error:  # too few products for t-SNE
        log(f"report: no map: {error}")
    intrinsic = next((o.result for o in outcomes if o.task.name == "intrinsic" and o.result is not None), None)
    if intrinsic is not None and plots.spectrum(intrinsic.extra.get("spectrum"), staging / "plots" / "spectrum.png"):
        images.append(("plots/spectrum.png", "Singular-value spectrum per family (newest snapshot)"))
    sections.append(Section("Pictures", images=images))

    for outcome in outcomes:
        result = outcome.result
        if result is None:
            continue
        section = Section(result.title, notes=list(result.notes))
        section.tables.append(("All metrics", result.table, best_flags(result.table, result.lower_is_better)))
        for caption, extra in result.extra.items():
            if caption == "spectrum" or extra.empty:
                continue
            if not set(extra.index) & set(result.table.index) and set(extra.columns) & set(result.table.index):
                extra = extra.T  # families as rows everywhere, so ★ compares families
            section.tables.append((caption, extra, best_flags(extra, result.lower_is_better)))
        bars = staging / "plots" / f"{outcome.task.name}.png"
        if plots.metric_bars(result, set(families), bars):
            section.images.append((f"plots/{bars.name}", f"{result.title}: {result.headline} per family"))
        sections.append(section)

    sections.append(drift_section(store, home, staging / "plots", staging))
    snapshots = results_table(store, None).set_index("family")
    sections.append(Section("Snapshots and data", notes=_meta(ctx, store, home, outcomes),
                            tables=[("Newest snapshot per family (validation metrics; train seconds averaged over "
                                     "snapshots)", snapshots, no_flags(snapshots))]))
    return sections


def _write_numbers(staging: Path, outcomes: list[TaskOutcome], table: pd.DataFrame, claims: list[str]) -> None:
    """Machine-readable copies of every number: summary.csv (headline) and results.json (all)."""
    table.to_csv(staging / "summary.csv")
    payload = {"claims": claims, "tasks": {}}
    for outcome in outcomes:
        entry = {"seconds": round(outcome.seconds, 1), "skipped": outcome.skipped}
        if outcome.result is not None:
            entry.update(headline=outcome.result.headline, notes=outcome.result.notes,
                         table=records(outcome.result.table))
        payload["tasks"][outcome.task.name] = entry
    write_json(staging / "results.json", payload)
