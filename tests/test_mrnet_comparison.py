"""The MRNet comparison: known answers on synthetic titles and features, then one run through Feast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prodvec.core import columns as C
from prodvec.core import feast_ops
from prodvec.consumers import mrnet_comparison as M
from prodvec.consumers.evaluation import RANDOM, EvalContext
from prodvec.consumers.mrnet_comparison import COVERED, FULL, LR, RF, SMALL, TFIDF, TFIDF_LR, TFIDF_RF, UNSEEN
from prodvec.core.snapshots import latest_views
from prodvec.pipeline import Schedule, run_pipeline
from prodvec.core.shop import load_shop
from prodvec.generator import GeneratorConfig, generate_shop
from prodvec.core.shop.model import Shop
from prodvec.core.snapshots import SnapshotStore

# Cheap forests: the tests check the bookkeeping, not the forest's quality.
FAST = M.MRNetComparisonConfig(small_train=60, rf_trees=20)
WORDS = [f"w{i}" for i in range(40)]
LABELS = ("red", "green", "blue")


def synthetic(n_train: int = 240, n_test: int = 90, titles_carry_label: bool = False, seed: int = 0):
    """Labels in three classes; titles of random filler words, naming the label or not; two dense features."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    labels = rng.choice(LABELS, size=n)
    titles = [" ".join(rng.choice(WORDS, size=4)) + (f" {label}" if titles_carry_label else "") for label in labels]
    code = pd.Index(LABELS).get_indexer(labels)
    oracle = np.eye(3, dtype=np.float32)[code] + rng.normal(0, 0.05, (n, 3)).astype(np.float32)
    noise = rng.normal(size=(n, 8)).astype(np.float32)
    frame = pd.DataFrame({"title": titles, "colour": labels})
    features = {"oracle": (oracle[:n_train], oracle[n_train:]), "noise": (noise[:n_train], noise[n_train:])}
    return frame.iloc[:n_train], frame.iloc[n_train:], features


def scored(train, test, features, config=FAST, **kwargs):
    return M.compare_on_tasks(train["title"], test["title"], train[["colour"]], test[["colour"]], features, config,
                            **kwargs)


def pick(scores, features, model=LR, setting=FULL):
    row = scores[(scores["features"] == features) & (scores["model"] == model) & (scores["setting"] == setting)]
    assert len(row) == 1
    return row.iloc[0]


def test_a_feature_that_encodes_the_label_beats_tfidf_of_uninformative_titles():
    scores = scored(*synthetic())
    oracle, tfidf = pick(scores, "oracle"), pick(scores, TFIDF)
    assert oracle["macro_f1"] > 0.95 and pick(scores, "oracle", RF)["macro_f1"] > 0.95
    assert tfidf["macro_f1"] < 0.6  # titles say nothing about the label: about chance (1/3)
    assert oracle["rel_tfidf_lr"] > 0.5
    assert pick(scores, TFIDF)["rel_tfidf_lr"] == 0.0


def test_titles_that_name_the_label_make_tfidf_lr_near_perfect():
    scores = scored(*synthetic(titles_carry_label=True))
    assert pick(scores, TFIDF)["macro_f1"] > 0.95
    assert pick(scores, TFIDF, RF)["macro_f1"] > 0.9
    assert pick(scores, "noise")["rel_tfidf_lr"] < -0.3


def test_relative_scores_are_each_score_over_tfidf_lr_minus_one_and_the_summary_averages_them():
    train, test, features = synthetic(titles_carry_label=True)
    both = pd.concat([train, test]).assign(size=lambda f: np.where(f["title"].str.contains("w1 "), "big", "small"))
    scores = M.compare_on_tasks(both["title"][:240], both["title"][240:], both[["colour", "size"]][:240],
                              both[["colour", "size"]][240:], features, FAST)
    for (task, setting), part in scores[scores["setting"] != COVERED].groupby(["task", "setting"]):
        reference = part[(part["features"] == TFIDF) & (part["model"] == LR)]["macro_f1"].item()
        assert np.allclose(part["rel_tfidf_lr"], part["macro_f1"] / reference - 1), (task, setting)
    table = M.summarise(scores)
    assert {"oracle", "noise", TFIDF_LR, TFIDF_RF} <= set(table.index)
    full = scores[(scores["setting"] == FULL) & (scores["model"] == LR) & (scores["features"] == "oracle")]
    assert table.loc["oracle", "rel_tfidf_lr"] == pytest.approx(full["rel_tfidf_lr"].mean())
    forest = scores[(scores["setting"] == FULL) & (scores["model"] == RF) & (scores["features"] == TFIDF)]
    assert table.loc[TFIDF_RF, "macro_f1"] == pytest.approx(forest["macro_f1"].mean())
    assert table.loc[TFIDF_LR, "rel_tfidf_lr"] == 0.0 and np.isnan(table.loc[TFIDF_LR, "macro_f1_rf"])
    small = scores[(scores["setting"] == SMALL) & (scores["model"] == LR) & (scores["features"] == "oracle")]
    assert table.loc["oracle", "small_train_rel"] == pytest.approx(small["rel_tfidf_lr"].mean())


def test_the_small_training_set_uses_that_many_products_and_the_same_test_set():
    scores = scored(*synthetic())
    small, full = pick(scores, "oracle", setting=SMALL), pick(scores, "oracle")
    assert small["train"] == FAST.small_train and full["train"] == 240
    assert small["test"] == full["test"] == 90


def test_classes_too_rare_to_learn_leave_training_and_test():
    train, test, features = synthetic()
    train, test = train.copy(), test.copy()
    train.iloc[:3, 1] = "purple"  # three training products, fewer than min_class_train
    test.iloc[:4, 1] = "purple"
    test.iloc[4:6, 1] = None  # unlabelled: never scored
    row = pick(scored(train, test, features), "oracle")
    assert row["classes"] == 3 and row["train"] == 237 and row["test"] == 84


def test_the_unseen_population_is_the_test_titles_least_like_any_training_title():
    rng = np.random.default_rng(1)
    train_titles = pd.Series([" ".join(rng.choice(WORDS[:20], size=3)) for _ in range(100)])
    # 30 test titles repeat a training title; 10 share only one word with any; 10 share none.
    repeats = list(train_titles.iloc[:30])
    one_word = [f"{w} zz{i} yy{i}" for i, w in enumerate(rng.choice(WORDS[:20], size=10))]
    fresh = [f"new{i} words{i} only{i}" for i in range(10)]
    test_titles = pd.Series(repeats + one_word + fresh)
    similarity = M.title_novelty(train_titles, test_titles)
    assert np.allclose(similarity[:30], 1.0, atol=1e-5) and np.allclose(similarity[40:], 0.0)
    assert (similarity[30:40] > 0).all() and (similarity[30:40] < 0.9).all()
    mask = M.unseen_population(similarity, 0.2)
    assert mask.sum() == 10 and mask[40:].all()
    assert M.unseen_population(similarity, 0.4)[30:].all() and not M.unseen_population(similarity, 0.4)[:30].any()


def test_the_unseen_setting_scores_the_same_models_on_the_unseen_titles_only():
    train, test, features = synthetic(titles_carry_label=True)
    test = test.copy()
    # The last 20 test titles keep their label word but otherwise use words no training title has.
    test.iloc[-20:, 0] = [f"fresh{i} brandnew{i} {label}" for i, label in enumerate(test["colour"].iloc[-20:])]
    config = M.MRNetComparisonConfig(small_train=60, rf_trees=20, unseen_quantile=0.2)
    unseen = M.unseen_population(M.title_novelty(train["title"], test["title"]), 0.2)
    assert unseen.sum() >= 0.2 * len(test) and unseen[-20:].sum() == unseen.sum()
    scores = scored(train, test, features, config=config)
    assert pick(scores, "oracle", setting=UNSEEN)["test"] == pick(scores, TFIDF, setting=UNSEEN)["test"] == unseen.sum()
    assert pick(scores, "oracle", setting=UNSEEN)["train"] == pick(scores, "oracle")["train"]


def test_covered_scores_a_family_only_where_it_has_vectors_against_tfidf_on_the_same_rows():
    train, test, features = synthetic()
    found = np.arange(len(test)) % 3 > 0
    scores = scored(train, test, features, covered={"oracle": found})
    covered = pick(scores, "oracle", setting=COVERED)
    assert covered["test"] == found.sum()
    assert scores[(scores["setting"] == COVERED) & (scores["features"] == "noise")].empty


def shop_with(columns: dict[str, list]) -> Shop:
    n = len(next(iter(columns.values())))
    products = pd.DataFrame({C.PRODUCT_ID: [f"P{i}" for i in range(n)],
                             C.CREATED_AT: pd.Timestamp("2025-01-01", tz="UTC"),
                             C.TITLE: [f"thing {i}" for i in range(n)], **columns})
    return Shop(Path("."), products)


def test_tasks_are_the_columns_mrnet_does_not_train_on_unless_chosen():
    n = 100
    shop = shop_with({C.CATEGORY: ["a", "b"] * (n // 2), "colour": ["red", "blue", "green", "black"] * (n // 4),
                      # Labelled for a tenth of the products: below mrnet's min_labelled, so never its task.
                      "material": ["wool", "silk"] * 5 + [None] * (n - 10)})
    tasks, trained, fallback = M.choose_tasks(shop, M.MRNetComparisonConfig())
    assert tasks == ["material"] and trained == {C.CATEGORY, "colour"} and not fallback
    assert M.choose_tasks(shop, M.MRNetComparisonConfig(tasks=("colour",)))[0] == ["colour"]
    assert M.choose_tasks(shop, M.MRNetComparisonConfig(exclude_mrnet_tasks=False))[0] == [C.CATEGORY, "colour",
                                                                                        "material"]
    everything_trained = shop_with({C.CATEGORY: ["a", "b"] * (n // 2)})
    assert M.choose_tasks(everything_trained, M.MRNetComparisonConfig())[0] == [C.CATEGORY]
    assert M.choose_tasks(everything_trained, M.MRNetComparisonConfig())[2], "flagged: no unseen task was left"


@pytest.mark.integration
def test_through_feast_a_text_family_beats_random_and_the_result_has_the_reports_shape(tmp_path):
    generate_shop(tmp_path / "shop", tmp_path / "shop_truth", GeneratorConfig(n_products=300, seed=3))
    shop = load_shop(tmp_path / "shop", log=lambda *_: None)
    schedule = Schedule(first_days=56, every_days=56, eval_days=112)
    home = tmp_path / "home"
    run_pipeline(shop, home, families=("text_dae",), schedule=schedule, overrides={"text_dae": {"epochs": 10}},
                 progress=False, log=lambda *_: None)
    views = latest_views(SnapshotStore(home))
    ctx = EvalContext(shop, feast_ops.open_store(home), views, schedule.eval_cutoff(shop))

    result = M.evaluate_mrnet_comparison(ctx, FAST)

    assert list(result.table.index) == ["text_dae", RANDOM, TFIDF_LR, TFIDF_RF]
    assert result.headline == "rel_tfidf_lr"
    for column in ("macro_f1", "rel_tfidf_lr", "small_train_rel", "unseen_rel", "dim"):
        assert column in result.table.columns
    assert result.table.loc["text_dae", "macro_f1"] > result.table.loc[RANDOM, "macro_f1"] + 0.1
    assert result.table.loc["text_dae", "rel_tfidf_lr"] > result.table.loc[RANDOM, "rel_tfidf_lr"]
    assert result.table.loc[TFIDF_LR, "rel_tfidf_lr"] == 0.0
    tasks = result.extra["tasks"]
    assert C.CATEGORY in tasks.index and tasks["mrnet_trained"].all(), "the generated shop's columns all train mrnet"
    per_task = next(iter(result.extra.values()))
    assert list(per_task.columns) == ["text_dae", RANDOM, TFIDF_LR, TFIDF_RF]
    assert any("zero vector" in note for note in result.notes)


def test_the_mrnet_myntra_benchmark_scores_as_the_report_does():
    """benchmarks/mrnet_myntra.py iterates on mrnet with its own LR scorer: it must give compare_on_tasks'
    FULL/LR macro-F1, for dense features and TF-IDF, or its numbers would not predict the report's."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mrnet_myntra.py"
    spec = importlib.util.spec_from_file_location("mrnet_myntra", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    train, test, features = synthetic(titles_carry_label=True)
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    train.loc[:9, "colour"] = None  # unlabelled training rows are left out of the fit
    train.loc[10:12, "colour"] = "purple"  # too rare to learn: left out of training and test
    test.loc[:1, "colour"] = "purple"
    scores = scored(train, test, features, config=M.MRNetComparisonConfig(small_train=60, rf_trees=5))
    noise = bench.score_lr(*features["noise"], train["colour"], test["colour"])
    assert noise == pytest.approx(pick(scores, "noise")["macro_f1"])
    tfidf = bench.score_lr(*M.title_tfidf(train["title"], test["title"]), train["colour"], test["colour"])
    assert tfidf == pytest.approx(pick(scores, TFIDF)["macro_f1"])
