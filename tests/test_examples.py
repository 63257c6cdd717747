"""The downstream recipe (consumers/join_embeddings.py) runs and joins point-in-time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prodvec.consumers import join_embeddings as example


@pytest.mark.integration
def test_join_example_runs_and_gives_each_row_the_snapshot_of_its_own_time(served_home, capsys):
    joined = example.main(["--family", "text_dae", "--home", str(served_home.home), "--shop", str(served_home.shop_dir)])
    assert "embedding columns per row" in capsys.readouterr().out
    assert len(joined) == 5 and "label_returned" in joined

    # Point-in-time: the same product asked before the first cutoff has nothing; after it, that snapshot.
    product = served_home.shop.products["product_id"].iloc[0]
    first, second = served_home.schedule.cutoffs(served_home.shop)[:2]
    rows = pd.DataFrame({"product_id": [product] * 3,
                         "event_timestamp": [first - pd.Timedelta(hours=1), first + pd.Timedelta(hours=1),
                                             second + pd.Timedelta(hours=1)]})
    out = example.join_embeddings(rows, "text_dae", served_home.home)
    vectors = out[[c for c in out.columns if c.startswith("text_dae_") and c[9:].isdigit()]].to_numpy()
    assert out["text_dae_found"].tolist() == [False, True, True]
    assert not np.allclose(vectors[1], vectors[2]), "a later row reads the later snapshot"
