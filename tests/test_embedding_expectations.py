"""The embedding expectations and the drift gate on data with known answers."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from prodvec.core.embeddings import Embeddings
from prodvec.validation import drift
from prodvec.validation.gate import Cohorts, GateConfig, validate_embeddings
from prodvec.validation.neighbours import top_k_cosine

DIM = 16
N = 1500


def ids(n: int = N) -> np.ndarray:
    return np.array([f"p{i:05d}" for i in range(n)])


def clustered(n: int = N, dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters (a label each): an embedding with real neighbourhoods."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 12, n)
    centres = rng.standard_normal((12, dim)) * 3
    return (centres[labels] + rng.standard_normal((n, dim))).astype(np.float32), labels


def rotation(dim: int = DIM, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return q


def gate(vectors, reference=None, **kwargs):
    emb = Embeddings(ids(len(vectors)), vectors)
    cohorts = kwargs.pop("cohorts", None) or Cohorts(
        reference=None if reference is None else Embeddings(ids(len(reference)), reference))
    return validate_embeddings(emb, catalog_ids=kwargs.pop("catalog_ids", emb.ids), expected_dim=vectors.shape[1],
                               cohorts=cohorts, **kwargs)


# -- the GX expectations on their own, in a plain suite -------------------------------------------------------


def test_the_expectations_work_in_any_gx_suite_on_a_list_column():
    import great_expectations as gx

    import prodvec.validation.expectations as ev

    rng = np.random.default_rng(0)
    round_cloud = rng.standard_normal((2000, 8))
    flat = round_cloud.copy()
    flat[:, 4:] = 0.0  # rank 4 of 8
    frame = pd.DataFrame({"round": [list(map(float, r)) for r in round_cloud],  # plain Python lists
                          "flat": list(flat), "same": list(np.ones((2000, 8)) + 1e-9 * round_cloud)})
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    batch = context.data_sources.add_pandas("t").add_dataframe_asset("a").add_batch_definition_whole_dataframe("w")
    suite = context.suites.add(gx.ExpectationSuite("s", expectations=[
        ev.ExpectColumnEmbeddingDimensionToEqual(column="round", value=8),
        ev.ExpectColumnEmbeddingIsotropyToBeBetween(column="round", min_value=0.5),
        ev.ExpectColumnEmbeddingEffectiveRankShareToBeBetween(column="round", min_value=0.9),
        ev.ExpectColumnEmbeddingIsotropyToBeBetween(column="flat", min_value=1e-6),
        ev.ExpectColumnEmbeddingEffectiveRankShareToBeBetween(column="flat", min_value=0.9),
        ev.ExpectColumnEmbeddingMeanCosineToBeBetween(column="same", max_value=0.9),
        ev.ExpectColumnEmbeddingKnnOverlapToBeBetween(column="round", reference_column="flat", min_value=0.9),
    ]))
    result = batch.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    outcome = {(r.expectation_config.type, r.expectation_config.kwargs["column"]): r for r in result.results}
    assert outcome[("expect_column_embedding_dimension_to_equal", "round")].success
    iso = outcome[("expect_column_embedding_isotropy_to_be_between", "round")]
    assert iso.success and iso.result["observed_value"] > 0.8  # isotropic Gaussian
    assert iso.result["details"]["sigma_min"] > 0 and iso.result["details"]["sigma_max"] > 0
    erank = [r for r in result.results if r.expectation_config.type.startswith("expect_column_embedding_effective")]
    assert [r.success for r in erank] == [True, False]  # the rank-deficient copy uses half its dimensions
    assert erank[1].result["observed_value"] == pytest.approx(0.5, abs=0.01)
    flat_iso = outcome[("expect_column_embedding_isotropy_to_be_between", "flat")]
    assert not flat_iso.success and flat_iso.result["details"]["constant_coordinates"] == 4
    assert not outcome[("expect_column_embedding_mean_cosine_to_be_between", "same")].success  # collapsed
    assert not outcome[("expect_column_embedding_knn_overlap_to_be_between", "round")].success


# -- drift: rotation is not drift, a reshuffle is -------------------------------------------------------------


def test_a_rotated_copy_has_no_drift_after_alignment_and_keeps_every_neighbour():
    x, _ = clustered()
    rotated = (x @ rotation()).astype(np.float32)
    measured = drift.drift(rotated, x)
    assert measured["displacement"] < 1e-4
    assert measured["knn_overlap"] == pytest.approx(1.0)
    assert measured["classifier_auc"] <= 0.55
    report = gate(rotated, reference=x)
    assert report.success, report.summary()
    assert report.metrics["knn_overlap"] == pytest.approx(1.0) and report.warnings == []


def test_a_reshuffle_of_neighbours_is_drift_even_though_the_distribution_is_the_same():
    x, _ = clustered()
    shuffled = x[np.random.default_rng(2).permutation(len(x))]  # same cloud, products swapped
    report = gate(shuffled, reference=x)
    assert not report.success
    assert {"displacement", "knn_overlap"} <= set(report.failed)
    assert report.metrics["knn_overlap"] < 0.1
    assert re.search(r"knn_overlap \S+ below 0\.10: products keep \d+% of their 10 nearest neighbours", report.summary())
    # A pure permutation leaves the distribution alone: the classifier test cannot see it (why kNN overlap exists).
    assert report.metrics["classifier_auc"] < 0.6


def test_a_normal_retrain_passes_and_a_stretched_space_is_flagged_by_the_classifier():
    x, _ = clustered()
    rng = np.random.default_rng(3)
    retrain = ((x + 0.3 * rng.standard_normal(x.shape)) @ rotation(seed=4)).astype(np.float32)
    report = gate(retrain, reference=x)
    assert report.success and report.warnings == [], report.summary()
    assert 0.4 < report.metrics["knn_overlap"] < 1.0
    # Stretch one direction: neighbours barely move, but old and new are told apart.
    stretched = x.copy()
    stretched[:, 0] = stretched[:, 0] * 3 + 5
    flagged = gate(stretched.astype(np.float32), reference=x)
    assert flagged.metrics["classifier_auc"] > 0.6 and flagged.metrics["knn_overlap"] > 0.3
    assert "classifier_auc" in flagged.warnings


def test_drift_thresholds_are_per_family_version_and_warn_before_they_fail():
    settings = {"min_knn_overlap": "0.2", "text_dae.min_knn_overlap": "0.3", "text_dae.v2.min_knn_overlap": "0.4",
                "clicks_bpr.v1.warn_classifier_auc": "0.6"}
    assert GateConfig.for_family("text_dae", 2, settings).min_knn_overlap == 0.4
    assert GateConfig.for_family("text_dae", 1, settings).min_knn_overlap == 0.3
    assert GateConfig.for_family("unified", 1, settings).min_knn_overlap == 0.2
    assert GateConfig.for_family("clicks_bpr", 1, settings).warn_classifier_auc == 0.6
    with pytest.raises(ValueError, match="unknown gate setting"):
        GateConfig.for_family("unified", 1, {"min_knn_overlp": "0.2"})
    # Between the warn and the fail level: passes, with a warning that names the check.
    x, _ = clustered()
    rng = np.random.default_rng(5)
    noisy = (x + 1.5 * rng.standard_normal(x.shape)).astype(np.float32)
    report = gate(noisy, reference=x, config=GateConfig(warn_knn_overlap=0.9, min_knn_overlap=0.01))
    assert report.success and "knn_overlap" in report.warnings
    assert "; warn: knn_overlap" in report.summary()


# -- single-snapshot expectations with a plain message --------------------------------------------------------


def test_partly_zero_blocks_are_named_in_the_isotropy_failure():
    x, _ = clustered(dim=8)
    blocks = np.concatenate([x, np.zeros((len(x), 8), np.float32), x[:, :4] * 0.5], axis=1)  # [8 | 8 empty | 4]
    report = gate(blocks, cohorts=Cohorts(block_widths=(8, 8, 4)))
    assert "isotropy" in report.failed
    assert re.search(r"isotropy \S+ below 1\.0e-06: 1 of 3 modality blocks are empty at this cutoff", report.summary())
    plain = gate(blocks)  # without the block layout: the dead coordinates are counted instead
    assert "8 of 20 coordinates are constant" in plain.summary()


def test_a_missing_cold_start_cohort_is_refused_by_name():
    x, _ = clustered()
    catalogue = ids(N + 40)
    new = catalogue[-50:]  # listed since the previous cutoff; the last 40 got no vector
    report = gate(x, catalog_ids=catalogue, cohorts=Cohorts(new_ids=new),
                  config=GateConfig(min_coverage=0.9, min_cold_start_coverage=1.0))
    assert report.failed == ["cold_start_coverage"]
    assert report.metrics["cold_start_coverage"] == pytest.approx(10 / 50)
    assert ("cold_start_coverage 0.20 below 1.00: 40 of 50 products listed since the previous cutoff have no vector "
            "(e.g. p01500") in report.summary()


def test_neighbourhood_consistency_by_label_warns_below_60_percent():
    x, labels = clustered()
    good = gate(x, cohorts=Cohorts(labels=pd.Series(labels, index=ids())))
    assert good.success and good.metrics["label_consistency"] > 0.9 and good.warnings == []
    shuffled = np.random.default_rng(0).permutation(labels)
    weak = gate(x, cohorts=Cohorts(labels=pd.Series(shuffled, index=ids())))
    assert weak.success, "a warning never refuses a snapshot"
    assert weak.warnings == ["label_consistency"] and weak.metrics["label_consistency"] < 0.2
    assert "warn: label_consistency" in weak.summary() and "share its category" in weak.summary()


def test_exact_top_k_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5))
    top = top_k_cosine(x[:40], x, 7, exclude=np.arange(40))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    scores = unit[:40] @ unit.T
    scores[np.arange(40), np.arange(40)] = -np.inf
    assert (top == np.argsort(-scores, axis=1, kind="stable")[:, :7]).all()


# -- Data Docs ------------------------------------------------------------------------------------------------


def test_every_validation_writes_data_docs_naming_the_suite(tmp_path):
    x, _ = clustered()
    report = gate(x @ rotation(), reference=x, docs_root=tmp_path / "validation", run_name="toy_v1_first")
    page = tmp_path / "validation" / "gx" / "uncommitted" / "data_docs" / "local_site"
    assert report.docs and report.docs.endswith(".html") and report.docs.startswith(str(page))
    html = open(report.docs).read()
    assert "embedding_snapshot_drift" in html and "expect_column_embedding_knn_overlap_to_be_between" in html
    from prodvec.validation.suite import refresh_index

    index = refresh_index(tmp_path / "validation").read_text()  # each run writes its page; the index on demand
    assert "embedding_snapshot_drift" in index and "toy_v1_first" in index
