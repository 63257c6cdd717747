"""The drift gate through the command line: a reshuffled retrain is refused and never served,
a rotated one is not drift; Data Docs are written, linked and open in a browser; the shop suite."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from prodvec.cli import main
from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import SnapshotStore

pytestmark = pytest.mark.integration

DIM = 64  # text_dae's dimension: the snapshots below stand in for its retrains


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("driftshop")
    generated = invoke("generate", root / "shop", "--products", "200", "--seed", "5")
    assert generated.exit_code == 0, generated.output
    return root / "shop"


def catalogue_vectors(products: pd.DataFrame, cutoff: pd.Timestamp, seed: int = 0) -> Embeddings:
    """Clustered vectors (one cluster per category) for every product listed by `cutoff`; fixed per product."""
    rng = np.random.default_rng(seed)
    categories = {c: rng.standard_normal(DIM) * 3 for c in sorted(products[C.CATEGORY].unique())}
    noise = np.random.default_rng(seed + 1).standard_normal((len(products), DIM))
    vectors = np.stack([categories[c] for c in products[C.CATEGORY]]) + noise
    known = (products[C.CREATED_AT] <= cutoff).to_numpy()
    return Embeddings(products[C.PRODUCT_ID].to_numpy()[known], vectors[known].astype(np.float32))


def online_vector(home: Path, product: str) -> np.ndarray:
    from prodvec.core import feast_ops

    fs = feast_ops.open_store(home)
    row = fs.get_online_features(features=["product_text_dae_v1:embedding"],
                                 entity_rows=[{"product_id": product}]).to_dict()
    return np.asarray(row["embedding"][0], dtype=np.float32)


def test_a_reshuffled_retrain_fails_drift_and_the_online_store_keeps_serving_the_previous_one(shop_dir, tmp_path):
    home = tmp_path / "home"
    store = SnapshotStore(home)
    products = pd.read_parquet(shop_dir / "products.parquet")
    start = products[C.CREATED_AT].min().normalize()
    c1, c2, c3 = (start + pd.Timedelta(days=d) for d in (90, 120, 150))
    card = {"producer": "text_dae", "parameters": {"seed": 0}}

    first = store.write("text_dae", 1, c1, catalogue_vectors(products, c1), card)
    assert invoke("validate", first.id, "--shop", shop_dir, "--home", home).exit_code == 0
    assert invoke("promote", first.id, "--home", home).exit_code == 0
    assert invoke("apply", "--home", home).exit_code == 0
    assert invoke("materialize", "--home", home).exit_code == 0
    product = str(store.read(first).ids[0])
    served = online_vector(home, product)
    assert np.allclose(served, store.read(first).vectors[0])

    # Same vectors, products swapped among themselves: every distribution check passes, neighbours do not.
    emb = catalogue_vectors(products, c2)
    shuffled = Embeddings(emb.ids, emb.vectors[np.random.default_rng(9).permutation(len(emb))])
    second = store.write("text_dae", 1, c2, shuffled, card)
    validated = invoke("validate", second.id, "--shop", shop_dir, "--home", home)
    assert validated.exit_code == 3, validated.output
    assert re.search(r"FAILED .*knn_overlap \S+ below 0\.10: products keep \d+% of their 10 nearest neighbours",
                     validated.output), validated.output
    assert "Data Docs: " in validated.output

    promoted = invoke("promote", second.id, "--home", home)
    assert promoted.exit_code != 0 and "failed validation" in promoted.output
    assert invoke("materialize", "--home", home).exit_code == 0
    assert np.allclose(online_vector(home, product), served), "the online store still serves the previous snapshot"
    assert store.promoted("text_dae", 1) == [first.tag]

    # A rotated retrain (plus the products listed since) is not drift: it passes and may be served.
    rotation, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((DIM, DIM)))
    emb3 = catalogue_vectors(products, c3)
    third = store.write("text_dae", 1, c3, Embeddings(emb3.ids, (emb3.vectors @ rotation).astype(np.float32)), card)
    passed = invoke("validate", third.id, "--shop", shop_dir, "--home", home)
    assert passed.exit_code == 0, passed.output
    validation = third.card()["validation"]
    assert validation["drift_reference"] == first.id, "a refused snapshot is no reference"
    assert validation["metrics"]["knn_overlap"] == pytest.approx(1.0)
    assert validation["metrics"]["displacement"] < 1e-3
    assert validation["metrics"]["cold_start_coverage"] == 1.0

    listed = invoke("snapshots", "--home", home)
    lines = {line.split()[0]: line for line in listed.output.splitlines() if line.startswith("text_dae/")}
    assert "FAILED" in lines[second.id] and "knn_overlap" in lines[second.id]
    assert "passed" in lines[third.id]
    index = re.search(r"Data Docs .*: (\S+index\.html)", listed.output)
    assert index and Path(index.group(1)).exists()
    html = Path(validation["data_docs"]).read_text()
    assert "embedding_snapshot" in html and "text_dae_v1_" in Path(validation["data_docs"]).as_posix()


def test_a_fusions_provisional_snapshot_is_no_drift_reference_but_a_frozen_one_is(tmp_path):
    from prodvec.validation.verdict import drift_reference

    store = SnapshotStore(tmp_path / "home")
    ids = np.array([f"p{i}" for i in range(20)])
    cuts = [pd.Timestamp("2025-01-29", tz="UTC") + pd.Timedelta(days=28 * k) for k in range(3)]
    refs = []
    for k, (cut, provisional) in enumerate(zip(cuts, [True, False, False])):
        ref = store.write("unified", 1, cut, Embeddings(ids, np.random.default_rng(k).normal(size=(20, 8))),
                          {"producer": "unified", "fusion": {"frozen": not provisional, "provisional": provisional}})
        store.update_card(ref, validation={"success": True})
        refs.append(ref)
    assert drift_reference(store, refs[1]) is None  # its predecessor only held equal weights until it could choose
    assert drift_reference(store, refs[2]).id == refs[1].id
    plain = store.write("text_dae", 1, cuts[0], Embeddings(ids, np.ones((20, 8))), {"producer": "text_dae"})
    store.update_card(plain, validation={"success": True})
    later = store.write("text_dae", 1, cuts[1], Embeddings(ids, np.ones((20, 8))), {"producer": "text_dae"})
    assert drift_reference(store, later).id == plain.id  # no fusion card: the newest passing one, as before


def test_gate_thresholds_are_configurable_per_family_version_from_the_command_line(shop_dir, tmp_path):
    home = tmp_path / "home"
    store = SnapshotStore(home)
    products = pd.read_parquet(shop_dir / "products.parquet")
    start = products[C.CREATED_AT].min().normalize()
    c1, c2 = start + pd.Timedelta(days=90), start + pd.Timedelta(days=120)
    card = {"producer": "text_dae", "parameters": {"seed": 0}}
    store.write("text_dae", 1, c1, catalogue_vectors(products, c1), card)
    assert invoke("validate", "text_dae", "--shop", shop_dir, "--home", home).exit_code == 0
    emb = catalogue_vectors(products, c2)
    noisy = Embeddings(emb.ids, emb.vectors + np.random.default_rng(2).normal(0, 1.0, emb.vectors.shape).astype(np.float32))
    second = store.write("text_dae", 1, c2, noisy, card)
    assert invoke("validate", second.id, "--shop", shop_dir, "--home", home).exit_code == 0
    strict = invoke("validate", second.id, "--shop", shop_dir, "--home", home, "--gate", "text_dae.v1.min_knn_overlap=0.99")
    assert strict.exit_code == 3 and "knn_overlap" in strict.output and "below 0.99" in strict.output
    other = invoke("validate", second.id, "--shop", shop_dir, "--home", home, "--gate", "clicks_bpr.min_knn_overlap=0.99")
    assert other.exit_code == 0, "a threshold of another family does not apply"
    bad = invoke("validate", second.id, "--shop", shop_dir, "--home", home, "--gate", "min_knn_overlp=0.5")
    assert bad.exit_code != 0 and "unknown gate setting" in bad.output


def test_data_docs_open_in_a_browser(shop_dir, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    home = tmp_path / "home"
    store = SnapshotStore(home)
    products = pd.read_parquet(shop_dir / "products.parquet")
    cutoff = products[C.CREATED_AT].min().normalize() + pd.Timedelta(days=90)
    ref = store.write("text_dae", 1, cutoff, catalogue_vectors(products, cutoff), {"producer": "text_dae"})
    assert invoke("validate", ref.id, "--shop", shop_dir, "--home", home).exit_code == 0
    page_path = Path(ref.card()["validation"]["data_docs"])
    index = home / "validation" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            text = page.inner_text("body")
            assert "embedding_snapshot" in text and "expect_column_embedding_isotropy_to_be_between" in text
            assert page.locator("table").first.is_visible()
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            assert "Data Docs" in page.inner_text("body")
            # The index lists runs through a table script GX loads from a CDN (absent offline); its rows are in the page.
            assert re.search(r"validations/embedding_snapshot[a-z_]*/text_dae_v1_", page.content())
        finally:
            browser.close()


def test_the_shop_is_validated_by_a_gx_suite_with_the_loaders_messages(shop_dir, tmp_path):
    home = tmp_path / "home"
    good = invoke("check", "--shop", shop_dir, "--home", home)
    assert good.exit_code == 0, good.output
    passed = re.search(r"GX shop suite: (\d+)/(\d+) expectations passed", good.output)
    assert passed and passed.group(1) == passed.group(2) and int(passed.group(2)) >= 15
    assert (home / "validation" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").exists()

    broken = tmp_path / "broken"
    shutil.copytree(shop_dir, broken)
    orders = pd.read_parquet(broken / "orders.parquet")
    orders.loc[7, C.PRICE] = -3.0
    orders.to_parquet(broken / "orders.parquet")
    bad = invoke("check", "--shop", broken, "--home", home)
    assert bad.exit_code != 0
    # The GX suite and the loader say the same thing: file, column, rule, how many, which row.
    assert re.search(r"GX shop suite: \d+/\d+ expectations passed; orders\.parquet, column 'price': must be > 0 "
                     r"and finite — 1 bad row, e.g. row 7: ", bad.output), bad.output
    assert "orders.parquet, column 'price': must be > 0 and finite — 1 bad row, e.g. row 7" in bad.output.split(
        "Error:")[-1]
