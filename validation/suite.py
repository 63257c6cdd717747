"""The Great Expectations suite every snapshot is validated against.

Two tables go through it: one row per product (id, dimension, finiteness,
whether the id is in the catalogue, norm) and a one-row table of the
whole-matrix metrics. Thresholds are `$PARAMETER`s filled in at run time, so
one suite (and one ephemeral GE context, built on first use because GE takes
seconds to import and set up) serves every producer and config in a process.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np
import pandas as pd

from prodvec.core.columns import PRODUCT_ID

# -- per-row table ------------------------------------------------------------
DIM = "dim"
NONFINITE = "nonfinite"  # 1 when the row holds a NaN or an infinity
UNKNOWN = "unknown"  # 1 when the id is not in the catalogue
NORM = "norm"  # NaN for non-finite rows: those are counted by their own check
ROW_COLUMNS = (PRODUCT_ID, DIM, NONFINITE, UNKNOWN, NORM)

# -- one-row summary table ----------------------------------------------------
SUMMARY_COLUMNS = ("coverage", "isotropy", "mean_pairwise_cosine", "centred_energy", "duplicate_share")

# Check names in report order, and the run-time parameters they read.
CHECKS = (
    "rows",
    "unique_ids",
    "dimension",
    "nonfinite_rows",
    "unknown_ids",
    "norm",
    "coverage",
    "isotropy",
    "mean_pairwise_cosine",
    "centred_energy",
    "duplicate_share",
)
PARAMETERS = (
    "min_rows",
    "expected_dim",
    "max_nonfinite_rows",
    "max_unknown_ids",
    "min_norm",
    "max_norm",
    "min_coverage",
    "min_isotropy",
    "max_mean_pairwise_cosine",
    "min_centred_energy",
    "max_duplicate_share",
)
# How many offending product ids a failed row check names.
EXAMPLES = 5

_lock = threading.Lock()
_definitions: dict[str, Any] | None = None


def _p(name: str) -> dict:
    return {"$PARAMETER": name}


def _suites():
    """(name, expectations) of both suites; each expectation's meta names its check."""
    import great_expectations as gx

    e = gx.expectations

    def meta(check: str) -> dict:
        return {"check": check}

    rows = [
        e.ExpectTableRowCountToBeBetween(min_value=_p("min_rows"), meta=meta("rows")),
        e.ExpectColumnValuesToBeUnique(column=PRODUCT_ID, meta=meta("unique_ids")),
        e.ExpectColumnValuesToBeBetween(
            column=DIM, min_value=_p("expected_dim"), max_value=_p("expected_dim"), meta=meta("dimension")
        ),
        # Sums of 0/1 flags: the observed value is the count, compared with an exact limit.
        e.ExpectColumnSumToBeBetween(
            column=NONFINITE, max_value=_p("max_nonfinite_rows"), meta=meta("nonfinite_rows")
        ),
        e.ExpectColumnSumToBeBetween(column=UNKNOWN, max_value=_p("max_unknown_ids"), meta=meta("unknown_ids")),
        e.ExpectColumnValuesToBeBetween(
            column=NORM, min_value=_p("min_norm"), max_value=_p("max_norm"), meta=meta("norm")
        ),
    ]
    # The summary table has one row, so a column's min (or max) is the metric
    # itself. Min/Max rather than ValuesToBeBetween because GE skips a NaN as
    # "missing" there and passes, while an undefined metric must fail.
    summary = [
        e.ExpectColumnMinToBeBetween(
            column="coverage", min_value=_p("min_coverage"), max_value=1.0, meta=meta("coverage")
        ),
        e.ExpectColumnMinToBeBetween(column="isotropy", min_value=_p("min_isotropy"), meta=meta("isotropy")),
        e.ExpectColumnMaxToBeBetween(
            column="mean_pairwise_cosine",
            max_value=_p("max_mean_pairwise_cosine"),
            meta=meta("mean_pairwise_cosine"),
        ),
        e.ExpectColumnMinToBeBetween(
            column="centred_energy", min_value=_p("min_centred_energy"), meta=meta("centred_energy")
        ),
        e.ExpectColumnMaxToBeBetween(
            column="duplicate_share", max_value=_p("max_duplicate_share"), meta=meta("duplicate_share")
        ),
    ]
    return {"rows": rows, "summary": summary}


def _quiet() -> None:
    # GE logs at INFO/WARNING about stores and data docs that an ephemeral
    # context never uses; keep real errors.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def _validation_definitions() -> dict[str, Any]:
    """The two validation definitions, built once per process in one ephemeral context."""
    global _definitions
    with _lock:
        if _definitions is None:
            import great_expectations as gx

            _quiet()
            context = gx.get_context(mode="ephemeral")
            # Otherwise every run draws "Calculating Metrics" tqdm bars on stderr.
            context.variables.progress_bars = {"globally": False, "metric_calculations": False}
            source = context.data_sources.add_pandas("prodvec_validation")
            definitions = {}
            for table, expectations in _suites().items():
                batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("whole")
                suite = gx.ExpectationSuite(name=f"embedding_{table}", expectations=expectations)
                suite = context.suites.add(suite)
                definitions[table] = context.validation_definitions.add(
                    gx.ValidationDefinition(name=f"embedding_{table}", data=batch, suite=suite)
                )
            _definitions = definitions
        return _definitions


def _plain(value):
    """A JSON-ready copy of a GE value: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _bound(declared, params: dict):
    # From the suite's own declaration: GE hands substituted parameters back as
    # floats, which would print an expected dimension of 64 as 64.0.
    if isinstance(declared, dict) and "$PARAMETER" in declared:
        return _plain(params[declared["$PARAMETER"]])
    return _plain(declared)


def _check(result, table: pd.DataFrame, declared: dict, params: dict) -> dict:
    config = result.expectation_config
    name = config.meta["check"]
    out = dict(result.result or {})
    if "observed_value" in out:
        observed = _plain(out["observed_value"])
    else:
        observed = int(out.get("unexpected_count", 0))
    if name == "dimension":
        # Every row has the matrix's width: report it rather than a row count.
        observed = int(table[DIM].iloc[0]) if len(table) else None
    examples: list[str] = []
    if not result.success:
        if out.get("partial_unexpected_index_list"):
            examples = [str(row[PRODUCT_ID]) for row in out["partial_unexpected_index_list"]]
        elif name in ("nonfinite_rows", "unknown_ids") and len(table):
            flag = NONFINITE if name == "nonfinite_rows" else UNKNOWN
            examples = table.loc[table[flag].astype(bool), PRODUCT_ID].head(EXAMPLES).astype(str).tolist()
        examples = list(dict.fromkeys(examples))[:EXAMPLES]
    error = None
    if result.exception_info and result.exception_info.get("raised_exception"):
        error = str(result.exception_info.get("exception_message"))
    check = {
        "name": name,
        "success": bool(result.success),
        "observed": observed,
        "expected": {
            "min": _bound(declared.get("min_value"), params),
            "max": _bound(declared.get("max_value"), params),
        },
        "expectation": config.type,
        "examples": examples,
    }
    if error:
        check["error"] = error
    return check


def run_suite(rows: pd.DataFrame, summary: pd.DataFrame, params: dict[str, float]) -> list[dict]:
    """Validate both tables with GE and return one check dict per expectation, in `CHECKS` order.

    `rows` has `ROW_COLUMNS`, `summary` one row of `SUMMARY_COLUMNS`, `params`
    every name in `PARAMETERS`. Each check: name, success, observed (the
    metric, or for per-row checks the number of offending rows), expected
    ({"min", "max"}), expectation (the GE type) and examples (offending ids).
    """
    missing = [p for p in PARAMETERS if p not in params]
    if missing:
        raise KeyError(f"validation suite: missing parameters {missing}")
    definitions = _validation_definitions()
    checks: dict[str, dict] = {}
    # The index columns make GE name the offending product ids, not row numbers.
    formats = {
        "rows": {"result_format": "SUMMARY", "unexpected_index_column_names": [PRODUCT_ID]},
        "summary": {"result_format": "SUMMARY"},
    }
    for table_name, table in (("rows", rows), ("summary", summary)):
        result = definitions[table_name].run(
            batch_parameters={"dataframe": table},
            expectation_parameters={k: _plain(v) for k, v in params.items()},
            result_format=formats[table_name],
        )
        suite_expectations = definitions[table_name].suite.expectations
        declared = {e.meta["check"]: e.configuration.kwargs for e in suite_expectations}
        for expectation_result in result.results:
            name = expectation_result.expectation_config.meta["check"]
            check = _check(expectation_result, table, declared[name], params)
            checks[check["name"]] = check
    return [checks[name] for name in CHECKS if name in checks]
