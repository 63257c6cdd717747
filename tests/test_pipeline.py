"""The whole job through the command line, on a small generated shop."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from prodvec.core import feast_ops
from prodvec.cli import main
from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import SnapshotStore

pytestmark = pytest.mark.integration


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A generated shop run through `prodvec run` once; no test changes it (those that do take a copy)."""
    root = tmp_path_factory.mktemp("demo")
    shop, home = root / "shop", root / "home"
    generated = invoke("generate", str(shop), "--products", "300", "--seed", "3")
    assert generated.exit_code == 0, generated.output
    assert (root / "shop_truth" / "orders_truth.parquet").exists(), "ground truth lives beside, not inside, the shop"
    ran = invoke("run", "--shop", str(shop), "--home", str(home), "--quiet", "--set", "text_dae.epochs=10",
                 "--report-dir", str(root / "report"))
    assert ran.exit_code == 0, ran.output
    return root, ran.output


@pytest.fixture
def demo(prepared):
    """(shop, home, run output) of the prepared run, for tests that only read it."""
    root, output = prepared
    return root / "shop", root / "home", output


@pytest.fixture
def own_demo(prepared, tmp_path):
    """A private copy of the prepared shop, truth and home for a test that changes them (rollback, bad
    snapshots), so every test sees the state it asserts on whatever ran before it."""
    root, output = prepared
    copy = shutil.copytree(root, tmp_path / "demo")
    return copy / "shop", copy / "home", output


def test_run_prints_the_results_table(demo):
    shop, _, output = demo
    table = output[output.index("family"):]
    for family in ("no_embedding", "text_dae", "clicks_bpr", "unified"):
        assert family in table
    assert "return_auc" in table and "isotropy" in table and "coverage" in table and "train_s" in table
    # ... and ends with the evaluation report.
    assert "the claim (within 5%" in output
    assert (shop.parent / "report" / "report.html").exists()


def test_every_family_is_served_and_readable_online(demo):
    shop, home, _ = demo
    fs = feast_ops.open_store(home)
    views = sorted(v.name for v in fs.list_feature_views())
    products = ["product_clicks_bpr_v1", "product_text_dae_v1", "product_unified_blend_v1", "product_unified_concat_v1",
                "product_unified_v1"]
    # Beside each product view, the return model's user profiles in its space (entity user).
    assert views == sorted(products + [v.replace("product_", "user_", 1) for v in products])
    product = pd.read_parquet(shop / "products.parquet")["product_id"].iloc[0]
    row = fs.get_online_features(features=["product_unified_v1:embedding"],
                                 entity_rows=[{"product_id": product}]).to_dict()
    vector = row["embedding"][0]
    assert len(vector) >= 32 and np.isfinite(vector).all()


def test_snapshots_of_every_cutoff_are_listed_with_their_verdict(demo):
    _, home, _ = demo
    listed = invoke("snapshots", "--home", str(home))
    lines = [line for line in listed.output.splitlines() if line.startswith("text_dae/")]
    assert len(lines) >= 4 and all("served" in line and "passed" in line for line in lines)


@pytest.mark.parametrize("broken", ["collapsed", "nan"])
def test_the_gate_refuses_a_broken_snapshot_and_it_is_never_served(own_demo, broken):
    shop, home, _ = own_demo
    store = SnapshotStore(home)
    served_before = store.promoted("text_dae", 1)
    ids = pd.read_parquet(shop / "products.parquet")["product_id"].to_numpy()
    rng = np.random.default_rng(0)
    if broken == "collapsed":  # every product (almost) the same vector
        vectors = np.ones((len(ids), 64)) + rng.normal(0, 1e-6, (len(ids), 64))
    else:
        vectors = rng.normal(size=(len(ids), 64))
        vectors[5, 3] = np.nan
    cutoff = pd.Timestamp("2025-12-31", tz="UTC")
    ref = store.write("text_dae", 1, cutoff, Embeddings(ids, vectors), {"producer": "text_dae"}, replace=True)

    validated = invoke("validate", ref.id, "--shop", str(shop), "--home", str(home))
    assert validated.exit_code == 3
    reason = "mean_pairwise_cosine" if broken == "collapsed" else "nonfinite_rows"
    assert "FAILED" in validated.output and reason in validated.output

    promoted = invoke("promote", ref.id, "--home", str(home))
    assert promoted.exit_code != 0 and "failed validation" in promoted.output
    assert store.promoted("text_dae", 1) == served_before
    assert ref.path.exists(), "kept for inspection"


def test_a_second_run_on_the_same_home_keeps_what_exists_and_does_not_undo_a_rollback(own_demo):
    shop, home, _ = own_demo
    rolled = invoke("rollback", "text_dae", "--home", str(home))
    assert rolled.exit_code == 0, rolled.output
    served_before = SnapshotStore(home).promoted("text_dae", 1)
    again = invoke("run", "--shop", str(shop), "--home", str(home), "--quiet", "--set", "text_dae.epochs=10",
                   "--no-report")
    assert again.exit_code == 0, again.output
    assert "exists, kept" in again.output and "rows in" not in again.output, "nothing is retrained"
    assert SnapshotStore(home).promoted("text_dae", 1) == served_before
