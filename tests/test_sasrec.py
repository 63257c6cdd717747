"""sasrec learned which products follow which: neighbours share a category, and next items are predicted."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from prodvec.core import columns as C
from prodvec.core.producer import TrainContext
from prodvec.producers.sasrec import SASRec, SASRecConfig, sequence_matrix
from prodvec.producers.sequences import as_lists, session_sequences
from tests.producer_data import known_answer_shop, same_category_share

# Enough steps on the 800 five-click sessions to learn, in a few seconds.
SETTINGS = {"dim": 16, "batch_size": 32, "epochs": 5, "lr": 2e-2, "negatives": 32}


@pytest.fixture(scope="module")
def trained():
    """A model trained without each user's last session, and those sessions."""
    shop, truth = known_answer_shop()
    events = shop.events
    held = events[C.SESSION_ID].str.endswith("-4")
    producer = SASRec(SASRecConfig(**SETTINGS))
    # The model is tiny: one thread is as fast, and a busy machine's OpenMP spin-waits cannot slow it tenfold.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        emb = producer.train(replace(shop, events=events[~held]), TrainContext(cutoff=shop.end, progress=False))
    finally:
        torch.set_num_threads(threads)
    category = pd.Series(truth, index=shop.products[C.PRODUCT_ID])
    return producer, emb, category, events[held], events[~held]


def test_sequence_matrix_keeps_the_last_items_left_padded():
    codes = np.array([1, 2, 3, 4, 5, 6])
    rows = sequence_matrix(codes, np.array([0, 2, 6]), 3)
    np.testing.assert_array_equal(rows, [[0, 1, 2], [4, 5, 6]])


def test_sasrec_neighbours_share_a_category(trained):
    _, emb, category, _, _ = trained
    share = same_category_share(emb.vectors, category.loc[emb.ids].to_numpy())
    assert share > 0.8, f"neighbours share category {share:.2f}; chance is 0.25"


def test_sasrec_predicts_the_next_item_of_held_out_sessions(trained):
    producer, _, category, held, seen = trained
    prefixes, following = [], []
    for session in as_lists(*session_sequences(held)):
        for k in range(1, len(session)):
            prefixes.append(session[:k])
            following.append(session[k])
    scores = producer.next_item_scores_batch(prefixes)
    assert scores.shape == (len(prefixes), len(producer.product_ids_))
    np.testing.assert_allclose(producer.next_item_scores(prefixes[0]), scores[0], rtol=1e-5, atol=1e-6)
    ids = producer.product_ids_
    top = np.argsort(-scores, axis=1)[:, :10]
    # Users keep to one category: the best guess must be of the category the session is in.
    right_category = (category.loc[ids[top[:, 0]]].to_numpy() == category.loc[following].to_numpy()).mean()
    assert right_category > 0.8, f"top item in the true next item's category {right_category:.2f}; chance 0.25"
    # Within a category the next item is random (1 in 75), so the exact item is in the top 10 at most
    # ~13% of the time; the most clicked products hit far less.
    hit = (ids[top] == np.array(following)[:, None]).any(1).mean()
    popular = seen[C.PRODUCT_ID].value_counts().index[:10]
    baseline = np.isin(following, popular).mean()
    assert hit > 2 * baseline and hit > 0.08, (hit, baseline)
