"""text_minilm loads its bundled weights with the network cut off, and knows synonyms it was never shown together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from prodvec.producers.text_minilm import product_texts

# Runs in a fresh interpreter: the hub switched off by the environment and every
# socket connection refused, so a download attempt fails instead of passing quietly.
OFFLINE_RUN = """
import json, socket
import numpy as np

def refuse(*args, **kwargs):
    raise OSError("network is cut off in this test")

socket.socket.connect = refuse
socket.create_connection = refuse

from prodvec.core.producer import TrainContext
from prodvec.producers import make_producer
from tests.producer_data import SYNONYMS, known_answer_shop, same_category_share

shop, truth = known_answer_shop()
emb = make_producer("text_minilm", {"dim": 16}).train(shop, TrainContext(cutoff=shop.end, progress=False))
vectors, found = emb.lookup(shop.products["product_id"])
unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
# The synonym is the title's first word; neighbours that share it say nothing about synonyms.
word = shop.products["title"].str.split().str[0].to_numpy()
sims = unit @ unit.T
sims[word[:, None] == word[None, :]] = -np.inf
neighbours = np.argsort(-sims, axis=1)[:, :10]
synonym = shop.products["synonym"].to_numpy()
same, other = [], []
for category in SYNONYMS:
    a, b = (truth == category) & (synonym == "0"), (truth == category) & (synonym == "1")
    rest = (truth != category) & (synonym == "1")
    same.append(float((unit[a] @ unit[b].T).mean()))
    other.append(float((unit[a] @ unit[rest].T).mean()))
print(json.dumps({
    "covered": float(found.mean()),
    "share": same_category_share(vectors, truth),
    "cross_word_share": float((truth[neighbours] == truth[:, None]).mean()),
    # Chance for the above: of the other-word products, those of the row's category.
    "cross_word_chance": float(np.mean([((truth == t) & (word != w)).sum() / (word != w).sum()
                                        for t, w in zip(truth, word)])),
    "same": same, "other": other,
}))
"""


def test_text_minilm_needs_no_network_and_knows_synonyms():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", OFFLINE_RUN], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["covered"] == 1.0
    assert result["share"] > 0.8, result
    # "tee"/"tshirt", "denim"/"jeans", ... never share a title, and nothing is trained on the shop:
    # neighbours with another first word still lean to the same category, by pretraining alone.
    assert result["cross_word_share"] > 2 * result["cross_word_chance"], result
    same, other = sum(result["same"]) / 4, sum(result["other"]) / 4
    assert same > other + 0.08, result


def test_product_texts_join_title_and_description():
    products = pd.DataFrame({"title": ["Tee", None, "Dress"], "description": ["Soft. Wash cold.", "Only words.", None]})
    assert product_texts(products).tolist() == ["Tee. Soft. Wash cold.", "Only words.", "Dress"]
    assert product_texts(products, sentences=1).tolist() == ["Tee. Soft.", "Only words.", "Dress"]
