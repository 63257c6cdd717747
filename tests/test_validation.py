"""The validation gate: healthy embeddings pass, each kind of broken one is refused by name."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from prodvec.core.embeddings import Embeddings
from prodvec.validation import (
    GateConfig,
    centred_energy,
    isotropy,
    mean_pairwise_cosine,
    validate_embeddings,
)
from prodvec.validation import suite

DIM = 32


def make_ids(n: int) -> np.ndarray:
    return np.array([f"p{i:05d}" for i in range(n)])


def embeddings(vectors: np.ndarray) -> Embeddings:
    return Embeddings(make_ids(len(vectors)), vectors)


def gaussian(n: int = 2000, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def trained_like(n: int = 2000, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Anisotropic (decaying spectrum, a few clusters) with a shared offset, like a real model's output."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, dim)) * 2
    x = centres[rng.integers(0, 8, n)] + rng.standard_normal((n, dim)) * np.exp(-np.arange(dim) / 8)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (x @ rotation + 1.0).astype(np.float32)


def collapsed(n: int = 2000, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(dim) + 1e-6 * rng.standard_normal((n, dim))).astype(np.float32)


def validate(vectors: np.ndarray, **kwargs):
    emb = embeddings(vectors)
    kwargs.setdefault("catalog_ids", emb.ids)
    kwargs.setdefault("expected_dim", vectors.shape[1])
    return validate_embeddings(emb, **kwargs)


# -- the gate ------------------------------------------------------------------


@pytest.mark.parametrize("make", [gaussian, trained_like], ids=["gaussian", "trained_like"])
def test_healthy_embedding_passes(make):
    report = validate(make())
    assert report.success, report.summary()
    assert report.failed == [] and report.warnings == []
    core = [c for c in suite.CHECK_SPECS if c.part == suite.CORE]
    critical = sum(c.severity == suite.CRITICAL for c in core)
    assert report.summary().startswith(f"passed {critical}/{critical}")
    assert [c["name"] for c in report.checks] == [c.name for c in core]


def test_small_shop_with_fewer_products_than_dimensions_passes():
    # 20 rows in 64-d: the centred matrix has rank 19, which is not degeneracy.
    report = validate(gaussian(n=20, dim=64))
    assert report.success, report.summary()
    assert report.metrics["isotropy"] > 0.01


def test_collapsed_embedding_is_refused_by_cosine_and_energy_not_isotropy():
    report = validate(collapsed())
    assert not report.success
    assert set(report.failed) == {"mean_pairwise_cosine", "centred_energy"}
    # The noise around the common vector is isotropic: sigma_min / sigma_max alone misses collapse.
    assert report.metrics["isotropy"] > 0.5
    assert report.summary().startswith("FAILED mean_pairwise_cosine 1.00 above 0.90: the vectors point the same way")


def test_nan_row_is_refused_and_named():
    vectors = gaussian()
    vectors[7, 3] = np.nan
    vectors[9, 0] = np.inf
    report = validate(vectors)
    assert report.failed == ["nonfinite_rows"]
    check = next(c for c in report.checks if c["name"] == "nonfinite_rows")
    assert check["observed"] == 2
    assert check["examples"] == ["p00007", "p00009"]
    # Geometry is measured on the finite rows, so one NaN does not poison it.
    assert np.isfinite(report.metrics["mean_pairwise_cosine"])
    assert np.isfinite(report.metrics["norm_max"])


def test_nonfinite_rows_allowed_up_to_the_configured_count():
    vectors = gaussian()
    vectors[7, 3] = np.nan
    assert validate(vectors, config=GateConfig(max_nonfinite_rows=1)).success


def test_wrong_dimension_is_refused():
    report = validate(gaussian(), expected_dim=DIM * 2)
    assert report.failed == ["dimension"]
    assert report.summary() == f"FAILED dimension {DIM} != {DIM * 2}"


def test_coverage_below_minimum_is_refused():
    vectors = gaussian(n=1000)
    catalog = make_ids(1250)  # 250 catalogue products have no row: coverage 0.8
    assert validate(vectors, catalog_ids=catalog).success  # default: no coverage demand
    report = validate(vectors, catalog_ids=catalog, config=GateConfig(min_coverage=1.0))
    assert report.failed == ["coverage"]
    assert report.metrics["coverage"] == pytest.approx(0.8)
    assert "coverage 0.80 below 1.00: 250 of 1250 catalogue products have no vector" in report.summary()


def test_coverage_just_below_one_is_not_printed_as_equal():
    report = validate(gaussian(n=1000), catalog_ids=make_ids(1001), config=GateConfig(min_coverage=1.0))
    assert "1.00 < 1.00" not in report.summary()
    assert "coverage 0.999 below 1.000" in report.summary()


def test_ids_outside_the_catalogue_are_refused():
    vectors = gaussian(n=100)
    report = validate(vectors, catalog_ids=make_ids(100)[5:])
    assert report.failed == ["unknown_ids"]
    check = next(c for c in report.checks if c["name"] == "unknown_ids")
    assert check["observed"] == 5 and check["examples"] == [f"p{i:05d}" for i in range(5)]


def test_zero_row_is_refused_by_norm():
    vectors = gaussian()
    vectors[3] = 0.0
    report = validate(vectors)
    assert report.failed == ["norm"]
    assert "norm: 1 rows outside" in report.summary() and "p00003" in report.summary()


def test_rank_deficient_embedding_is_refused_by_isotropy():
    rng = np.random.default_rng(0)
    low_rank = (rng.standard_normal((2000, 8)) @ rng.standard_normal((8, DIM))).astype(np.float32)
    report = validate(low_rank)
    assert "isotropy" in report.failed
    assert report.metrics["isotropy"] < 1e-6


def test_single_row_embedding_is_refused_with_undefined_metrics():
    report = validate(gaussian(n=1))
    assert {"rows", "isotropy", "mean_pairwise_cosine"} <= set(report.failed)
    json.dumps(report.to_dict(), allow_nan=False)


def test_duplicate_vectors_are_measured_and_can_be_refused():
    vectors = gaussian(n=1000)
    vectors[:50] = vectors[500]  # 50 copies + the original
    vectors[61] = vectors[60]
    vectors[60, 0], vectors[61, 0] = 0.0, -0.0  # equal as numbers, different bytes
    assert validate(vectors).metrics["duplicate_share"] == pytest.approx(53 / 1000)
    report = validate(vectors, config=GateConfig(max_duplicate_share=0.01))
    assert report.failed == ["duplicate_share"]


def test_report_is_json_serialisable_and_deterministic():
    vectors = trained_like()
    a, b = validate(vectors, seed=3), validate(vectors, seed=3)
    text = json.dumps(a.to_dict(), allow_nan=False)
    assert text == json.dumps(b.to_dict(), allow_nan=False)
    card = json.loads(text)
    assert card["success"] is True and card["config"]["expected_dim"] == DIM
    failing = validate(collapsed(), expected_dim=DIM + 1)
    json.dumps(failing.to_dict(), allow_nan=False)


def test_validation_prints_nothing(capfd):
    validate(gaussian(n=500))  # GE is set up by now or here; either way no progress bars
    validate(collapsed(n=500))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_importing_the_package_does_not_import_great_expectations():
    code = "import sys, prodvec.validation; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the metrics ---------------------------------------------------------------


def test_isotropy_is_near_one_for_isotropic_gaussian_and_small_for_low_rank_plus_noise():
    rng = np.random.default_rng(1)
    assert isotropy(rng.standard_normal((20000, 8))) > 0.9
    low_rank = rng.standard_normal((5000, 4)) @ rng.standard_normal((4, DIM))
    low_rank += 1e-3 * rng.standard_normal((5000, DIM))
    assert isotropy(low_rank) < 0.01


def test_isotropy_samples_at_most_max_rows_deterministically():
    vectors = trained_like(n=3000)
    assert isotropy(vectors, max_rows=500, seed=1) == isotropy(vectors, max_rows=500, seed=1)
    assert isotropy(vectors, max_rows=500, seed=1) != isotropy(vectors, max_rows=500, seed=2)


def test_mean_pairwise_cosine_is_zero_for_gaussian_and_one_for_collapsed():
    assert abs(mean_pairwise_cosine(gaussian(), 10_000, 0)) < 0.02
    assert mean_pairwise_cosine(collapsed(), 10_000, 0) > 0.999


def test_mean_pairwise_cosine_only_pairs_distinct_rows():
    # Two opposite rows: every distinct pair has cosine -1; a row paired with itself would add +1.
    assert mean_pairwise_cosine(np.array([[1.0, 0.0], [-1.0, 0.0]]), 1000, 0) == pytest.approx(-1.0)


def test_centred_energy_separates_spread_from_collapse():
    assert centred_energy(gaussian()) > 0.95
    assert centred_energy(collapsed()) < 1e-6
