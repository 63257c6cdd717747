"""The real-data report (`prodvec real-report`): its helpers on toy data, and the whole run on the public samples.

The integration test runs the same code as `make real-report` on a few hundred products and sessions, so it
finishes in about a minute; it is skipped, with the reason, where ../shared/data is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prodvec.core import columns as C
from prodvec.report import real

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_nearest_ranks_by_cosine_and_leaves_out_the_query_and_non_candidates():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7], [2.0, 0.05], [-1.0, 0.0]])
    near = real.nearest(vectors, np.array([0, 2]), k=3)
    assert near[0].tolist() == [4, 1, 3]  # scale does not matter (row 4 is long), direction does; never itself
    assert near[1].tolist() == [3, 1, 4]
    pool = np.array([True, True, True, True, False, True])
    assert real.nearest(vectors, np.array([0]), k=2, candidates=pool)[0].tolist() == [1, 3]


def test_neighbour_agreement_is_the_share_of_neighbours_with_the_query_label_ignoring_unknown_queries():
    labels = pd.DataFrame({"colour": ["red", "red", "blue", None], "kind": ["a", "b", "a", "a"]})
    neighbours = np.array([[1, 2], [0, 2]])
    share = real.neighbour_agreement(neighbours, np.array([0, 3]), labels)
    assert share["colour"] == pytest.approx(0.5)  # query 3 has no colour: only query 0 counts
    assert share["kind"] == pytest.approx(0.75)  # query 0: b, a -> 1/2; query 3: a, a -> 2/2


def test_held_out_rows_are_seeded_and_only_their_labels_are_hidden():
    mask = real.held_out(10, 0.2, seed=1)
    assert mask.sum() == 2 and (mask == real.held_out(10, 0.2, seed=1)).all()
    products = pd.DataFrame({C.PRODUCT_ID: list("abcd"), C.TITLE: list("wxyz"), C.CATEGORY: ["t", "t", "s", "s"],
                             "colour": ["r", "g", "b", "r"]})
    rows = np.array([False, True, False, True])
    hidden = real.hide_labels(products, rows, [C.CATEGORY, "colour"])
    assert hidden[C.CATEGORY].isna().tolist() == rows.tolist() and hidden["colour"].isna().tolist() == rows.tolist()
    assert hidden[C.TITLE].tolist() == list("wxyz") and products["colour"].notna().all()  # a copy; titles stay


def test_catalogue_sample_keeps_every_photo_and_samples_the_rest():
    products = pd.DataFrame({C.PRODUCT_ID: [str(i) for i in range(10)],
                             C.IMAGE_PATH: ["images/x.jpg" if i % 3 == 0 else None for i in range(10)]})
    sample = real.catalogue_sample(products, None, 2, seed=0)
    assert sample[C.IMAGE_PATH].notna().sum() == 4 and sample[C.IMAGE_PATH].isna().sum() == 2
    assert sample[C.PRODUCT_ID].astype(int).is_monotonic_increasing  # catalogue order
    assert len(real.catalogue_sample(products, 1, 0, seed=0)) == 1


def _scores(f1: dict[str, float]) -> pd.DataFrame:
    rows = [{"task": "articleType", "features": "tfidf" if name == "tfidf" else name, "model": "lr",
             "setting": "full", "macro_f1": value} for name, value in f1.items()]
    return pd.DataFrame(rows)


def test_mrnet_claim_needs_both_the_score_and_the_small_dimension():
    scores = _scores({"tfidf": 0.90, "dense": 0.86, "big": 0.89})
    holds, sentence = real.mrnet_claim(scores, "articleType", {"dense": 64, "big": 512}, vocabulary=3000)
    assert holds and "HOLDS (met by dense)" in sentence and "-4.4%" in sentence
    holds, sentence = real.mrnet_claim(scores, "articleType", {"dense": 128, "big": 512}, vocabulary=3000)
    assert not holds and "DOES NOT HOLD" in sentence  # 128 dims is 4.3% of the vocabulary
    holds, _ = real.mrnet_claim(_scores({"tfidf": 0.90, "dense": 0.85}), "articleType", {"dense": 64}, 3000)
    assert not holds  # -5.6%


def test_fusion_claim_needs_within_five_percent_and_better_than_every_single_family():
    table = pd.DataFrame({"macro_f1": {"text_dae": 0.70, "text_minilm": 0.80, "unified_blend": 0.81, "unified": 0.5}})
    singles = ["text_dae", "text_minilm"]
    holds, sentence = real.fusion_claim(table, "unified_blend", singles)
    assert holds and "HOLDS" in sentence and "best single text_minilm 0.800 (+1.2%)" in sentence
    table.loc["unified_blend", "macro_f1"] = 0.79  # within 5% but better than none
    assert not real.fusion_claim(table, "unified_blend", singles)[0]
    holds, sentence = real.fusion_claim(table.drop(index="unified_blend"), "unified_blend", singles)
    assert not holds and "not checked" in sentence


def test_chance_claim_needs_twice_random_and_more_than_the_majority_class():
    assert real.chance_claim(0.30, 0.05, 0.5, 0.3, "colour", "img")[0]
    assert not real.chance_claim(0.09, 0.05, 0.5, 0.3, "colour", "img")[0]
    assert not real.chance_claim(0.30, 0.05, 0.25, 0.3, "colour", "img")[0]


def test_label_reader_note_says_from_the_numbers_whether_the_label_readers_trail():
    table = pd.DataFrame({"rel_tfidf_lr": {"text_dae": -0.515, "mrnet": -0.274, "text_minilm": -0.098,
                                           "unified": -0.457}})
    note = real.label_reader_note(table, {"text_dae": 1.0, "mrnet": 0.0, "text_minilm": 0.0})
    assert "text_dae -51.5%, mrnet -27.4% vs text_minilm -9.8%" in note
    assert "text_dae and mrnet trail text_minilm" in note
    assert "largest weight (1) on text_dae, scores -45.7%: below text_minilm" in note
    table.loc["mrnet", "rel_tfidf_lr"] = 0.01
    table.loc["unified", "rel_tfidf_lr"] = 0.0
    note = real.label_reader_note(table, {"text_dae": 0.2, "mrnet": 0.8})
    assert "text_dae trails text_minilm" in note and "mrnet trail" not in note
    assert "largest weight (0.8) on mrnet, scores +0.0%: not below text_minilm" in note
    table.loc["text_dae", "rel_tfidf_lr"] = 0.02
    assert "text_dae and mrnet do not trail text_minilm" in real.label_reader_note(table, {})
    assert "Not compared here" in real.label_reader_note(table.drop(index="text_minilm"), {})


def test_sample_sessions_keeps_whole_sessions_on_each_side_of_the_split():
    from prodvec.core.shop.model import Shop

    ts = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01", "2024-01-05", "2024-01-06", "2024-01-07"], utc=True)
    events = pd.DataFrame({C.SESSION_ID: ["a", "a", "b", "b", "c", "d"], C.PRODUCT_ID: list("xyxyxy"), C.TS: ts})
    shop = Shop(Path("."), pd.DataFrame({C.PRODUCT_ID: ["x", "y"]}), events=events)
    split = pd.Timestamp("2024-01-04", tz="UTC")
    kept = real.sample_sessions(shop, split, train=5, test=1, seed=0).events
    sessions = set(kept[C.SESSION_ID])
    assert "a" in sessions and "b" not in sessions  # b crosses the split: neither training nor test
    assert len(sessions & {"c", "d"}) == 1 and kept.groupby(C.SESSION_ID).size()["a"] == 2


def test_neighbour_grid_writes_a_png(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    for name, colour in (("q", "red"), ("n1", "blue"), ("n2", "green")):
        Image.new("RGB", (6, 8), colour).save(tmp_path / "images" / f"{name}.jpg")
    path = real.neighbour_grid(tmp_path, [["images/q.jpg", "images/n1.jpg", "images/n2.jpg"], ["images/n1.jpg"]],
                               [["q", "1", "2"], ["1"]], "t", tmp_path / "grid.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_absent_data_sets_are_skipped_with_a_reason_and_the_report_still_written(tmp_path):
    lines = []
    report = real.build_real_report(tmp_path / "nothing", tmp_path / "out", tmp_path / "work", log=lines.append)
    text = report.markdown.read_text()
    for name in (real.MYNTRA, real.YOOCHOOSE, real.RETAIL):
        assert f"{name}: skipped — {tmp_path / 'nothing'}" in text
        assert report.outcomes[name].skipped
    assert report.html.is_file() and sum("skipped" in line for line in lines) == 3


# Small enough for about a minute on two cores: the same code path as `make real-report`.
SMALL = real.RealConfig(
    myntra_photos=300, myntra_without_photo=100, rf_trees=10, small_train=100,
    myntra_overrides={"text_dae": {"epochs": 3}, "mrnet": {"epochs": 2, "w2v_epochs": 1, "adapter_steps": 5,
                                                           "sae_epochs": 2, "sae_min_steps": 0},
                       "image_siamese": {"epochs": 2}},
    train_sessions=1500, test_sessions=300,
    session_overrides={"prod2vec": {"epochs": 5}, "clicks_bpr": {"epochs": 3}, "sasrec": {"epochs": 2}},
    retail_every_days=364, retail_overrides={"text_dae": {"epochs": 2}})


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    if not DATA.is_dir():
        pytest.skip(f"real public samples not found at {DATA} (see ../shared/data/README.md)")
    root = tmp_path_factory.mktemp("real")
    return real.build_real_report(DATA, root / "out", root / "work", SMALL, log=lambda *_: None)


@pytest.mark.integration
def test_real_report_on_the_samples_has_every_section_table_claim_and_picture(small_report):
    text, page = small_report.markdown.read_text(), small_report.html.read_text()
    for table in ("**Mean over articleType, baseColour, gender, season, usage (relative to TF-IDF-LR)**",
                  "**baseColour, held-out products with a photo**", "**Neighbour agreement**",
                  "**Recall@20 and MRR@20 over every next click of the test sessions**",
                  "**Families trained and served (validation metrics of the newest snapshot)**"):
        assert table in text
    for claim in ("Claim (MRNet): at least one dense family within 5% of TF-IDF-LR macro-F1 on articleType",
                  "Claim: the image family clearly above chance on baseColour",
                  "Claim (one embedding): unified_blend within 5% of the best single family on attributes",
                  "Claim (YooChoose): SASRec or prod2vec above most-popular on Recall@20",
                  "far smaller than the published split", "Online Retail: "):
        assert claim in text
    assert "seeded random 80%/20% split" in text
    for family in ("image_siamese", "unified"):
        picture = small_report.markdown.parent / "plots" / f"myntra_neighbours_{family}.png"
        assert picture.stat().st_size > 10_000 and f'src="plots/{picture.name}"' in page
    assert text.count("| tfidf_lr |") >= 2 and "<table>" in page


@pytest.mark.integration
def test_real_report_numbers_image_family_beats_chance_on_colour_and_sessions_beat_popularity(small_report):
    numbers = json.loads((small_report.markdown.parent / "results.json").read_text())["datasets"]
    colour = numbers["myntra"]["image_basecolour"]
    assert colour["image_siamese_lr"]["macro_f1"] > 2 * colour["random_lr"]["macro_f1"]
    assert numbers["myntra"]["image_claim"] is True
    summary = numbers["myntra"]["summary"]
    assert summary["tfidf_lr"]["rel_tfidf_lr"] == 0 and summary["text_minilm"]["macro_f1"] > summary["random"]["macro_f1"]
    assert summary["unified_blend"]["macro_f1"] > summary["random"]["macro_f1"]  # served and scored beside the others
    recall = {family: row["recall@20"] for family, row in numbers["yoochoose"]["table"].items()}
    assert max(recall["sasrec"], recall["prod2vec"]) > recall["most_popular"]
    # Online Retail: the counts are those of the imported shop, and the AUC is there exactly when the claim
    # says it is (the sample has no returned line, so today the claim says why there is none).
    from prodvec.core.shop import load_shop

    orders = load_shop(small_report.markdown.parent.parent / "work" / "retail").orders
    retail = numbers["online_retail"]
    assert retail["order_lines"] == len(orders) > 0 and retail["returned"] == int(orders[C.RETURNED].sum())
    assert retail["orders"] == orders[C.ORDER_ID].nunique()
    (claim,) = retail["claims"]
    assert (retail["auc"] is None) == claim.startswith("Online Retail: no cancellation (return) AUC")
    if retail["auc"] is not None:
        assert all(0.0 <= row["return_auc"] <= 1.0 for row in retail["auc"].values())
    else:
        assert f"{len(orders):,} order lines" in claim
