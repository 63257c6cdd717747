"""Intrinsic quality: the metric cores on data with known answers, then once through Feast."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import special_ortho_group

from prodvec.consumers.intrinsic import linear_cka, neighbourhood_consistency, normalised_spectrum
from prodvec.validation import isotropy


def clustered(n: int = 600, categories: int = 6, dim: int = 16, spread: float = 0.05, seed: int = 0):
    """(vectors, labels): each category a tight cloud around its own direction."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % categories
    centres = rng.standard_normal((categories, dim))
    return centres[labels] + rng.normal(0, spread, (n, dim)), labels


def test_a_category_clustered_embedding_is_consistent_and_random_is_at_chance():
    vectors, labels = clustered()
    assert neighbourhood_consistency(vectors, labels, k=10) == pytest.approx(1.0)
    noise = np.random.default_rng(1).standard_normal(vectors.shape)
    assert neighbourhood_consistency(noise, labels, k=10) == pytest.approx(1 / 6, abs=0.04)


def test_consistency_checks_only_the_asked_rows_and_skips_unlabelled_ones():
    vectors, labels = clustered()
    assert neighbourhood_consistency(vectors, labels, k=5, queries=np.arange(0, 600, 7)) == pytest.approx(1.0)
    unlabelled = np.where(np.arange(600) < 300, -1, labels)  # unknown category: never checked
    assert np.isnan(neighbourhood_consistency(vectors, unlabelled, k=5, queries=np.arange(0, 300)))
    assert neighbourhood_consistency(vectors, unlabelled, k=5) < 1.0, "an unlabelled neighbour is no match"


def test_cka_of_a_rotated_scaled_copy_is_one_and_of_unrelated_data_near_zero():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2000, 8)) @ np.diag(np.linspace(3, 0.5, 8))
    rotation = special_ortho_group.rvs(8, random_state=3)
    assert linear_cka(x, 4.0 * x @ rotation + 7.0) == pytest.approx(1.0)
    # A different dimension is fine: embed the same rows into 32-d by an orthonormal map.
    basis = np.linalg.qr(rng.standard_normal((32, 8)))[0]
    assert linear_cka(x @ basis.T, x) == pytest.approx(1.0)
    assert linear_cka(rng.standard_normal((2000, 32)), x) < 0.05
    assert linear_cka(x, x @ rotation) == pytest.approx(linear_cka(x @ rotation, x))


def test_the_spectrum_starts_at_one_and_ends_at_the_isotropy():
    x = np.random.default_rng(4).standard_normal((500, 12)) * np.linspace(1, 0.1, 12)
    spectrum = normalised_spectrum(x)
    assert spectrum[0] == 1.0 and (np.diff(spectrum) <= 0).all() and len(spectrum) == 12
    assert spectrum[-1] == pytest.approx(isotropy(x))


@pytest.mark.integration
def test_trained_families_are_more_consistent_than_random_and_agree_with_the_true_style(served_home):
    from prodvec.core import feast_ops
    from prodvec.consumers.evaluation import RANDOM, EvalContext
    from prodvec.consumers.intrinsic import evaluate_intrinsic
    from prodvec.core.snapshots import latest_views
    from prodvec.core.snapshots import SnapshotStore

    shop = served_home.shop
    ctx = EvalContext(shop, feast_ops.open_store(served_home.home), latest_views(SnapshotStore(served_home.home)),
                      served_home.schedule.eval_cutoff(shop))
    result = evaluate_intrinsic(ctx)
    table = result.table
    assert result.headline == "consistency@10"
    assert list(table.index) == [*ctx.families, RANDOM]
    for family in ctx.families:
        assert table.loc[family, "consistency@10"] > 3 * table.loc[RANDOM, "consistency@10"], table
        assert table.loc[family, "style_cka"] > 2 * table.loc[RANDOM, "style_cka"], table
        assert 0.5 < table.loc[family, "coverage"] <= 1.0
    assert table.loc[RANDOM, "coverage"] == 1.0
    spectrum = result.extra["spectrum"]
    assert list(spectrum.index) == list(table.index) and (spectrum[1] == 1.0).all()
    assert spectrum.notna().sum(axis=1).min() >= 32
    assert any("Target above 60%" in note for note in result.notes)
