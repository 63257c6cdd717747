"""Session click logs: the importer on hand-written YooChoose and Diginetica files and on the real
samples, and the next-click evaluation on worlds with a known answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prodvec.core import columns as C
from prodvec.consumers.next_click import (
    POPULARITY,
    evaluate_next_click,
    evaluate_scorer,
    item_to_item_scorer,
    next_click_task,
    popularity_scorer,
    sequence_scorer,
    target_ranks,
)
from prodvec.importers.io import SourceError
from prodvec.importers.session_clicks import IMPORT_FILE, import_shop, read_clicks, read_split
from prodvec.core.embeddings import Embeddings
from prodvec.core.shop import load_shop
from prodvec.core.shop.model import Shop

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T0 = 1396437466  # 2014-04-02 11:17:46 UTC


def quiet(_msg: str) -> None:
    pass


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# -- the importer on hand-written files -----------------------------------------------
YOOCHOOSE_TRAIN = (
    "SessionId\tItemId\tTime\n"
    f"1\t100\t{T0}.5\n"
    f"1\t200\t{T0 + 60}.25\n"
    f"2\t200\t{T0 + 30}\n"
    f"2\t300\t{T0 + 90}\n"
)
YOOCHOOSE_TEST = (
    "SessionId\tItemId\tTime\n"
    f"3\t100\t{T0 + 3600}\n"
    f"3\t400\t{T0 + 3700}\n"
)


def test_yoochoose_clicks_become_a_shop_with_first_seen_products(tmp_path):
    source = write(tmp_path / "clicks.txt", YOOCHOOSE_TRAIN)
    shop = load_shop(import_shop(source, tmp_path / "shop", log=quiet), log=quiet)
    events = shop.events.sort_values([C.SESSION_ID, C.TS]).reset_index(drop=True)
    assert events[C.SESSION_ID].tolist() == ["1", "1", "2", "2"]
    assert events[C.PRODUCT_ID].tolist() == ["100", "200", "200", "300"]
    assert set(events[C.EVENT_TYPE]) == {C.CLICK}
    # No user in YooChoose: the session is the user, named apart from real user ids.
    assert events[C.USER_ID].tolist() == ["session:1", "session:1", "session:2", "session:2"]
    assert str(events[C.TS].dt.tz) == "UTC"
    start = pd.Timestamp(T0, unit="s", tz="UTC")
    assert events[C.TS].iloc[0] == start + pd.Timedelta(milliseconds=500)
    created = shop.products.set_index(C.PRODUCT_ID)[C.CREATED_AT]
    assert created.to_dict() == {"100": start + pd.Timedelta(milliseconds=500),
                                 "200": start + pd.Timedelta(seconds=30),  # first seen in session 2
                                 "300": start + pd.Timedelta(seconds=90)}
    assert set(shop.products.columns) == {C.PRODUCT_ID, C.CREATED_AT}
    assert not shop.has("text")
    assert read_split(shop.root) is None


def test_yoochoose_without_a_header_and_the_raw_challenge_format(tmp_path):
    headerless = write(tmp_path / "a.txt", YOOCHOOSE_TRAIN.split("\n", 1)[1])
    raw = write(tmp_path / "yoochoose-clicks.dat", "1,2014-04-07T10:51:09.277Z,214536502,0\n"
                                                   "1,2014-04-07T10:54:09.868Z,214536500,0\n")
    assert len(read_clicks(headerless)) == 4
    clicks = read_clicks(raw)
    assert clicks.attrs["dialect"] == "yoochoose-raw"
    assert clicks[C.TS].tolist() == [utc("2014-04-07 10:51:09.277"), utc("2014-04-07 10:54:09.868")]
    assert clicks[C.PRODUCT_ID].tolist() == ["214536502", "214536500"]


DIGINETICA = (
    "session_id;user_id;item_id;timeframe;eventdate\n"
    "1;NA;81766;526309;2016-05-09\n"
    "1;NA;31331;1000;2016-05-09\n"
    "2;17;3147;5000;2016-05-09\n"
    "2;17;32754;2000;2016-05-09\n"
    # Session 3 crosses midnight: its clicks carry two dates, the timeframe counts from its start.
    "3;NA;500;80000000;2016-05-09\n"
    "3;NA;600;90000000;2016-05-10\n"
)


def test_diginetica_times_are_the_session_day_plus_timeframe_and_missing_users_fall_back(tmp_path):
    shop = load_shop(import_shop(write(tmp_path / "views.csv", DIGINETICA), tmp_path / "shop", log=quiet), log=quiet)
    events = shop.events.set_index(C.PRODUCT_ID)
    day = utc("2016-05-09")
    assert events.loc["31331", C.TS] == day + pd.Timedelta(seconds=1)
    assert events.loc["81766", C.TS] == day + pd.Timedelta(milliseconds=526309)
    # 90,000 s after a start on 05-09 is 01:00 on 05-10, after the click at 22:13 on 05-09.
    assert events.loc["500", C.TS] == day + pd.Timedelta(seconds=80000)
    assert events.loc["600", C.TS] == day + pd.Timedelta(seconds=90000)
    assert events.loc["3147", C.USER_ID] == "17"  # a real user is kept (and not read as 17.0)
    assert events.loc["81766", C.USER_ID] == "session:1"
    session_two = shop.events[shop.events[C.SESSION_ID] == "2"].sort_values(C.TS)
    assert session_two[C.PRODUCT_ID].tolist() == ["32754", "3147"]  # ordered by timeframe, not by line
    assert shop.products.set_index(C.PRODUCT_ID).loc["32754", C.CREATED_AT] == day + pd.Timedelta(seconds=2)


def test_a_prepared_train_and_test_pair_is_one_shop_with_its_split_recorded(tmp_path):
    write(tmp_path / "src" / "x_train_full.txt", YOOCHOOSE_TRAIN)
    write(tmp_path / "src" / "x_test.txt", YOOCHOOSE_TEST)
    write(tmp_path / "src" / "README.md", "not a click log")
    shop = load_shop(import_shop(tmp_path / "src", tmp_path / "shop", log=quiet), log=quiet)
    split = read_split(shop.root)
    assert split == pd.Timestamp(T0 + 3600, unit="s", tz="UTC")
    before = shop.events[C.TS] < split
    assert before.sum() == 4 and set(shop.events.loc[~before, C.SESSION_ID]) == {"3"}
    meta = json.loads((shop.root / IMPORT_FILE).read_text())
    assert meta["files"]["train"]["clicks"] == 4 and meta["files"]["test"]["clicks"] == 2
    assert meta["split"]["test_clicks_on_items_not_in_train"] == 1
    # Re-importing a single file over it leaves no stale split behind.
    import_shop(tmp_path / "src" / "x_train_full.txt", shop.root, overwrite=True, log=quiet)
    assert read_split(shop.root) is None


@pytest.mark.parametrize("text, column, example", [
    (YOOCHOOSE_TRAIN + "4\t500\tyesterday\n", "Time", "'Time': 'yesterday'"),
    (YOOCHOOSE_TRAIN + "4\t\t1396437466\n", "ItemId", "'ItemId': ''"),
    (DIGINETICA + "9;NA;1;100;09/05/2016\n", "eventdate", "'eventdate': '09/05/2016'"),
    (DIGINETICA + "9;NA;1;-5;2016-05-09\n", "timeframe", "'timeframe': '-5'"),
])
def test_a_bad_line_names_the_file_the_column_and_the_row(tmp_path, text, column, example):
    with pytest.raises(SourceError) as err:
        import_shop(write(tmp_path / "log.csv", text), tmp_path / "shop", log=quiet)
    message = str(err.value)
    assert message.startswith(f"log.csv, column {column!r}") and "1 bad row" in message and example in message
    assert not (tmp_path / "shop").exists()


def test_dialect_can_be_forced_and_unknown_files_are_refused(tmp_path):
    source = write(tmp_path / "clicks.txt", YOOCHOOSE_TRAIN)
    assert read_clicks(source, "yoochoose").attrs["dialect"] == "yoochoose"
    with pytest.raises(SourceError, match="neither a diginetica header"):
        read_clicks(source, "diginetica")
    with pytest.raises(SourceError, match="cannot tell the click-log dialect.*dialect="):
        read_clicks(write(tmp_path / "other.csv", "a,b\n1,2\n"))
    with pytest.raises(ValueError, match="unknown dialect"):
        import_shop(source, tmp_path / "shop", dialect="retailrocket")
    write(tmp_path / "two" / "a.txt", YOOCHOOSE_TRAIN)
    write(tmp_path / "two" / "b.txt", YOOCHOOSE_TRAIN)
    with pytest.raises(SourceError, match="expected one click log"):
        import_shop(tmp_path / "two", tmp_path / "shop")


# -- the importer on the real samples ----------------------------------------------------
def real(folder: str) -> Path:
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(f"real data sample {path} is not present (the shared data folder lives beside the repository)")
    return path


def test_real_yoochoose_split_is_recovered(tmp_path):
    shop = load_shop(import_shop(real("yoochoose"), tmp_path / "shop", log=quiet), log=quiet)
    split = read_split(shop.root)
    assert len(shop.events) == 70_278 + 13_568 and len(shop.products) == 2_933
    before = shop.events[C.TS] < split
    assert before.sum() == 70_278 and shop.events.loc[before, C.SESSION_ID].nunique() == 17_794
    start = shop.events.groupby(C.SESSION_ID)[C.TS].min()
    assert (start >= split).sum() == 3_416


def test_real_diginetica_imports(tmp_path):
    shop = load_shop(import_shop(real("diginetica"), tmp_path / "shop", log=quiet), log=quiet)
    assert (len(shop.events), shop.events[C.SESSION_ID].nunique(), len(shop.products)) == (12_391, 2_986, 7_139)
    with_user = ~shop.events[C.USER_ID].str.startswith("session:")
    assert with_user.sum() == 4_710
    assert not shop.events[C.USER_ID].str.endswith(".0").any()


# -- next-click: the protocol on hand-built shops -------------------------------------------
SPLIT = utc("2024-01-10")


def click_shop(sessions: dict[str, tuple[str, list[str]]]) -> Shop:
    """A click-only shop: session -> (start time, items clicked a minute apart)."""
    rows = [(sid, item, utc(start) + pd.Timedelta(minutes=i))
            for sid, (start, items) in sessions.items() for i, item in enumerate(items)]
    events = pd.DataFrame(rows, columns=[C.SESSION_ID, C.PRODUCT_ID, C.TS])
    events[C.USER_ID] = "session:" + events[C.SESSION_ID]
    events[C.EVENT_TYPE] = C.CLICK
    products = events.groupby(C.PRODUCT_ID)[C.TS].min().rename(C.CREATED_AT).reset_index()
    return Shop(root=Path("."), products=products, events=events)


def test_ties_count_against_the_model_and_unscorable_targets_miss():
    scores = np.array([[3.0, 2.0, 2.0, np.nan], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, np.nan]])
    np.testing.assert_array_equal(target_ranks(scores, np.array([1, 0, 3])), [3, 4, np.inf])


def test_most_popular_has_the_hand_computed_recall_and_mrr():
    # Training clicks: a x5, b x4, c x3, d x2, e x1 (plus one click on f split over a straddling session).
    shop = click_shop({
        "t1": ("2024-01-01", ["a", "b", "c", "d", "e"]), "t2": ("2024-01-02", ["a", "b", "c", "d"]),
        "t3": ("2024-01-03", ["a", "b", "c"]), "t4": ("2024-01-04", ["a", "b"]), "t5": ("2024-01-05", ["a"]),
        # Starts before the split, so it is not a test session even though it goes on after it.
        "late": ("2024-01-09 23:59", ["f", "a", "b"]),
        # "x" was never clicked in training: removed, so c follows a.
        "s1": ("2024-01-10", ["b", "x", "a", "c"]),
        "s2": ("2024-01-11", ["x", "e"]),  # one known click left: dropped
    })
    task = next_click_task(shop, SPLIT)
    assert list(task.items) == ["a", "b", "c", "d", "e", "f"]
    assert task.n_sessions == 1 and task.n_predictions == 2 and task.test_clicks_removed == 2
    # Targets a (rank 1) and c (rank 3).
    assert evaluate_scorer(task, popularity_scorer(task), k=2) == {"recall@2": 0.5, "mrr@2": 0.5}
    assert evaluate_scorer(task, popularity_scorer(task), k=3) == pytest.approx({"recall@3": 1.0, "mrr@3": (1 + 1 / 3) / 2})


def group_world(n_groups: int = 30, size: int = 10, sessions_per_group: int = 40, seed: int = 0) -> tuple[Shop, dict]:
    """Items in groups; every session walks 4-6 items of one group; group popularity is very uneven.

    Training sessions fall before SPLIT, test sessions after. Most-popular knows
    only the few big groups; an item-to-item model that learned the groups
    ranks a session's group first.
    """
    rng = np.random.default_rng(seed)
    group_of = {f"g{g:02d}i{i}": g for g in range(n_groups) for i in range(size)}
    members = [[item for item, g in group_of.items() if g == group] for group in range(n_groups)]
    weights = 1.0 / np.arange(1, n_groups + 1)
    sessions = {}
    for phase, base in (("train", utc("2024-01-01")), ("test", SPLIT)):
        if phase == "train":  # one session through each whole group (every item gets clicked), then skewed
            groups = np.r_[np.arange(n_groups), rng.choice(n_groups, n_groups * sessions_per_group,
                                                             p=weights / weights.sum())]
        else:  # every group alike, so popularity cannot help
            groups = np.repeat(np.arange(n_groups), 5)
        count = len(groups)
        for s, group in enumerate(groups):
            length = size if phase == "train" and s < n_groups else rng.integers(4, 7)
            items = list(rng.choice(members[group], length, replace=False))
            start = base + pd.Timedelta(hours=1 + s * 24 * 8 / count)
            sessions[f"{phase}{s}"] = (str(start.tz_localize(None)), items)
    return click_shop(sessions), group_of


def test_an_oracle_item_to_item_model_ranks_the_session_group_first():
    shop, group_of = group_world()
    task = next_click_task(shop, SPLIT)
    assert len(task.items) == 300  # every item was clicked in training, so each group has ten candidates
    # One-hot group vectors: all ten items of the clicked item's group tie at cosine 1, so with ties
    # counted against the model every target ranks exactly 10th.
    vectors = np.eye(30)[[group_of[i] for i in task.items]]
    oracle = item_to_item_scorer(task, Embeddings(task.items, vectors))
    assert evaluate_scorer(task, oracle, k=20) == pytest.approx({"recall@20": 1.0, "mrr@20": 0.1})
    assert evaluate_scorer(task, oracle, k=9)["recall@9"] == 0.0
    popular = evaluate_scorer(task, popularity_scorer(task), k=20)["recall@20"]
    assert popular < 0.25, popular  # the 20 most clicked items cover about two of the 30 groups


class ChainOracle:
    """A stand-in sequence model: scores 1 for the item after the prefix's last item in `chain`."""

    def __init__(self, chain: list[str]):
        self.product_ids_ = np.array(chain)
        self.seen: list[list[str]] = []

    def next_item_scores_batch(self, prefixes):
        self.seen += [list(p) for p in prefixes]
        out = np.zeros((len(prefixes), len(self.product_ids_)), np.float32)
        for row, prefix in enumerate(prefixes):
            out[row, (list(self.product_ids_).index(prefix[-1]) + 1) % len(self.product_ids_)] = 1
        return out


def test_a_sequence_model_reads_whole_prefixes_with_repeats_collapsed():
    chain = ["a", "b", "c", "d"]
    shop = click_shop({"t1": ("2024-01-01", chain + ["a"]), "s1": ("2024-01-10", ["a", "a", "b", "c"])})
    task = next_click_task(shop, SPLIT)
    model = ChainOracle(chain)
    result = evaluate_scorer(task, sequence_scorer(task, model), k=1)
    # Predictions: a after [a] (a miss: the chain says b), b after [a, a], c after [a, a, b].
    assert result == pytest.approx({"recall@1": 2 / 3, "mrr@1": 2 / 3})
    assert model.seen == [["a"], ["a"], ["a", "b"]]


def test_evaluate_next_click_table_and_a_skipped_family():
    shop = click_shop({"t1": ("2024-01-01", ["a", "b", "c"]), "t2": ("2024-01-02", ["b", "c"]),
                       "s1": ("2024-01-10", ["a", "b", "c"])})
    lines = []
    table = evaluate_next_click(shop, SPLIT, families=("text_dae",), log=lines.append)
    assert list(table.index) == [POPULARITY]
    assert list(table.columns[:4]) == ["recall@20", "mrr@20", "n_predictions", "train_seconds"]
    assert table.loc[POPULARITY, "recall@20"] == 1.0 and table.loc[POPULARITY, "n_predictions"] == 2
    assert any(line.startswith("text_dae: skipped: needs text") for line in lines)


def test_prod2vec_beats_most_popular_on_a_world_of_item_groups():
    shop, _ = group_world()
    table = evaluate_next_click(shop, SPLIT, families=("prod2vec",), log=quiet,
                                overrides={"prod2vec": {"dim": 16, "epochs": 20, "sample": 0.0}})
    recall = table["recall@20"]
    assert recall["prod2vec"] > 0.8 and recall["prod2vec"] > 3 * recall[POPULARITY], recall.to_dict()


@pytest.mark.integration
def test_sasrec_and_bpr_beat_most_popular_on_a_world_of_item_groups():
    import torch

    shop, _ = group_world()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is as fast and immune to a busy machine's spin-waits
    try:
        table = evaluate_next_click(shop, SPLIT, families=("clicks_bpr", "sasrec"), log=quiet, overrides={
            "clicks_bpr": {"dim": 16, "epochs": 40, "batch_size": 512, "lr": 0.05},
            "sasrec": {"dim": 16, "epochs": 10, "batch_size": 64, "lr": 1e-2, "negatives": 32},
        })
    finally:
        torch.set_num_threads(threads)
    recall = table["recall@20"]
    assert recall["sasrec"] > 3 * recall[POPULARITY] and recall["clicks_bpr"] > 3 * recall[POPULARITY], recall.to_dict()
