"""How far the return model's shop-side features are from the generator's truth, cause by cause.

The report's return model (`consumers.returns`) without embeddings, on the
report's own split of a generated shop, then the same model given the
generator's true logit part of one cause (or several) as one more feature:
how much AUC a perfect reading of that cause would add. Where a family's
gain is small, this says whether the cause it encodes had much to give.

    .venv/bin/python benchmarks/return_ceiling.py workspace/shop [--cutoff 2025-04-23] [--train-from 2025-01-29]

The shop's truth must lie beside it (`prodvec generate` writes SHOP_truth/).
"""

from __future__ import annotations

import argparse

import pandas as pd
from sklearn.metrics import roc_auc_score

CAUSES = (("fit",), ("quality",), ("style",), ("visual",), ("visual", "style"), ("quality", "visual"),
          ("quality", "visual", "style"), ("fit", "quality", "visual", "style"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shop")
    parser.add_argument("--cutoff", default="2025-04-23", help="the report's evaluation cutoff")
    parser.add_argument("--train-from", default="2025-01-29", help="the report's first snapshot cutoff")
    args = parser.parse_args()

    from prodvec.consumers import returns as R
    from prodvec.core import columns as C
    from prodvec.core.shop import load_shop
    from prodvec.core.shop.truth import ORDERS_TRUTH_FILE, truth_dir

    shop = load_shop(args.shop, log=lambda _: None)
    task = R.ReturnTask(eval_cutoff=pd.Timestamp(args.cutoff, tz="UTC"),
                        train_from=pd.Timestamp(args.train_from, tz="UTC"))
    train, test = R.split_orders(shop, task)
    x_train, x_test = R.shop_side_design(shop, train, test)
    y_train, y_test = train[C.RETURNED].to_numpy(bool), test[C.RETURNED].to_numpy(bool)
    truth = pd.read_parquet(truth_dir(shop.root) / ORDERS_TRUTH_FILE)
    truth = truth.drop_duplicates([C.ORDER_ID, C.PRODUCT_ID]).set_index([C.ORDER_ID, C.PRODUCT_ID])

    def parts(frame: pd.DataFrame) -> pd.DataFrame:
        return truth.reindex(pd.MultiIndex.from_frame(frame[[C.ORDER_ID, C.PRODUCT_ID]].astype(str)))

    true_train, true_test = parts(train), parts(test)

    def auc(extra: tuple[str, ...]) -> float:
        add = lambda x, t: x.assign(**{f"true_{c}": t[f"{c}_logit"].to_numpy() for c in extra})  # noqa: E731
        model = R._model(task.seed).fit(add(x_train, true_train), y_train)
        return roc_auc_score(y_test, model.predict_proba(add(x_test, true_test))[:, 1])

    base = auc(())
    print(f"{len(train)} training and {len(test)} test order lines; oracle (true probability) "
          f"{roc_auc_score(y_test, true_test['return_probability']):.4f}")
    print(f"shop-side features only (the report's no_embedding row): {base:.4f}")
    for causes in CAUSES:
        value = auc(causes)
        print(f"  + true {' + '.join(causes):<28} {value:.4f}  ({value - base:+.4f})")


if __name__ == "__main__":
    main()
