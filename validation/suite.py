"""The Great Expectations suite every snapshot is validated against.

One table goes through it: one row per product (the catalogue at the cutoff,
plus any id the snapshot has that the catalogue lacks), indexed by product
id, with the snapshot's vector in `embedding` (None where it has none). The
embedding column is an object column of float32 arrays (views into the
snapshot's matrix, so building it copies nothing): GX's built-ins break on
such a column, so every check on it is one of this project's embedding
expectations (`expectations.py`), which stack it back into a matrix once.
Beside it: `in_catalogue` and `unknown` flags, `new` (listed since the
previous snapshot's cutoff: the cold-start cohort), a `label` (the category)
for neighbourhood consistency, and `reference`, the vector of the snapshot
this one replaces, for the drift checks.

Thresholds are `$PARAMETER`s filled in at run time, so one suite serves every
family and config. Optional parts (cold start, labels, drift) exist only
when there is something to compare, so the suite is built per combination of
parts, once per process per context: creating a GX context takes seconds.
With a `docs_root`, the context is file-backed there and every run stores
its result and rebuilds that page of GX's Data Docs (HTML).
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from prodvec.core.columns import PRODUCT_ID
from prodvec.core.home_lock import locked
from prodvec.validation.metrics import plain

# -- the batch table ------------------------------------------------------------------------------------------
EMBEDDING = "embedding"
REFERENCE = "reference"
LABEL = "label"
IN_CATALOGUE = "in_catalogue"
UNKNOWN = "unknown"  # 1 when the row has a vector but its id is not in the catalogue
NEW = "new"  # listed since the previous snapshot's cutoff

SOURCE, ASSET = "prodvec_validation", "snapshot"
CORE, COLD_START, LABELS, DRIFT = "core", "cold_start", "labels", "drift"

CRITICAL, WARNING = "critical", "warning"


@dataclass(frozen=True)
class Check:
    """One expectation of the suite: its check name, part, severity, GX class name and keyword arguments."""

    name: str
    part: str
    severity: str
    expectation: str
    kwargs: dict
    # Which of the expectation's kwargs bounds the observed value (for messages): "min" or "max".
    bound: str = "min"


def _p(name: str) -> dict:
    return {"$PARAMETER": name}


# Report order. Warn levels are the same expectation again with GX's severity "warning".
CHECK_SPECS = (
    Check("rows", CORE, CRITICAL, "ExpectColumnEmbeddingRowCountToBeBetween", {"min_value": _p("min_rows")}),
    Check("dimension", CORE, CRITICAL, "ExpectColumnEmbeddingDimensionToEqual", {"value": _p("expected_dim")},
          bound="value"),
    Check("nonfinite_rows", CORE, CRITICAL, "ExpectColumnEmbeddingValuesToBeFinite",
          {"max_value": _p("max_nonfinite_rows")}, bound="max"),
    Check("unknown_ids", CORE, CRITICAL, "ExpectColumnSumToBeBetween",
          {"column": UNKNOWN, "max_value": _p("max_unknown_ids")}, bound="max"),
    Check("norm", CORE, CRITICAL, "ExpectColumnEmbeddingNormsToBeBetween",
          {"min_norm": _p("min_norm"), "max_norm": _p("max_norm"), "max_value": 0}, bound="max"),
    Check("coverage", CORE, CRITICAL, "ExpectColumnEmbeddingCoverageToBeBetween",
          {"cohort_column": IN_CATALOGUE, "min_value": _p("min_coverage")}),
    Check("cold_start_coverage", COLD_START, CRITICAL, "ExpectColumnEmbeddingCoverageToBeBetween",
          {"cohort_column": NEW, "min_value": _p("min_cold_start_coverage")}),
    Check("isotropy", CORE, CRITICAL, "ExpectColumnEmbeddingIsotropyToBeBetween",
          {"min_value": _p("min_isotropy"), "max_rows": _p("svd_rows"), "seed": _p("seed"),
           "block_widths": _p("block_widths")}),
    Check("effective_rank", CORE, WARNING, "ExpectColumnEmbeddingEffectiveRankShareToBeBetween",
          {"min_value": _p("warn_effective_rank"), "max_rows": _p("svd_rows"), "seed": _p("seed"),
           "block_widths": _p("block_widths")}),
    Check("effective_rank", CORE, CRITICAL, "ExpectColumnEmbeddingEffectiveRankShareToBeBetween",
          {"min_value": _p("min_effective_rank"), "max_rows": _p("svd_rows"), "seed": _p("seed"),
           "block_widths": _p("block_widths")}),
    Check("mean_pairwise_cosine", CORE, CRITICAL, "ExpectColumnEmbeddingMeanCosineToBeBetween",
          {"max_value": _p("max_mean_pairwise_cosine"), "pairs": _p("cosine_pairs"), "seed": _p("seed")},
          bound="max"),
    Check("centred_energy", CORE, CRITICAL, "ExpectColumnEmbeddingCentredEnergyToBeBetween",
          {"min_value": _p("min_centred_energy")}),
    Check("duplicate_share", CORE, CRITICAL, "ExpectColumnEmbeddingDuplicateShareToBeBetween",
          {"max_value": _p("max_duplicate_share")}, bound="max"),
    Check("label_consistency", LABELS, WARNING, "ExpectColumnEmbeddingLabelConsistencyToBeBetween",
          {"label_column": LABEL, "min_value": _p("warn_label_consistency"), "seed": _p("seed")}),
    Check("displacement", DRIFT, WARNING, "ExpectColumnEmbeddingDisplacementToBeBetween",
          {"reference_column": REFERENCE, "max_value": _p("warn_displacement"), "seed": _p("seed")}, bound="max"),
    Check("displacement", DRIFT, CRITICAL, "ExpectColumnEmbeddingDisplacementToBeBetween",
          {"reference_column": REFERENCE, "max_value": _p("max_displacement"), "seed": _p("seed")}, bound="max"),
    Check("knn_overlap", DRIFT, WARNING, "ExpectColumnEmbeddingKnnOverlapToBeBetween",
          {"reference_column": REFERENCE, "min_value": _p("warn_knn_overlap"), "seed": _p("seed")}),
    Check("knn_overlap", DRIFT, CRITICAL, "ExpectColumnEmbeddingKnnOverlapToBeBetween",
          {"reference_column": REFERENCE, "min_value": _p("min_knn_overlap"), "seed": _p("seed")}),
    Check("classifier_auc", DRIFT, WARNING, "ExpectColumnEmbeddingClassifierAucToBeBetween",
          {"reference_column": REFERENCE, "max_value": _p("warn_classifier_auc"), "seed": _p("seed")},
          bound="max"),
    Check("classifier_auc", DRIFT, CRITICAL, "ExpectColumnEmbeddingClassifierAucToBeBetween",
          {"reference_column": REFERENCE, "max_value": _p("max_classifier_auc"), "seed": _p("seed")},
          bound="max"),
)
CHECKS = tuple(dict.fromkeys(c.name for c in CHECK_SPECS))
PARAMETERS = tuple(dict.fromkeys(v["$PARAMETER"] for c in CHECK_SPECS for v in c.kwargs.values()
                                 if isinstance(v, dict)))

_lock = threading.Lock()
# Across processes (families validated side by side, `prodvec.family_pool`): GX's file context rewrites
# shared files (suites, validation definitions, its yml, the Data Docs site) and checks that what it
# saved is still what is on disk, so one process at a time works in a root.
_ROOT_LOCK = ".gx.lock"
_contexts: dict[str, Any] = {}
_definitions: dict[tuple[str, frozenset], Any] = {}
_sources: dict[tuple[int, str], Any] = {}


def suite_name(parts: frozenset) -> str:
    return "_".join(["embedding_snapshot"] + [p for p in (COLD_START, LABELS, DRIFT) if p in parts])


def _expectation(spec: Check):
    import great_expectations as gx

    from prodvec.validation import expectations as ev

    cls = getattr(ev, spec.expectation, None) or getattr(gx.expectations, spec.expectation)
    kwargs = dict(spec.kwargs)
    kwargs.setdefault("column", EMBEDDING)
    return cls(**kwargs, severity=spec.severity, meta={"check": spec.name, "severity": spec.severity})


def root_lock(docs_root: Path | None):
    """Hold `docs_root`'s lock for the block (nothing to hold for an ephemeral context)."""
    if docs_root is None:
        return nullcontext()
    Path(docs_root).mkdir(parents=True, exist_ok=True)
    return locked(Path(docs_root) / _ROOT_LOCK, f"the validation store {docs_root}", wait=float("inf"))


def _quiet() -> None:
    # GE logs at INFO/WARNING about stores and data docs; keep real errors.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def _context(docs_root: Path | None):
    """One GX context per process and root (ephemeral without a root): creating one takes seconds."""
    import great_expectations as gx

    key = str(Path(docs_root).resolve()) if docs_root else ""
    if key not in _contexts:
        _quiet()
        if docs_root:
            Path(docs_root).mkdir(parents=True, exist_ok=True)
            context = gx.get_context(mode="file", project_root_dir=str(docs_root))
        else:
            context = gx.get_context(mode="ephemeral")
        # Otherwise every run draws "Calculating Metrics" tqdm bars on stderr.
        context.variables.progress_bars = {"globally": False, "metric_calculations": False}
        _contexts[key] = context
    return _contexts[key]


def _definition(docs_root: Path | None, parts: frozenset):
    """The validation definition of the suite for `parts`, made (or replaced) once per process and root
    (and again when another process replaced it in the root)."""
    import great_expectations as gx

    key = (str(Path(docs_root).resolve()) if docs_root else "", parts)
    if key in _definitions and docs_root and not _definitions[key].is_fresh().success:
        # Another process (families validated side by side) saved the suite since: make ours again.
        del _definitions[key]
        _sources.pop((id(_context(docs_root)), SOURCE), None)
    if key not in _definitions:
        context = _context(docs_root)
        batch = whole_dataframe(context, SOURCE, ASSET)
        name = suite_name(parts)
        suite = context.suites.add_or_update(
            gx.ExpectationSuite(name=name, expectations=[_expectation(c) for c in CHECK_SPECS if c.part in parts]))
        _definitions[key] = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=suite))
    return _definitions[key]


def whole_dataframe(context, source_name: str, asset_name: str):
    """The batch definition "whole" of a pandas dataframe asset, made on first use (kept in a file context)."""
    key = (id(context), source_name)
    if key not in _sources:
        # A data source read back from an earlier process's file context is
        # not bound to this context (GX raises MissingDataContextError on
        # its batches); dataframe sources hold nothing, so make it afresh.
        try:
            context.data_sources.delete(source_name)
        except Exception:  # not there yet
            pass
        _sources[key] = context.data_sources.add_pandas(source_name)
    source = _sources[key]
    asset = next((a for a in source.assets if a.name == asset_name), None) or source.add_dataframe_asset(asset_name)
    return next((b for b in asset.batch_definitions if b.name == "whole"), None) or \
        asset.add_batch_definition_whole_dataframe("whole")


def _check(result, spec: Check, params: dict) -> dict:
    out = dict(result.result or {})
    details = {k: plain(v) for k, v in (out.get("details") or {}).items() if k != "examples"}
    examples = list((out.get("details") or {}).get("examples") or [])
    if spec.name == "unknown_ids" and out.get("partial_unexpected_index_list"):
        examples = [str(v) for v in out["partial_unexpected_index_list"]]
    bound = spec.kwargs.get({"min": "min_value", "max": "max_value", "value": "value"}[spec.bound])
    limit = plain(params[bound["$PARAMETER"]]) if isinstance(bound, dict) else plain(bound)
    check = {
        "name": spec.name,
        "severity": spec.severity,
        "success": bool(result.success),
        "observed": plain(out.get("observed_value")),
        "expected": {"min": limit if spec.bound in ("min", "value") else None,
                     "max": limit if spec.bound in ("max", "value") else None},
        "expectation": result.expectation_config.type,
        "examples": examples[:5],
    }
    if details:
        check["details"] = details
    if result.exception_info and result.exception_info.get("raised_exception"):
        check["error"] = str(result.exception_info.get("exception_message"))
    return check


def run_suite(table: pd.DataFrame, params: dict[str, Any], parts: frozenset = frozenset({CORE}), *,
              docs_root: Path | None = None, run_name: str | None = None) -> tuple[list[dict], str | None]:
    """Validate `table` (see module doc) with the suite for `parts`; (one check dict per expectation, docs page).

    Each check: name, severity, success, observed, expected ({"min", "max"}),
    expectation (the GX type), examples (offending ids) and details (the
    rest its metric measured). The docs page is the path of the run's Data
    Docs HTML when `docs_root` is given, else None.
    """
    parts = frozenset(parts) | {CORE}
    specs = [c for c in CHECK_SPECS if c.part in parts]
    needed = {v["$PARAMETER"] for c in specs for v in c.kwargs.values() if isinstance(v, dict)}
    missing = sorted(needed - set(params))
    if missing:
        raise KeyError(f"validation suite: missing parameters {missing}")
    from great_expectations.core.run_identifier import RunIdentifier

    with _lock, root_lock(docs_root):
        definition = _definition(docs_root, parts)
        result = definition.run(
            batch_parameters={"dataframe": table},
            expectation_parameters={k: plain(params[k]) for k in needed},
            result_format={"result_format": "SUMMARY", "unexpected_index_column_names": [PRODUCT_ID]},
            run_id=RunIdentifier(run_name=run_name) if run_name else None,
        )
        page = _build_docs(docs_root, definition, result) if docs_root else None
    by_key = {(r.expectation_config.meta["check"], r.expectation_config.meta["severity"]): r for r in result.results}
    checks = [_check(by_key[(c.name, c.severity)], c, params) for c in specs if (c.name, c.severity) in by_key]
    return checks, page


def _build_docs(docs_root: Path, definition, result) -> str | None:
    """Render this run's Data Docs page (and the index); the page's path."""
    # GX names a whole-dataframe batch "<data source>-<asset>".
    return build_docs_page(docs_root, definition.suite.name, result, f"{SOURCE}-{ASSET}")


def build_docs_page(docs_root: Path, suite: str, result, batch_identifier: str) -> str | None:
    """Render the Data Docs page of one stored validation result (and the index); the page's path."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = _context(docs_root)
    identifier = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite),
        run_id=result.meta["run_id"],
        batch_identifier=batch_identifier,
    )
    # The page only: rebuilding the index re-renders it from every stored result
    # (seconds); `refresh_index` does that once per command, not per snapshot.
    context.build_data_docs(resource_identifiers=[identifier], build_index=False)
    urls = context.get_docs_sites_urls(resource_identifier=identifier)
    url = urls[0]["site_url"] if urls else None
    return url[len("file://"):] if url and url.startswith("file://") else url


def refresh_index(docs_root: Path) -> Path:
    """Rebuild the Data Docs index page (every stored run) without re-rendering any run's page."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    with _lock, root_lock(docs_root):
        context = _context(docs_root)
        # GX renders every stored result when given no identifiers; one that matches nothing renders none.
        context.build_data_docs(resource_identifiers=[ExpectationSuiteIdentifier(name="__index_only__")],
                                build_index=True)
    return docs_index(docs_root)


def docs_index(docs_root: Path) -> Path:
    """Where GX's Data Docs site for `docs_root` starts (index.html)."""
    return Path(docs_root) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
