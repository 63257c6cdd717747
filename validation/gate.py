"""The gate a snapshot passes before it may be served: metrics, then the GE suite.

`validate_embeddings` measures the table (`metrics.py`), lays the numbers out
as two small tables and runs them through the Great Expectations suite
(`suite.py`). The report goes into the snapshot's model card; a snapshot whose
report failed is kept for inspection but never served.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core.columns import PRODUCT_ID
from prodvec.core.embeddings import Embeddings
from prodvec.validation import suite
from prodvec.validation.metrics import COSINE_PAIRS, SVD_ROWS
from prodvec.validation.suite import CRITICAL, WARNING


@dataclass(frozen=True)
class GateConfig:
    """Thresholds: fail levels refuse a snapshot, warn levels (`warn_*`) only flag it.

    docs/validation.md says where each level comes from (what the families
    produce on the default shop). Override per run with `prodvec run --gate
    KEY=VALUE` or per family and version with `--gate FAMILY[.vN].KEY=VALUE`
    (`GateConfig.for_family`).
    """

    # Producers set their own: a clickstream family only covers clicked
    # products, fusion expects every product (1.0). The same share is
    # demanded of the products listed since the previous cutoff (cold start).
    min_coverage: float = 0.0
    min_cold_start_coverage: float = 0.0
    # Pairwise metrics need two rows; an empty table is never a snapshot.
    min_rows: int = 2
    # Zero rows carry no direction (cosine undefined); 1e4 is far above any
    # trained or normalised embedding and catches a diverged run.
    min_norm: float = 1e-6
    max_norm: float = 1e4
    max_nonfinite_rows: int = 0
    # Every row must be a catalogue product: anything else is a broken join.
    max_unknown_ids: int = 0
    # Collapse: all vectors in one direction. Raw transformer or non-negative
    # embeddings can sit at 0.5-0.8 and still be useful, so only near 1 fails.
    max_mean_pairwise_cosine: float = 0.9
    # Collapse seen as energy: rows = one vector + noise leaves almost none
    # after centring (about 1 - mean cosine when norms are equal).
    min_centred_energy: float = 0.01
    # sigma_min / sigma_max fails only where a direction is dead (a constant
    # coordinate, an empty modality block): trained embeddings here sit at
    # 0.0003-0.3, so a higher floor would refuse healthy ones; the spread
    # of the spectrum is judged by the effective rank instead.
    min_isotropy: float = 1e-6
    # Effective rank as a share of the dimension: the families here produce
    # 0.55-0.95 on the default shop; below 0.25 the space lives in a quarter
    # of its dimensions (warn), below 0.05 in a handful of directions (fail).
    warn_effective_rank: float = 0.25
    min_effective_rank: float = 0.05
    # Off: product variants with identical text legitimately share a vector.
    max_duplicate_share: float = 1.0
    # Share of a product's 10 nearest neighbours in its category: the
    # quality framework's bar (warn only: a clickstream space groups by
    # behaviour, not by catalogue tree).
    warn_label_consistency: float = 0.6
    # Drift against the snapshot this one replaces (docs/validation.md):
    # displacement after Procrustes in units of the reference's spread
    # (0 = rotated copy, ~1.4 = unrelated), kNN@10 Jaccard overlap (1 =
    # same neighbours), classifier two-sample ROC-AUC (0.5 = same
    # distribution; Evidently flags above 0.55).
    warn_displacement: float = 0.6
    max_displacement: float = 1.0
    warn_knn_overlap: float = 0.3
    min_knn_overlap: float = 0.1
    warn_classifier_auc: float = 0.55
    max_classifier_auc: float = 0.75
    # Sample sizes that keep a 1M-row table to seconds.
    svd_rows: int = SVD_ROWS
    cosine_pairs: int = COSINE_PAIRS

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "GateConfig":
        """A copy with `changes` (strings from the command line are converted to each field's type)."""
        types = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(changes) - set(types))
        if unknown:
            raise ValueError(f"unknown gate setting(s) {', '.join(unknown)}; known: {', '.join(types)}")
        cast = {k: (int(float(v)) if types[k] in ("int", int) else float(v)) for k, v in changes.items()}
        return dataclasses.replace(self, **cast)

    @staticmethod
    def for_family(family: str, version: int, settings: dict[str, str] | None, base: "GateConfig | None" = None,
                   ) -> "GateConfig":
        """`base` with the settings that apply to `family` version `version`.

        Keys: `KEY` (every family), `FAMILY.KEY` (every version of it),
        `FAMILY.vN.KEY` (one version); the more specific wins.
        """
        general, per_family, per_version = {}, {}, {}
        for key, value in (settings or {}).items():
            parts = key.split(".")
            if len(parts) == 1:
                general[key] = value
            elif len(parts) == 2 and parts[0] == family:
                per_family[parts[1]] = value
            elif len(parts) == 3 and parts[0] == family and parts[1] == f"v{version}":
                per_version[parts[2]] = value
        return (base or GateConfig()).replace(**{**general, **per_family, **per_version})


@dataclass
class ValidationReport:
    """Outcome of the gate: metrics, one entry per GE expectation, and the verdict."""

    success: bool
    metrics: dict[str, float]
    checks: list[dict]
    config: dict = field(default_factory=dict)
    # Where this run's Data Docs page is (None without a docs root).
    docs: str | None = None
    # Wall time of the validation; kept out of to_dict so model cards stay reproducible.
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return list(dict.fromkeys(c["name"] for c in self.checks
                                  if not c["success"] and c.get("severity", CRITICAL) == CRITICAL))

    @property
    def warnings(self) -> list[str]:
        failed = set(self.failed)
        return list(dict.fromkeys(c["name"] for c in self.checks if not c["success"]
                                  and c.get("severity") == WARNING and c["name"] not in failed))

    def summary(self) -> str:
        """One line: "passed 11/11: coverage 1.00, ..." or "FAILED mean_pairwise_cosine 0.99 above 0.90 ..."."""
        critical = [c for c in self.checks if c.get("severity", CRITICAL) == CRITICAL]
        warned = [c for c in self.checks if c.get("severity") == WARNING and not c["success"]
                  and c["name"] not in self.failed]
        warn = ("; warn: " + "; ".join(_describe(c) for c in warned)) if warned else ""
        if self.success:
            m = self.metrics
            drift = (f", kNN overlap {_fmt(m['knn_overlap'])}" if m.get("knn_overlap") is not None else "")
            return (
                f"passed {len(critical)}/{len(critical)}: coverage {_fmt(m['coverage'])}, "
                f"isotropy {_fmt(m['isotropy'])}, mean cos {_fmt(m['mean_pairwise_cosine'])}{drift}{warn}"
            )
        return "FAILED " + "; ".join(_describe(c) for c in critical if not c["success"]) + warn

    def to_dict(self) -> dict:
        """A strictly JSON-serialisable dict (NaN and inf become null) for the model card."""
        return _json_ready(
            {
                "success": self.success,
                "summary": self.summary(),
                "metrics": self.metrics,
                "checks": self.checks,
                "config": self.config,
                "warnings": self.warnings,
                "data_docs": self.docs,
            }
        )


@dataclass(frozen=True)
class Cohorts:
    """What the gate compares a snapshot with besides the catalogue (all optional).

    `labels`: a label per catalogue product (the category) for neighbourhood
    consistency; `new_ids`: products listed since the previous snapshot's
    cutoff (cold start); `reference`: the snapshot this one replaces, for
    drift; `block_widths`: widths of concatenated blocks (one per modality)
    so an empty one is named.
    """

    labels: pd.Series | None = None
    new_ids: np.ndarray | None = None
    reference: Embeddings | None = None
    block_widths: tuple[int, ...] | None = None


def batch_table(emb: Embeddings, catalog_ids: np.ndarray, cohorts: Cohorts = Cohorts()) -> tuple[pd.DataFrame, frozenset]:
    """The table the suite validates (see `suite`), and which optional parts of the suite apply to it."""
    catalog = pd.Index(np.asarray(catalog_ids).astype(str)).unique()
    ids = pd.Index(np.asarray(emb.ids).astype(str))
    index = catalog.append(ids.difference(catalog, sort=False)) if len(ids) else catalog
    position = ids.get_indexer(index)
    cells = np.empty(len(index), dtype=object)
    # Views into the snapshot's matrix: no copy of the vectors.
    rows = list(np.asarray(emb.vectors))
    have = position >= 0
    cells[np.flatnonzero(have)] = [rows[i] for i in position[have]]
    in_catalogue = np.arange(len(index)) < len(catalog)
    table = pd.DataFrame({PRODUCT_ID: index.to_numpy(), suite.EMBEDDING: cells, suite.IN_CATALOGUE: in_catalogue,
                          suite.UNKNOWN: (have & ~in_catalogue).astype(np.int64)}, index=index)
    parts = {suite.CORE}
    if cohorts.new_ids is not None and len(cohorts.new_ids):
        table[suite.NEW] = index.isin(pd.Index(np.asarray(cohorts.new_ids).astype(str))) & in_catalogue
        parts.add(suite.COLD_START)
    if cohorts.labels is not None:
        labels = cohorts.labels.copy()
        labels.index = labels.index.astype(str)
        table[suite.LABEL] = labels.reindex(index).astype(object).to_numpy()
        parts.add(suite.LABELS)
    if cohorts.reference is not None:
        ref_ids = pd.Index(np.asarray(cohorts.reference.ids).astype(str))
        ref_rows = list(np.asarray(cohorts.reference.vectors))
        where = ref_ids.get_indexer(index)
        ref_cells = np.empty(len(index), dtype=object)
        ref_cells[np.flatnonzero(where >= 0)] = [ref_rows[i] for i in where[where >= 0]]
        table[suite.REFERENCE] = ref_cells
        if ((where >= 0) & have).sum() > 0:
            parts.add(suite.DRIFT)
    return table, frozenset(parts)


def validate_embeddings(
    emb: Embeddings,
    *,
    catalog_ids: np.ndarray,
    expected_dim: int,
    config: GateConfig = GateConfig(),
    seed: int = 0,
    cohorts: Cohorts = Cohorts(),
    docs_root: Path | None = None,
    run_name: str | None = None,
) -> ValidationReport:
    """Run `emb` through the GE suite; `seed` fixes the samples behind the metrics.

    With `docs_root`, the run is stored in a file-backed GX context there and
    its Data Docs page written (`ValidationReport.docs`).
    """
    start = time.perf_counter()
    table, parts = batch_table(emb, catalog_ids, cohorts)
    params = {**config.to_dict(), "expected_dim": int(expected_dim), "seed": int(seed),
              "block_widths": ",".join(str(w) for w in cohorts.block_widths) if cohorts.block_widths else ""}
    checks, page = suite.run_suite(table, params, parts, docs_root=docs_root, run_name=run_name)
    for check in checks:
        if check["name"] == "norm":  # the bounds of the norms, not of the count of rows outside them
            check["expected"] = {"min": config.min_norm, "max": config.max_norm}
    unknown = next((c for c in checks if c["name"] == "unknown_ids"), None)
    if unknown is not None and not unknown["success"]:
        unknown["examples"] = table.index[table[suite.UNKNOWN].to_numpy() == 1][:5].tolist()
    specs = [c for c in suite.CHECK_SPECS if c.part in parts]
    success = len(checks) == len(specs) and all(c["success"] for c in checks if c["severity"] == CRITICAL)
    return ValidationReport(
        success=success,
        metrics=_metrics(checks, emb),
        checks=checks,
        config={**config.to_dict(), "expected_dim": int(expected_dim), "seed": seed},
        docs=page,
        seconds=time.perf_counter() - start,
    )


def _metrics(checks: list[dict], emb: Embeddings) -> dict:
    """The numbers the model card and the results table read, from what the checks measured."""
    by = {}
    for c in checks:
        by.setdefault(c["name"], c)
    details = lambda name: by.get(name, {}).get("details", {})  # noqa: E731
    observed = lambda name: by.get(name, {}).get("observed")  # noqa: E731
    metrics = {
        "dimension": int(emb.dim),
        "rows": int(len(emb)),
        "nonfinite_rows": observed("nonfinite_rows"),
        "unknown_ids": observed("unknown_ids"),
        "norm_min": details("norm").get("min"),
        "norm_max": details("norm").get("max"),
        "norm_mean": details("norm").get("mean"),
        "coverage": observed("coverage"),
        "isotropy": observed("isotropy"),
        "sigma_min": details("isotropy").get("sigma_min"),
        "sigma_max": details("isotropy").get("sigma_max"),
        "effective_rank": details("effective_rank").get("effective_rank"),
        "effective_rank_share": observed("effective_rank"),
        "constant_coordinates": details("isotropy").get("constant_coordinates"),
        "mean_pairwise_cosine": observed("mean_pairwise_cosine"),
        "centred_energy": observed("centred_energy"),
        "duplicate_share": observed("duplicate_share"),
    }
    if "cold_start_coverage" in by:
        metrics["cold_start_coverage"] = observed("cold_start_coverage")
        metrics["cold_start_products"] = details("cold_start_coverage").get("rows")
    if "label_consistency" in by:
        metrics["label_consistency"] = observed("label_consistency")
    if "knn_overlap" in by:
        metrics.update(drift_shared=details("knn_overlap").get("shared"), displacement=observed("displacement"),
                       knn_overlap=observed("knn_overlap"), classifier_auc=observed("classifier_auc"))
    return metrics


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    if value == 0 or 0.01 <= abs(value) < 1e4:
        return f"{value:.{digits}f}"
    return f"{value:.{digits - 1}e}"


def _fmt_pair(observed, bound) -> tuple[str, str]:
    # Enough digits that a coverage of 0.99998 does not read "1.00 < 1.00".
    for digits in (2, 3, 4, 6):
        a, b = _fmt(observed, digits), _fmt(bound, digits)
        if a != b:
            break
    return a, b


def _why(check: dict) -> str:
    """What a failing value means, in words a user can act on."""
    name, d, observed = check["name"], check.get("details") or {}, check["observed"]
    if name == "rows":
        return "too few vectors for pairwise checks"
    if name == "nonfinite_rows":
        return "vectors hold NaN or inf: the training diverged or read missing inputs"
    if name == "unknown_ids":
        return "ids missing from the catalogue at this cutoff: a join or an id format went wrong"
    if name == "coverage":
        return f"{d.get('missing')} of {d.get('rows')} catalogue products have no vector"
    if name == "cold_start_coverage":
        return f"{d.get('missing')} of {d.get('rows')} products listed since the previous cutoff have no vector"
    if name == "isotropy":
        if d.get("empty_blocks"):
            return f"{d['empty_blocks']} of {d['blocks']} modality blocks are empty at this cutoff"
        if d.get("constant_coordinates"):
            return f"{d['constant_coordinates']} of {d.get('directions')} coordinates are constant (dead dimensions)"
        return "some direction carries no variance: the vectors are rank-deficient"
    if name == "effective_rank":
        rank = d.get("effective_rank")
        return (f"the vectors use about {rank:.0f} of {d.get('directions')} dimensions" if rank is not None
                else "the spectrum is undefined")
    if name == "mean_pairwise_cosine":
        return "the vectors point the same way (collapse)"
    if name == "centred_energy":
        return "every vector is nearly the same vector (collapse)"
    if name == "duplicate_share":
        return "products share bit-identical vectors"
    if name == "label_consistency" and observed is not None:
        return f"about {observed * d.get('k', 10):.0f} of a product's {d.get('k', 10)} nearest neighbours share its category"
    if name == "displacement" and observed is not None:
        return (f"after the best rotation onto the snapshot it replaces, products moved {observed:.2f}x the "
                f"typical spread (a retrain without warm start, or different data)")
    if name == "knn_overlap" and observed is not None:
        return (f"products keep {observed:.0%} of their 10 nearest neighbours of the snapshot it replaces: "
                f"downstream neighbours and recommendations would change")
    if name == "classifier_auc":
        return "a classifier tells the new vectors from the replaced ones even after alignment"
    return ""


def _describe(check: dict) -> str:
    name, observed = check["name"], check["observed"]
    low, high = check["expected"]["min"], check["expected"]["max"]
    examples = f" (e.g. {', '.join(check['examples'])})" if check.get("examples") else ""
    if check.get("error"):
        return f"{name} error: {check['error']}"
    why = _why(check)
    why = f": {why}" if why else ""
    if name == "norm":
        return f"norm: {observed} rows outside [{_fmt(low)}, {_fmt(high)}]{examples}: zero or exploding vectors"
    if name == "dimension":
        other = (check.get("details") or {}).get("other_length_rows")
        extra = f" ({other} rows of another length{examples})" if other else ""
        return f"dimension {_fmt(observed)} != {_fmt(low)}{extra}"
    if observed is None:
        return f"{name} undefined"
    if low is not None and observed < low:
        return "{} {} below {}{}{}".format(name, *_fmt_pair(observed, low), why, examples)
    if high is not None and observed > high:
        return "{} {} above {}{}{}".format(name, *_fmt_pair(observed, high), why, examples)
    return f"{name} {_fmt(observed)} failed{examples}"


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
