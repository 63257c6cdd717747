"""mrnet alone on the real-report's Myntra sample: where does articleType information go?

Trains only the `mrnet` family on exactly the products, split and hidden
labels `prodvec real-report` uses (`prodvec.report.real.myntra`), and scores
articleType with the report's classifier (logistic regression on the
standardised vector, macro-F1 over classes with >= 5 training products)
against TF-IDF-LR on the same rows. Besides what is served it scores the
stages inside the producer: the shared BiLSTM output z, the per-category
adapted vectors, and the sparse autoencoder's code. A fraction of the
report's cost (no other family, no Feast, no forests), so settings can be
compared in minutes:

    nice -n 19 .venv/bin/python benchmarks/mrnet_myntra.py --data ../shared/data --work /tmp/mrnet_myntra \
        [--set epochs=16 --set desc_tokens=0 ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd


def score_lr(x_train: np.ndarray, x_test: np.ndarray, y_train: pd.Series, y_test: pd.Series) -> float:
    """articleType macro-F1 as `compare_on_tasks` computes its FULL/LR row."""
    from threadpoolctl import threadpool_limits

    from prodvec.consumers.mrnet_comparison import LR, TFIDF, MRNetComparisonConfig, _fit_predict, _scores, learnable_rows

    config = MRNetComparisonConfig()
    _, fit_rows, scored = learnable_rows(y_train, y_test, np.flatnonzero(y_train.notna().to_numpy()),
                                         config.min_class_train)
    with threadpool_limits(1):
        predicted = _fit_predict(TFIDF if hasattr(x_train, "tocsr") else "dense", LR, config, x_train[fit_rows],
                                 y_train.iloc[fit_rows].to_numpy(), x_test[scored])
    return _scores(y_test.to_numpy()[scored], predicted)["macro_f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/mrnet_myntra"))
    parser.add_argument("--set", action="append", default=[], help="MRNetConfig field=value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="write the stages, aligned with the sample, to this .npz")
    args = parser.parse_args()

    import prodvec.producers.mrnet as mrnet
    from prodvec.consumers.mrnet_comparison import title_tfidf
    from prodvec.core import columns as C
    from prodvec.core.producer import TrainContext
    from prodvec.core.shop import load_shop
    from prodvec.producers import make_producer
    from prodvec.report.real.common import RealConfig, import_sample
    from prodvec.report.real.myntra import catalogue_sample, held_out, hide_labels

    real = RealConfig(seed=args.seed)
    shop_dir = args.work / "myntra"
    shop = load_shop(shop_dir) if (shop_dir / "products.parquet").exists() else \
        import_sample("myntra", args.data / "myntra", shop_dir, print)
    products = catalogue_sample(shop.products, real.myntra_photos, real.myntra_without_photo, real.seed)
    test = held_out(len(products), real.test_share, real.seed)
    seen = replace(shop, products=hide_labels(products, test, [C.CATEGORY, *shop.side_info_columns]))

    # The stages inside train(), captured on their way through.
    stages: dict[str, np.ndarray] = {}
    fit_adapters, fit_sae = mrnet.fit_group_adapters, mrnet.fit_sparse_autoencoder

    def adapters(z, *a, **k):
        stages["z"] = z
        stages["adapted"] = out = fit_adapters(z, *a, **k)
        return out

    def sae(x, *a, **k):
        code, state = fit_sae(x, *a, **k)
        stages["code"] = code
        return code, state

    mrnet.fit_group_adapters, mrnet.fit_sparse_autoencoder = adapters, sae
    # make_producer types each FIELD=VALUE by the config field it sets.
    producer = make_producer("mrnet", {"seed": args.seed, **dict(s.split("=", 1) for s in args.set)})
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    emb = producer.train(seen, TrainContext(cutoff=seen.end, progress=False))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    wall = time.perf_counter() - wall0

    # Rows of the served table in sample order (mrnet drops untitled products: they get zeros, as a miss does).
    row = pd.Index(emb.ids).get_indexer(products[C.PRODUCT_ID].astype(str).to_numpy())
    titled = np.flatnonzero(row >= 0)

    def aligned(matrix: np.ndarray) -> np.ndarray:
        out = np.zeros((len(products), matrix.shape[1]), dtype=np.float32)
        out[titled] = matrix[row[titled]]
        return out

    y = products[C.CATEGORY].reset_index(drop=True)
    y_train, y_test = y[~test].reset_index(drop=True), y[test].reset_index(drop=True)
    tf_train, tf_test = title_tfidf(products.loc[~test, C.TITLE], products.loc[test, C.TITLE])
    reference = score_lr(tf_train, tf_test, y_train, y_test)
    result = {"settings": settings, "train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1),
              "card": producer.card_extras_.get("mrnet", {}), "tfidf_lr": round(reference, 4)}
    for name, matrix in {**stages, "served": emb.vectors}.items():
        full = aligned(matrix)
        f1 = score_lr(full[~test], full[test], y_train, y_test)
        result[name] = {"articleType_f1": round(f1, 4), "rel": round(f1 / reference - 1, 4)}
    if args.save:
        np.savez(args.save, test=test, category=y.to_numpy(dtype=str), titles=products[C.TITLE].to_numpy(dtype=str),
                 **{name: aligned(matrix) for name, matrix in {**stages, "served": emb.vectors}.items()})
    # The category head itself (linear on z): what the network predicts for held-out products.
    art = producer.artifacts_
    if "z" in stages and f"head.{C.CATEGORY}.weight" in art:
        logits = aligned(stages["z"]) @ art[f"head.{C.CATEGORY}.weight"].T + art[f"head.{C.CATEGORY}.bias"]
        units = art[f"head.{C.CATEGORY}.units"]
        from prodvec.consumers.mrnet_comparison import _learnable, _scores

        classes = _learnable(y_train, np.flatnonzero(y_train.notna().to_numpy()), 5)
        scored = y_test.isin(classes).to_numpy()
        predicted = units[logits[test].argmax(1)]
        result["category_head_test_f1"] = round(_scores(y_test.to_numpy()[scored], predicted[scored])["macro_f1"], 4)
        fit = y_train.isin(classes).to_numpy()
        result["category_head_train_f1"] = round(
            _scores(y_train.to_numpy()[fit], units[logits[~test].argmax(1)][fit])["macro_f1"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
