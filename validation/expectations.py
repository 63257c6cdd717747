"""Great Expectations expectations for an embedding column: usable in any GX 1.x suite.

GX has no expectations for vectors, and its built-ins break on list columns
(they compare, sort or hash the cells). These classes take a pandas column
whose cells are 1-d vectors (numpy arrays or lists; None/NaN = no vector)
and measure it as a matrix: every metric provider stacks the non-missing
cells once (`embedding_matrix`, cached per column object) and hands the
matrix to plain numpy (`metrics.py`, `neighbours.py`, `drift.py`). So a
suite over an embedding table reads like any other GX suite::

    import great_expectations as gx
    import prodvec.validation.expectations as ev      # registers the expectations and their metrics

    suite = gx.ExpectationSuite("products", expectations=[
        ev.ExpectColumnEmbeddingDimensionToEqual(column="embedding", value=64),
        ev.ExpectColumnEmbeddingEffectiveRankShareToBeAbove(column="embedding", min_value=0.2),
        ev.ExpectColumnEmbeddingKnnOverlapToBeAbove(column="embedding", reference_column="served",
                                                    min_value=0.3),
    ])

Each expectation reports one number as `observed_value` (compared with
`min_value`/`max_value`, which may be `{"$PARAMETER": name}`) and the rest
of what its metric measured under `details` (e.g. sigma_min and sigma_max
beside isotropy). Pandas execution engine only. Warn-vs-fail levels are GX's
own `severity` field: the same expectation twice, once with
`severity="warning"` at the warn level and once critical at the fail level.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Optional, Tuple, Union

import numpy as np
import pandas as pd

from great_expectations.compatibility import pydantic
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.core.types import Comparable
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnAggregateExpectation
from great_expectations.expectations.metrics.column_aggregate_metric_provider import ColumnAggregateMetricProvider
from great_expectations.expectations.metrics.metric_provider import metric_value

from prodvec.validation import drift as drift_measures
from prodvec.validation.metrics import (
    plain,
    COSINE_PAIRS,
    SVD_ROWS,
    centred_energy,
    constant_coordinates,
    duplicate_share,
    effective_rank,
    empty_blocks,
    mean_pairwise_cosine,
    singular_values,
)
from prodvec.validation.neighbours import label_consistency

# A setting that may also be filled in at run time ({"$PARAMETER": name}).
Setting = Union[int, float, str, SuiteParameterDict, None]

# How many offending row labels (index values) a failed row-level check names.
EXAMPLES = 5

_cache: dict[str, Any] = {"cells": None, "value": None}


def present(column: pd.Series) -> np.ndarray:
    """Which cells hold a vector (not None / NaN)."""
    return column.notna().to_numpy()


def embedding_matrix(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(matrix of the cells that hold a vector, their row positions); cells of another length are left out.

    Stacking an object column costs a pass over its cells, and every metric
    of a suite needs it, so the last stacked column is kept (keyed by the
    identity of its cell array, which GX passes unchanged between metrics).
    """
    cells = column.to_numpy()
    if _cache["cells"] is cells:
        return _cache["value"]
    rows = np.flatnonzero(present(column))
    if len(rows) == 0:
        value = (np.zeros((0, 0), dtype=np.float32), rows)
    else:
        lengths = np.fromiter((len(cells[i]) for i in rows), dtype=np.int64, count=len(rows))
        dim = int(np.bincount(lengths).argmax())
        rows = rows[lengths == dim]
        matrix = np.stack([np.asarray(cells[i], dtype=np.float32) for i in rows]) if len(rows) else \
            np.zeros((0, dim), dtype=np.float32)
        value = (matrix, rows)
    _cache["cells"], _cache["value"] = cells, value
    return value


def _examples(index: pd.Index, positions: np.ndarray) -> list[str]:
    return [str(v) for v in index[positions[:EXAMPLES]]]


# -- metrics ----------------------------------------------------------------------------------------------------


class _EmbeddingMetric(ColumnAggregateMetricProvider):
    """A metric over the whole (row-conditioned) table, so it may read a second column."""

    @classmethod
    def _measure(cls, table: pd.DataFrame, column: str, **kwargs) -> dict:
        raise NotImplementedError

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        table, _, accessor = execution_engine.get_compute_domain(metric_domain_kwargs,
                                                                 domain_type=MetricDomainTypes.COLUMN)
        return {k: plain(v) if not isinstance(v, (list, dict)) else v
                for k, v in cls._measure(table, accessor["column"], **metric_value_kwargs).items()}


class EmbeddingShape(_EmbeddingMetric):
    """rows with a vector, their dimension (the most common length) and rows of another length."""

    metric_name = "column.embedding.shape"
    value_keys = ()

    @classmethod
    def _measure(cls, table, column, **kwargs):
        series = table[column]
        matrix, rows = embedding_matrix(series)
        have = np.flatnonzero(present(series))
        odd = np.setdiff1d(have, rows)
        return {"rows": int(len(rows)), "dim": int(matrix.shape[1]) if len(have) else None,
                "other_length_rows": int(len(odd)), "examples": _examples(table.index, odd)}


class EmbeddingNonfinite(_EmbeddingMetric):
    metric_name = "column.embedding.nonfinite"
    value_keys = ()

    @classmethod
    def _measure(cls, table, column, **kwargs):
        matrix, rows = embedding_matrix(table[column])
        bad = rows[~np.isfinite(matrix).all(axis=1)] if len(rows) else rows
        return {"count": int(len(bad)), "examples": _examples(table.index, bad)}


class EmbeddingNorms(_EmbeddingMetric):
    metric_name = "column.embedding.norms"
    value_keys = ("min_norm", "max_norm")

    @classmethod
    def _measure(cls, table, column, min_norm=None, max_norm=None, **kwargs):
        matrix, rows = embedding_matrix(table[column])
        finite = np.isfinite(matrix).all(axis=1)
        norm = np.linalg.norm(matrix[finite].astype(np.float64), axis=1)
        outside = np.zeros(len(norm), dtype=bool)
        if min_norm is not None:
            outside |= norm < float(min_norm)
        if max_norm is not None:
            outside |= norm > float(max_norm)
        return {"count": int(outside.sum()), "min": float(norm.min()) if len(norm) else None,
                "max": float(norm.max()) if len(norm) else None, "mean": float(norm.mean()) if len(norm) else None,
                "examples": _examples(table.index, rows[finite][outside])}


class EmbeddingSpectrum(_EmbeddingMetric):
    """Isotropy (sigma_min / sigma_max), effective rank, and what makes a direction dead."""

    metric_name = "column.embedding.spectrum"
    value_keys = ("max_rows", "seed", "block_widths")
    default_kwarg_values = {"max_rows": SVD_ROWS, "seed": 0, "block_widths": None}

    @classmethod
    def _measure(cls, table, column, max_rows=SVD_ROWS, seed=0, block_widths=None, **kwargs):
        matrix, _ = embedding_matrix(table[column])
        finite = np.flatnonzero(np.isfinite(matrix).all(axis=1))
        sigma = singular_values(matrix, max_rows=int(max_rows), seed=int(seed), rows=finite)
        erank = effective_rank(sigma)
        widths = [int(w) for w in str(block_widths).split(",")] if block_widths else []
        return {
            "isotropy": (float(sigma[-1] / sigma[0]) if sigma[0] > 0 else 0.0) if len(sigma) else None,
            "sigma_min": float(sigma[-1]) if len(sigma) else None,
            "sigma_max": float(sigma[0]) if len(sigma) else None,
            "effective_rank": erank,
            "effective_rank_share": erank / len(sigma) if len(sigma) else None,
            "directions": int(len(sigma)),
            "constant_coordinates": constant_coordinates(matrix, max_rows=int(max_rows), seed=int(seed),
                                                         rows=finite),
            "blocks": len(widths),
            "empty_blocks": empty_blocks(matrix, widths, finite) if widths else 0,
        }


class EmbeddingMeanCosine(_EmbeddingMetric):
    metric_name = "column.embedding.mean_cosine"
    value_keys = ("pairs", "seed")
    default_kwarg_values = {"pairs": COSINE_PAIRS, "seed": 0}

    @classmethod
    def _measure(cls, table, column, pairs=COSINE_PAIRS, seed=0, **kwargs):
        matrix, _ = embedding_matrix(table[column])
        finite = np.flatnonzero(np.isfinite(matrix).all(axis=1))
        return {"mean_cosine": mean_pairwise_cosine(matrix, int(pairs), int(seed), rows=finite), "pairs": int(pairs)}


class EmbeddingSpread(_EmbeddingMetric):
    """Centred energy (0 when all rows are one vector) and the share of rows duplicating another row."""

    metric_name = "column.embedding.spread"
    value_keys = ()

    @classmethod
    def _measure(cls, table, column, **kwargs):
        matrix, _ = embedding_matrix(table[column])
        finite = matrix[np.isfinite(matrix).all(axis=1)] if len(matrix) else matrix
        return {"centred_energy": centred_energy(finite) if len(finite) else None,
                "duplicate_share": duplicate_share(finite) if len(finite) else 0.0}


class EmbeddingCoverage(_EmbeddingMetric):
    """Share of rows (of the cohort rows, when `cohort_column` names a boolean column) that hold a vector."""

    metric_name = "column.embedding.coverage"
    value_keys = ("cohort_column",)
    default_kwarg_values = {"cohort_column": None}

    @classmethod
    def _measure(cls, table, column, cohort_column=None, **kwargs):
        have = present(table[column])
        cohort = table[cohort_column].fillna(False).to_numpy(dtype=bool) if cohort_column else np.ones(len(have), bool)
        missing = np.flatnonzero(cohort & ~have)
        n = int(cohort.sum())
        return {"coverage": float((cohort & have).sum() / n) if n else None, "rows": n,
                "missing": int(len(missing)), "examples": _examples(table.index, missing)}


class EmbeddingLabelConsistency(_EmbeddingMetric):
    metric_name = "column.embedding.label_consistency"
    value_keys = ("label_column", "k", "sample", "seed")
    default_kwarg_values = {"k": 10, "sample": 2000, "seed": 0}

    @classmethod
    def _measure(cls, table, column, label_column=None, k=10, sample=2000, seed=0, **kwargs):
        matrix, rows = embedding_matrix(table[column])
        labels = table[label_column].to_numpy(dtype=object)[rows]
        finite = np.isfinite(matrix).all(axis=1)
        value = label_consistency(matrix[finite], labels[finite], int(k), int(sample), int(seed))
        return {"consistency": value, "k": int(k), "labels": int(pd.Series(labels).nunique())}


class EmbeddingDrift(_EmbeddingMetric):
    """Rotation-aware drift between `column` and `reference_column` over rows holding both (see drift.py)."""

    metric_name = "column.embedding.drift"
    value_keys = ("reference_column", "k", "queries", "max_rows", "seed")
    default_kwarg_values = {"k": 10, "queries": drift_measures.QUERIES, "max_rows": drift_measures.MAX_ROWS,
                            "seed": 0}

    @classmethod
    def _measure(cls, table, column, reference_column=None, k=10, queries=drift_measures.QUERIES,
                 max_rows=drift_measures.MAX_ROWS, seed=0, **kwargs):
        both = table[present(table[column]) & present(table[reference_column])]
        new = np.stack([np.asarray(v, dtype=np.float64) for v in both[column]]) if len(both) else np.zeros((0, 0))
        old = np.stack([np.asarray(v, dtype=np.float64) for v in both[reference_column]]) if len(both) else new
        keep = np.isfinite(new).all(axis=1) & np.isfinite(old).all(axis=1) if len(both) else np.zeros(0, bool)
        return drift_measures.drift(new[keep], old[keep], k=int(k), queries=int(queries), max_rows=int(max_rows),
                                    seed=int(seed))


# -- expectations ----------------------------------------------------------------------------------------------


class _EmbeddingExpectation(ColumnAggregateExpectation):
    """One number out of an embedding metric, compared with min_value / max_value (inclusive)."""

    min_value: Optional[Comparable] = pydantic.Field(default=None, description="Lowest passing value.")
    max_value: Optional[Comparable] = pydantic.Field(default=None, description="Highest passing value.")

    # Which key of the metric's dict is the observed value.
    observed_key: ClassVar[str] = ""
    success_keys: ClassVar[Tuple[str, ...]] = ("min_value", "max_value")
    args_keys: ClassVar[Tuple[str, ...]] = ("column", "min_value", "max_value")

    def _validate(self, metrics: Dict, runtime_configuration: Optional[dict] = None, execution_engine=None):
        measured = dict(metrics[self.metric_dependencies[0]] or {})
        observed = measured.get(self.observed_key)
        outcome = self._validate_metric_value_between(
            metric_name="observed", metrics={"observed": observed}, runtime_configuration=runtime_configuration,
            execution_engine=execution_engine)
        outcome["result"]["details"] = measured
        return outcome


class ExpectColumnEmbeddingDimensionToEqual(_EmbeddingExpectation):
    """Every vector in the column has length `value`."""

    value: Comparable = pydantic.Field(description="The dimension every vector must have.")
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.shape",)
    success_keys: ClassVar[Tuple[str, ...]] = ("value",)
    args_keys: ClassVar[Tuple[str, ...]] = ("column", "value")

    def _validate(self, metrics: Dict, runtime_configuration: Optional[dict] = None, execution_engine=None):
        shape = dict(metrics["column.embedding.shape"])
        expected = self._get_success_kwargs().get("value")
        success = shape["dim"] is not None and int(shape["dim"]) == int(expected) and shape["other_length_rows"] == 0
        return {"success": bool(success), "result": {"observed_value": shape["dim"], "details": shape}}


class ExpectColumnEmbeddingValuesToBeFinite(_EmbeddingExpectation):
    """At most `max_value` vectors (default 0) hold a NaN or an infinity."""

    max_value: Optional[Comparable] = 0
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.nonfinite",)
    observed_key: ClassVar[str] = "count"


class ExpectColumnEmbeddingNormsToBeBetween(_EmbeddingExpectation):
    """Every finite vector's L2 norm lies in [min_norm, max_norm]; observed: how many do not (at most max_value)."""

    min_norm: Optional[Comparable] = None
    max_norm: Optional[Comparable] = None
    max_value: Optional[Comparable] = 0
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.norms",)
    success_keys: ClassVar[Tuple[str, ...]] = ("min_value", "max_value", "min_norm", "max_norm")
    observed_key: ClassVar[str] = "count"


class _SpectrumExpectation(_EmbeddingExpectation):
    max_rows: Setting = SVD_ROWS
    seed: Setting = 0
    # Comma-separated widths of concatenated blocks (e.g. one per modality), to name empty ones.
    block_widths: Setting = None
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.spectrum",)
    success_keys: ClassVar[Tuple[str, ...]] = ("min_value", "max_value", "max_rows", "seed", "block_widths")


class ExpectColumnEmbeddingIsotropyToBeBetween(_SpectrumExpectation):
    """sigma_min / sigma_max of the centred matrix: 0 when some direction is dead (rank-deficient)."""

    observed_key: ClassVar[str] = "isotropy"


class ExpectColumnEmbeddingEffectiveRankShareToBeBetween(_SpectrumExpectation):
    """Effective rank (exp of the entropy of the normalised singular values) as a share of the dimension."""

    observed_key: ClassVar[str] = "effective_rank_share"


class ExpectColumnEmbeddingMeanCosineToBeBetween(_EmbeddingExpectation):
    """Mean cosine of seeded random pairs of rows: near 1 when the vectors collapse onto one direction."""

    pairs: Setting = COSINE_PAIRS
    seed: Setting = 0
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.mean_cosine",)
    success_keys: ClassVar[Tuple[str, ...]] = ("min_value", "max_value", "pairs", "seed")
    observed_key: ClassVar[str] = "mean_cosine"


class ExpectColumnEmbeddingRowCountToBeBetween(_EmbeddingExpectation):
    """How many rows hold a vector (of the column's dimension)."""

    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.shape",)
    observed_key: ClassVar[str] = "rows"


class ExpectColumnEmbeddingCentredEnergyToBeBetween(_EmbeddingExpectation):
    """mean ||x - mean||^2 / mean ||x||^2: near 0 when every vector is one vector plus noise (collapse)."""

    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.spread",)
    observed_key: ClassVar[str] = "centred_energy"


class ExpectColumnEmbeddingDuplicateShareToBeBetween(_EmbeddingExpectation):
    """Share of rows whose vector equals another row's exactly."""

    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.spread",)
    observed_key: ClassVar[str] = "duplicate_share"


class ExpectColumnEmbeddingCoverageToBeBetween(_EmbeddingExpectation):
    """Share of rows holding a vector; with `cohort_column`, of the rows where that boolean column is true."""

    cohort_column: Optional[str] = None
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.coverage",)
    success_keys: ClassVar[Tuple[str, ...]] = ("min_value", "max_value", "cohort_column")
    observed_key: ClassVar[str] = "coverage"


class ExpectColumnEmbeddingLabelConsistencyToBeBetween(_EmbeddingExpectation):
    """Mean share of a row's k nearest neighbours (cosine) that carry its label in `label_column`."""

    label_column: str
    k: Setting = 10
    sample: Setting = 2000
    seed: Setting = 0
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.label_consistency",)
    success_keys: ClassVar[Tuple[str, ...]] = ("min_value", "max_value", "label_column", "k", "sample", "seed")
    observed_key: ClassVar[str] = "consistency"


class _DriftExpectation(_EmbeddingExpectation):
    reference_column: str
    k: Setting = 10
    queries: Setting = drift_measures.QUERIES
    max_rows: Setting = drift_measures.MAX_ROWS
    seed: Setting = 0
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("column.embedding.drift",)
    success_keys: ClassVar[Tuple[str, ...]] = ("min_value", "max_value", "reference_column", "k", "queries",
                                               "max_rows", "seed")


class ExpectColumnEmbeddingDisplacementToBeBetween(_DriftExpectation):
    """Mean Procrustes-aligned distance between a row's vector and its reference, in units of the reference's spread."""

    observed_key: ClassVar[str] = "displacement"


class ExpectColumnEmbeddingKnnOverlapToBeBetween(_DriftExpectation):
    """Mean Jaccard overlap of each row's k nearest neighbours in `column` and in `reference_column`."""

    observed_key: ClassVar[str] = "knn_overlap"


class ExpectColumnEmbeddingClassifierAucToBeBetween(_DriftExpectation):
    """ROC-AUC of a classifier telling aligned vectors from their references (0.5: indistinguishable)."""

    observed_key: ClassVar[str] = "classifier_auc"
