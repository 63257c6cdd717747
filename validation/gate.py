"""The gate a snapshot passes before it may be served: metrics, then the GE suite.

`validate_embeddings` measures the table (`metrics.py`), lays the numbers out
as two small tables and runs them through the Great Expectations suite
(`suite.py`). The report goes into the snapshot's model card; a snapshot whose
report failed is kept for inspection but never served.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from prodvec.core.columns import PRODUCT_ID
from prodvec.core.embeddings import Embeddings
from prodvec.validation import suite
from prodvec.validation.metrics import COSINE_PAIRS, SVD_ROWS, compute_metrics


@dataclass(frozen=True)
class GateConfig:
    """Thresholds. The defaults pass any healthy trained embedding and refuse broken ones."""

    # Producers set their own: a clickstream family only covers clicked
    # products, fusion expects every product (1.0).
    min_coverage: float = 0.0
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
    # Only a rank-deficient matrix (a dead or duplicated dimension) fails;
    # trained embeddings are anisotropic, typically 0.01-0.5.
    min_isotropy: float = 1e-6
    # Off: product variants with identical text legitimately share a vector.
    max_duplicate_share: float = 1.0
    # Sample sizes that keep a 1M-row table to about a second.
    svd_rows: int = SVD_ROWS
    cosine_pairs: int = COSINE_PAIRS

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ValidationReport:
    """Outcome of the gate: metrics, one entry per GE expectation, and the verdict."""

    success: bool
    metrics: dict[str, float]
    checks: list[dict]
    config: dict = field(default_factory=dict)
    # Wall time of the validation; kept out of to_dict so model cards stay reproducible.
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [c["name"] for c in self.checks if not c["success"]]

    def summary(self) -> str:
        """One line: "passed 11/11: coverage 1.00, ..." or "FAILED mean_pairwise_cosine 0.99 > 0.90; ..."."""
        if self.success:
            m = self.metrics
            return (
                f"passed {len(self.checks)}/{len(self.checks)}: coverage {_fmt(m['coverage'])}, "
                f"isotropy {_fmt(m['isotropy'])}, mean cos {_fmt(m['mean_pairwise_cosine'])}"
            )
        return "FAILED " + "; ".join(_describe(c) for c in self.checks if not c["success"])

    def to_dict(self) -> dict:
        """A strictly JSON-serialisable dict (NaN and inf become null) for the model card."""
        return _json_ready(
            {
                "success": self.success,
                "summary": self.summary(),
                "metrics": self.metrics,
                "checks": self.checks,
                "config": self.config,
            }
        )


def validate_embeddings(
    emb: Embeddings,
    *,
    catalog_ids: np.ndarray,
    expected_dim: int,
    config: GateConfig = GateConfig(),
    seed: int = 0,
) -> ValidationReport:
    """Measure `emb` and run it through the GE suite; `seed` fixes the samples behind the metrics."""
    start = time.perf_counter()
    metrics, columns = compute_metrics(
        emb.vectors,
        emb.ids,
        catalog_ids,
        svd_rows=config.svd_rows,
        cosine_pairs=config.cosine_pairs,
        seed=seed,
    )
    rows = pd.DataFrame(
        {
            PRODUCT_ID: emb.ids,
            suite.DIM: np.full(len(emb), emb.dim, dtype=np.int64),
            suite.NONFINITE: (~columns["finite"]).astype(np.int64),
            suite.UNKNOWN: (~columns["known"]).astype(np.int64),
            suite.NORM: columns["norm"],
        }
    )
    summary = pd.DataFrame({name: [metrics[name]] for name in suite.SUMMARY_COLUMNS}, dtype=np.float64)
    params = {name: getattr(config, name) for name in suite.PARAMETERS if name != "expected_dim"}
    params["expected_dim"] = int(expected_dim)
    checks = suite.run_suite(rows, summary, params)
    success = len(checks) == len(suite.CHECKS) and all(c["success"] for c in checks)
    return ValidationReport(
        success=success,
        metrics=metrics,
        checks=checks,
        config={**config.to_dict(), "expected_dim": int(expected_dim), "seed": seed},
        seconds=time.perf_counter() - start,
    )


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


def _describe(check: dict) -> str:
    name, observed = check["name"], check["observed"]
    low, high = check["expected"]["min"], check["expected"]["max"]
    examples = f" (e.g. {', '.join(check['examples'])})" if check.get("examples") else ""
    if check.get("error"):
        return f"{name} error: {check['error']}"
    if name == "unique_ids":
        return f"unique_ids: {observed} rows share an id{examples}"
    if name == "norm":
        return f"norm: {observed} rows outside [{_fmt(low)}, {_fmt(high)}]{examples}"
    if name == "dimension":
        return f"dimension {_fmt(observed)} != {_fmt(low)}"
    if observed is None:
        return f"{name} undefined"
    if low is not None and observed < low:
        return "{} {} < {}{}".format(name, *_fmt_pair(observed, low), examples)
    if high is not None and observed > high:
        return "{} {} > {}{}".format(name, *_fmt_pair(observed, high), examples)
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
